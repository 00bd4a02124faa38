"""What a person types into the Benchmark tab, as workload edits: levels, lengths, repeats, the
uploaded traffic file, the capacity search's fields, a price and two endpoints; and a preset's
workload as those fields show it.

This module owns reading the form (each field's refusal names the field) and knows nothing about
Gradio or running anything: the edits go to `prepare_run`, which validates them as strictly as a file.
"""

from __future__ import annotations

from pathlib import Path

from showcase import roofline
from showcase.bench import traffic
from showcase.bench.workload import WorkloadError
from showcase.presets import Preset


def prompt_lengths(w) -> str:
    """A workload's prompt lengths as said to a person: its synthetic lengths, or the file they come from."""
    if w.from_file:
        return f"from {'the trace' if w.trace else 'the prompts file'} {Path(w.dataset or w.trace).name}"
    return ", ".join(map(str, w.input_len))


def traffic_overrides(path: str | None) -> dict:
    """An uploaded prompts file or trace (its kind read from its content) as workload overrides:
    it replaces the preset's prompts and their lengths (a trace gives the output lengths too)."""
    if not path:
        return {}
    kind = traffic.kind_of(path, traffic.UPLOAD_MAX_BYTES)
    traffic.facts(path, kind, traffic.UPLOAD_MAX_BYTES, traffic.UPLOAD_MAX_ROWS)  # refused now, with the reason
    common = {"input_len": None, "shared_prefix_len": 0}
    if kind == "trace":
        return common | {"trace": str(path), "dataset": None, "output_len": None, "seed": None, "salt_prompts": False}
    return common | {"dataset": str(path), "trace": None, "time_scale": 1.0, "trace_window": None}


def parse_levels(text: str, field: str, kind=int) -> list:
    """Comma-separated numbers from a text box."""
    try:
        values = [kind(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise WorkloadError(f"{field}: give numbers separated by commas, like 1, 4, 8") from None
    if not values:
        raise WorkloadError(f"{field}: give at least one value")
    return values


def overrides_from(conc: str, inlen: str, outlen: float | None, nreq: float | None, stream: bool,
                   users: bool = False, repeats: float | None = None, from_file: bool = False) -> dict:
    """The Benchmark tab's workload fields as overrides of the preset's workload; for a chat-users
    preset the levels are users, whose requests are users × turns (the requests field is ignored).
    `from_file`: the prompts come from a file, so the prompt lengths are not the form's, an empty
    output length leaves the file's (or the model's stop), empty levels mean a trace's own pace and
    empty requests a trace's every request."""
    if from_file:
        return _file_overrides(conc, outlen, nreq, stream, users, repeats)
    levels = parse_levels(conc, "Chat users" if users else "Concurrency levels")
    common = {"input_len": parse_levels(inlen, "Prompt lengths"), "output_len": int(outlen or 0),
              "repeats": repeats_from(repeats)}
    if users:
        return {"users": levels, **common}
    return {"concurrency": levels, **common, "num_requests": int(nreq or 0), "stream": bool(stream)}


def form_overrides(p: Preset, conc: str, inlen: str, outlen: float | None, nreq: float | None, stream: bool,
                   repeats: float | None = None, upload: str | None = None) -> dict:
    """The tab's workload fields and its uploaded traffic file (if any) as overrides of preset `p`."""
    from_file = p.workload.from_file or bool(upload)
    return overrides_from(conc, inlen, outlen, nreq, stream, bool(p.workload.users), repeats, from_file) | \
        traffic_overrides(upload)


def _file_overrides(conc: str, outlen: float | None, nreq: float | None, stream: bool, users: bool,
                    repeats: float | None) -> dict:
    out: dict = {"repeats": repeats_from(repeats), "output_len": int(outlen) if outlen else None}
    if str(conc or "").strip():
        out["users" if users else "concurrency"] = parse_levels(conc, "Chat users" if users else "Concurrency levels")
    elif not users:  # a trace's own pace, no cap
        out["concurrency"] = None
    if not users:
        out |= {"stream": bool(stream)} | ({"num_requests": int(nreq)} if nreq else {})
    return out


def repeats_from(value: float | None, least: int = 1) -> int:
    """The Repeats field: a whole number, at least `least` (an experiment needs 2)."""
    if value in (None, "") or (isinstance(value, float) and value != value):
        return max(1, least)
    n = int(value)
    if n != value or n < least:
        raise WorkloadError(f"Repeats: give a whole number of at least {least}")
    return n


def endpoints_from(a: str | None, b: str | None) -> tuple[str, str] | None:
    """The Experiment panel's two endpoint fields: both, or neither."""
    a, b = (a or "").strip(), (b or "").strip()
    if bool(a) != bool(b):
        raise WorkloadError("Give both endpoints (A and B) to compare two deployments, or neither")
    return (a, b) if a else None


def experiment_choices(catalogue: dict[str, Preset]) -> list[tuple[str, str]]:
    """The Experiment panel's choices: the experiment presets, and an A/A of the preset selected above."""
    return [(p.title, n) for n, p in catalogue.items() if p.experiment is not None] + [
        ("A/A: the preset selected above, twice (this server's noise)", AA_CHOICE)]


AA_CHOICE = "__aa__"


def search_for(p: Preset, percentile: float | None = None, max_failed_share: float | None = None,
               upper: float | None = None) -> dict:
    """The capacity search the Find-capacity button runs: the preset's own, or by its kind of level,
    with the fields given (empty: the preset's, or the defaults)."""
    fields = {"percentile": _number(percentile, "Percentile"), "max_failed_share": _number(max_failed_share,
              "Failed share allowed"), "upper": _number(upper, "Highest level probed", whole=True)}
    base = {} if p.capacity is not None else {"by": "users" if p.workload.users else "concurrency"}
    return base | {k: v for k, v in fields.items() if v is not None}


def slos_from(ttft_ms: float | None, tpot_ms: float | None, e2el_ms: float | None) -> dict:
    """The SLO fields (ms; empty keeps the preset's)."""
    return {"ttft_ms": _number(ttft_ms, "TTFT target"), "tpot_ms": _number(tpot_ms, "TPOT target"),
            "e2el_ms": _number(e2el_ms, "E2E target")}


def _number(value: float | str | None, field: str, whole: bool = False) -> float | int | None:
    """A number field: empty (which a number field may send as None or NaN) is None."""
    if value in (None, "") or (isinstance(value, float) and value != value):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise WorkloadError(f"{field}: give a number, or leave it empty") from None
    if whole:
        if x != int(x):
            raise WorkloadError(f"{field}: give a whole number, or leave it empty")
        return int(x)
    return x


def price_hint(g: roofline.GPU | None) -> str:
    """A GPU's indicative price from assets/gpus.csv, as a suggestion only; nothing is filled in."""
    if g is None or g.price_usd_per_hour is None:
        return "Adds $ / M output tokens (and $ / user-hour for chat users); empty: no cost shown."
    return (f"Suggestion: {g.name} on demand ≈ ${g.price_usd_per_hour:g}/h ({g.price_source}, {g.price_date}); "
            "empty: no cost shown.")


def price_from(text: float | str | None) -> float | None:
    """The price per GPU-hour field: empty (which a number field sends as 0) is no price, so no
    cost columns; never a default."""
    if text in (None, "", 0) or (isinstance(text, float) and text != text):
        return None
    try:
        value = float(text)
    except ValueError:
        raise WorkloadError("Price per GPU-hour: give dollars, like 2.50, or leave it empty") from None
    if not value > 0:
        raise WorkloadError("Price per GPU-hour: give a positive number of dollars, or leave it empty")
    return value


def levels_text(w) -> str:
    """A workload's levels as said to a person: streams, or users."""
    return ", ".join(map(str, w.levels)) + (" users" if w.users else "")


def workload_fields(p: Preset) -> tuple[str, str, int | None, int | None, bool]:
    """The Benchmark tab's workload fields for a preset (chat users: the users, and the requests
    their turns make)."""
    w = p.workload
    return (", ".join(map(str, w.levels)), prompt_lengths(w), w.output_len,
            w.requests_per_point(max(w.levels, default=1)) or (None if w.trace else 0), w.stream)
