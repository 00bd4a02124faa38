"""What the app shows: status and progress as text, the tables, and the charts' data.

This module owns every decision about what a panel, table or chart of the app shows: the status
panel's lines, a preset's description, the progress line, the summary table's columns, which
bounds are drawn (the article's datasheet bound, the served model's measured bound, and saying
which), the chart ranges, and the reference tables. It
returns Markdown strings, DataFrames and Altair charts; it knows nothing about Gradio components.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from showcase import charts, coordinator, roofline, server
from showcase.bench import compare, stats
from showcase.bench.compare import Experiment
from showcase.bench.folder import RunFolderError, Tables, read_tables
from showcase.bench.metrics import shown_columns
from showcase.bench.run import RunStatus, read_capacity, read_experiment, read_meta
from showcase.bench.tables import COLUMNS, HEADERS, columns_markdown
from showcase.forms import levels_text, prompt_lengths
from showcase.measure import Measured
from showcase.presets import Preset

# The article's request shape, drawn when a run does not say which: its tables use 512-token
# replies, the concurrency table 1K prompts; the length axis runs to its longest, 256K tokens.
ARTICLE_INPUT_LEN, ARTICLE_OUTPUT_LEN, ARTICLE_LONGEST_INPUT = 1024, 512, 262144
ARTICLE_LEVELS = (1, 32)  # the concurrency axis spans at least the article's levels

STATE_BADGE = {server.State.STARTING: "🟡 starting", server.State.READY: "🟢 ready",
               server.State.FAILED: "🔴 failed", server.State.STOPPED: "⚪ stopped"}
STATUS_ICON = {RunStatus.COMPLETED: "✅", RunStatus.STOPPED: "⏹", RunStatus.SERVER_DIED: "💥",
               RunStatus.FAILED: "❌"}
LOG_LINES = 12

DEFINITIONS = """
- **TTFT**: from sending a request to the first chunk carrying content of any kind (a role-only chunk does not count; a reasoning model's reasoning does). **TTFT answer**: to the first chunk of the answer itself (after a reasoning model's reasoning; the same as TTFT otherwise).
- **E2E latency**: from sending to the last content chunk (the whole response without streaming).
- **TPOT**: (E2E − TTFT) / (output tokens − 1). **ITL**: gaps between content chunks, spread over the tokens each carried.
- **Tokens**: from the server's usage, never assumed. **Throughputs**: completed requests and tokens over the point's wall time.
- **Goodput**: requests per second meeting every SLO of the preset.
- **Failed**: only requests the server failed (an HTTP error, an error in the stream, a stream it broke, a time-out). A request lost on an idle connection the server had already closed, before any byte of its answer, is sent once more on a new connection and counted in `retried`.
- **Flags**: `client_bound` (our client used 90 % of a core or more: it, not the server, may have set the pace), `client_starved` (other processes kept our client off the CPU for 5 % of the point or more: its timestamps are late), `oversaturated` (the server's queue grew through the point, or TTFT kept rising: its throughput is not sustainable and its latencies depend on how long the run lasted), `shared_server`, `short_output`, `input_len_mismatch` (for chat users: against what the history costs, by the server's tokenizer), `prompts_reused` (a prompt was sent more than once in the run: a duration's pool, or a file shorter than the requests), `model_stop` (some replies had no length set, so the model stopped where it chose: throughput depends on what it said), `behind_schedule` (a trace point whose p99 send lag passed 10 ms: the client could not keep the trace's times), `under_loaded` (the point did not apply the load its label says: a closed loop never had its concurrency in flight, by our count or by the server's own running + waiting, or an open loop's sends fell more than 5 % behind its schedule's rate; `mean in flight` is the load really applied; a capacity search never passes such a level), `outside_server` (more than a quarter of the mean TTFT, and more than 5 ms, lies outside the server's own clock: the network, HTTP, the API server or our client added it), `failures`, `all_failed`, `server_died`, `stopped`.
- **The server's own view**: vLLM's latency histograms (/metrics, sums and counts before and after each point's measured requests) give `server's TTFT` and its queue, prefill, decode and E2E means; `TTFT outside server` is our mean TTFT − the server's. A server without such histograms (another server, a router) leaves them empty; point `--metrics-url` at an engine's own /metrics.
- **Real traffic**: a prompts file's prompts are sent as they are (repeated prompts meet the prefix cache; salt them to defeat it); its output lengths are sent with `ignore_eos`, so they are exact. A trace sends each request at its time with a prompt of exactly its input length; where its `hash_ids` repeat, the prompts share their leading 512-token blocks. `trace's cacheable share`: the prompt tokens the trace's ids let a cache serve, beside `cached prompt share`, what the server did serve. `p99 send lag`: how late requests left against their schedule (an open loop). `prompt p50/p90`, `output p50/p90`: the lengths the server counted.
- **Chat users**: each user holds a conversation; every turn resends the shared system prompt and the whole history (the server's real replies) plus a new message of exactly the prompt length, then thinks before the next. Users start at random moments within one think time. `cached prompt share`: prompt tokens the server answered from its prefix cache (usage `cached_tokens`, with `--enable-prompt-tokens-details`).
- **Capacity**: the largest load (streams, users or req/s) at which the chosen percentile of every SLO is met and failures stay within the share allowed: levels double until one fails, then bisection. Every probed level is a point of the run.
- **Cost**: the price per GPU-hour you give × the GPUs serving, over the output tokens of an hour at the point's throughput ($ / M output tokens), or shared by the users served at once ($ / user-hour). No price, no cost: there is no default.
- **Cores**: without a GPU, vLLM runs on cores of its own and the load generator on the others, so neither takes the other's CPU.
- **Physical limit**: a roofline upper bound from peak memory bandwidth and FLOPS; nothing can be faster. On the CPU smoke model the measured numbers are CPU numbers of a tiny model: compare their shape, not their size.
"""
# Every column of summary.csv with its unit and meaning, from the record itself (`bench.tables`).
DEFINITIONS += "\n**The columns of `summary.csv`**\n\n" + columns_markdown() + "\n"


def status_markdown(status: server.Status, device_note: str = "", measured: str = "") -> str:
    lines = [f"**Server:** {STATE_BADGE[status.state]} — {html.escape(status.message)}",
             f"**Model:** `{html.escape(status.model, quote=False).replace(chr(96), chr(39))}` · **Device:** {status.device}" + (f" ({device_note})" if device_note else "")]
    if measured:
        lines.append(f"**Measured:** {html.escape(measured)}")
    if status.settings:
        s = status.settings
        lines.append(f"**Settings:** max_model_len {s.max_model_len or 'auto'}, max_num_seqs "
                     f"{s.max_num_seqs or 'auto'}, tensor_parallel_size {s.tensor_parallel_size}, dtype {s.dtype}, "
                     f"load_format {s.load_format}")
    return "  \n".join(lines)


def log_text(status: server.Status) -> str:
    return "" if status.state is server.State.READY else "\n".join(status.log_tail[-LOG_LINES:])


def banner(status: server.Status) -> str:
    return f"⚠️ **{status.warning}**" if status.warning else ""


def preset_markdown(p: Preset, smoke: bool, attached: bool) -> str:
    """A preset's description; its fields are data from a file, so they are escaped, not rendered."""
    e = partial(html.escape, quote=False)
    text = f"**{e(p.title)}** — {e(p.description)}  \n*Source:* {e(p.source)}"
    if p.experiment is not None:
        arms = "; ".join(f"{e(a.name)}: " + (", ".join(f"{k}={v}" for k, v in (a.server | a.workload).items()) or "as is")
                         for a in p.experiment.arms)
        text += f"  \n*Experiment arms:* {arms}"
        if p.experiment.claim is not None:
            c = p.experiment.claim
            text += f"  \n*The article ({e(c.section)}):* “{e(c.text)}”"
    if smoke and p.cpu is not None:
        text += f"  \n⚠️ *{e(p.cpu.note)}*"
    if attached:
        text += "  \n*Attached endpoint: the preset's server settings are not applied.*"
    return text


def presets_table(catalogue: dict[str, Preset]) -> pd.DataFrame:
    rows = []
    for p in catalogue.values():
        s = p.server
        w = p.workload
        rows.append({
            "preset": p.name, "concurrency (users)": levels_text(w),
            "prompt tokens": prompt_lengths(w), "output tokens": w.output_len or "the file's",
            "requests/point": w.num_requests, "streaming": w.stream,
            "server settings": ", ".join(f"{k}={v}" for k, v in s.items()),
            "SLOs (ms)": ", ".join(f"{k}≤{v:g}" for k, v in p.slos.model_dump(exclude_none=True).items()) or "—",
            "source": p.source,
        })
    return pd.DataFrame(rows)


def progress_markdown(snap: coordinator.Snapshot) -> str:
    if snap.running:
        p = snap.progress
        head = f"⏳ **{snap.preset}** is running ({snap.phase.value})"
        if p is not None:
            total = f" of {p.total}" if p.total else ""
            rate = f" · {p.tokens_per_s:,.0f} output tokens/s so far" if p.tokens_per_s is not None else ""
            fail = f" · {p.failed} failed" if p.failed else ""
            which = (f"arm {html.escape(p.arm)}, " if p.arm else "") + (
                f"repeat {p.repeat + 1} of {p.repeats}, " if p.repeats > 1 else "")
            where = f"capacity search, probe {p.point}" if p.searching else f"point {p.point} of {p.points}"
            head += f": {which}{where}, {p.done}{total} requests done{rate}{fail}"
            if p.message:
                head += f" · {p.message}"
        return head
    if snap.status is not None:
        return (f"{STATUS_ICON[snap.status]} Last run: **{snap.preset}** — {snap.status.value}: "
                f"{html.escape(snap.message)}")
    return snap.message


def shown_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's headline columns, rounded, with short headers; the CSV download has all of them."""
    if summary.empty:
        return pd.DataFrame(columns=list(HEADERS.values()))
    cols = shown_columns(summary)
    # Dollars and shares keep three decimals (a user-hour can cost cents; a CPU serves 0.006 of a
    # GPU's bound); everything else one.
    three = {c.name for c in COLUMNS if c.unit == "share"}
    out = summary[cols].round({c: 3 if c.startswith("usd_") or c in three else 1 for c in cols}).rename(
        columns=HEADERS)
    out["point"] = out["point"] + 1
    if "repeat" in out:
        out["repeat"] = out["repeat"] + 1
    return out


@dataclass(frozen=True)
class ServedModel:
    """The served model, whose measured bound is drawn beside the measured points (None when its
    config cannot be known), and what the charts' bounds are, in words."""

    shape: roofline.ModelShape | None
    note: str


def served_model_for(srv: server.ServerHandle) -> ServedModel:
    """The served model's shape, or why there is none; never silently another model's."""
    article = "the datasheet bound is the article's model on the GPU chosen here"
    if srv.settings is None:
        return ServedModel(None, f"Attached endpoint: its model's config is unknown, so no measured bound is drawn; {article}.")
    try:
        shape = roofline.served_shape(srv.settings.model, srv.settings.served_model_name)
    except roofline.RooflineError as exc:
        return ServedModel(None, f"The served model's config cannot be read ({exc}): no measured bound is drawn; {article}.")
    return ServedModel(shape, f"The measured bound is {srv.settings.served_model_name} on this device's measured bandwidth "
                        f"and compute; {article}.")


def measured_roofline(served: ServedModel, measured: Measured | None, dtype: str) -> roofline.Roofline | None:
    """The served model on this device's measured figures, when both are known."""
    if served.shape is None or measured is None:
        return None
    return roofline.Roofline(served.shape, measured.as_gpu(), 1, roofline.weights_dtype(dtype))


def reference_tables(conc: pd.DataFrame, length: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The judged article tables, with the columns shown in the app."""
    conc = conc[["concurrency", "mean_ttft_ms", "request_throughput", "output_throughput", "bound_output_throughput",
                 "verdict", "factor"]]
    length = length[["input_len", "mean_ttft_ms", "throughput", "bound_min_ttft_ms", "bound_output_throughput",
                     "bound_total_throughput", "verdict", "factor"]]
    return conc.rename(columns=REFERENCE_HEADERS), length.rename(columns=REFERENCE_HEADERS)


# The reference tables' headers as a reader reads them, units included (the CSV keeps the names).
REFERENCE_HEADERS = {
    "concurrency": "concurrency", "input_len": "prompt tokens", "mean_ttft_ms": "article's mean TTFT ms",
    "request_throughput": "article's req/s", "output_throughput": "article's output tok/s",
    "throughput": "article's throughput (tok/s)", "bound_output_throughput": "limit: output tok/s",
    "bound_min_ttft_ms": "limit: least TTFT ms", "bound_total_throughput": "limit: total tok/s",
    "verdict": "verdict", "factor": "times the limit",
}


def answer_text(cap) -> str:
    """A capacity search's answer as the stakeholder reads it; "" when the run searched nothing."""
    return f"This deployment {cap.sentence}." if cap is not None else ""


def answer_markdown(cap) -> str:
    return f"### {'🎯' if cap.done else '⏳'} {html.escape(answer_text(cap))}" if cap is not None else ""


def reference_markdown() -> str:
    ref = roofline.article()
    return (f"*Source:* {ref.source}. *Stated:* {ref.stated_gpu}, {ref.stated_software}, {ref.stated_dtype}.  \n"
            + "  \n".join(f"- {c}" for c in ref.caveats)
            + "  \nBounds are for the GPU chosen above; unknown lengths are taken at their most generous. "
              "`factor`: times over the physical limit.")


@dataclass(frozen=True)
class Views:
    """Everything the Benchmark tab shows for a selection of runs."""

    answer: str  # a capacity search's answer, in a sentence; "" for other runs
    capacity: charts.Chart
    by_concurrency: charts.Chart
    by_input_length: charts.Chart
    by_turn: charts.Chart
    latency: charts.Chart
    timeline: charts.Chart
    summary: pd.DataFrame
    files: list[str] | None
    reference_concurrency: pd.DataFrame
    reference_length: pd.DataFrame
    uncertainty: str = ""  # how sure the main run can be: its repeats and intervals, or that it cannot say
    aggregate: pd.DataFrame = field(default_factory=pd.DataFrame)  # the main run over its repeats
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)  # the main run against the others shown
    comparison_note: str = ""
    experiment: str = ""  # the main run's experiment: a sentence per metric, the article's claim
    forest: charts.Chart | None = None
    by_prompt: charts.Chart | None = None  # each request's TTFT against its prompt length
    time_parts: charts.Chart | None = None  # per point: the server's queue, prefill, decode, and what lies outside it


def measured_series(folders: list[Path], uploads: list[Path],
                    known: Mapping[Path, Tables] | None = None) -> tuple[pd.DataFrame, Tables, list[str]]:
    """Every selected run's and upload's summary as one table (a `series` each: the run, and its
    arm in an experiment), the main run's three tables, and the reasons any upload was refused.
    `known`: tables a finished run handed back, by its resolved folder (not read again)."""
    measured: list[pd.DataFrame] = []
    main: Tables = (pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    refused: list[str] = []
    for i, folder in enumerate(folders):
        try:
            tables = (known or {}).get(folder.resolve()) or read_tables(folder)
        except RunFolderError as exc:
            if i == 0:  # the main run: nothing to show but why
                raise
            refused.append(str(exc))
            continue
        main = tables if i == 0 else main
        if not tables[0].empty:
            measured.append(tables[0].assign(series=_series(tables[0], folder.name)))
    for path in uploads:
        try:
            up = coordinator.load_summary(path, f"uploaded: {path.name}")
            measured.append(up.assign(series=_series(up, up["series"].iloc[0] if not up.empty else path.name)))
        except coordinator.UploadError as exc:
            refused.append(str(exc))
    return (pd.concat(measured, ignore_index=True) if measured else pd.DataFrame()), main, refused


def _series(summary: pd.DataFrame, name: str) -> pd.Series | str:
    """A run's series label; an experiment's arms are series of their own."""
    if "arm" not in summary.columns or summary["arm"].isna().all():
        return name
    return name + " · " + summary["arm"].astype(object).where(summary["arm"].notna(), "").astype(str)


def averaged(measured: pd.DataFrame) -> pd.DataFrame:
    """Each series over its repeats: a row per setting with each metric's mean and interval."""
    if measured.empty:
        return measured
    parts = [compare.aggregate(group).assign(series=name) for name, group in measured.groupby("series", sort=False)]
    return pd.concat(parts, ignore_index=True)


def uncertainty_markdown(summary: pd.DataFrame) -> str:
    """What the main run can say about its own noise."""
    if summary.empty:
        return ""
    n = compare.most_repeats(summary)
    if n <= 1:
        return ("*One repeat per point: this run cannot state an uncertainty. One run is one sample: identical "
                "runs minutes apart can differ by ±15 % on a CPU server. Measure with 2 or more repeats (the "
                "intervals then show), or run an A/A experiment to see this server's noise.*")
    return (f"*Each point measured {n} times, interleaved across the points. Intervals: 95 % over the repeats "
            f"(Student t; the repeat is the unit, not the request), drawn as error bars.*")


AGGREGATE_SHOWN = ("mean_ttft_ms", "p90_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "output_throughput", "goodput")


def shown_aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """The main run over its repeats: each headline metric as "mean (low–high)"; empty without repeats."""
    if summary.empty or compare.most_repeats(summary) <= 1:
        return pd.DataFrame()
    agg = compare.aggregate(summary)
    out = pd.DataFrame()
    for c in ("arm", "max_concurrency", "users", "request_rate", "input_len", "output_len", "repeats"):
        empty = agg[c].isna().all() if c in agg else True
        empty |= c == "arm" and not agg[c].dropna().astype(str).str.len().gt(0).any() if c in agg else False
        empty |= c == "request_rate" and bool((agg[c] == math.inf).all()) if c in agg else False
        if not empty:
            out[HEADERS.get(c, c)] = agg[c]
    for m in AGGREGATE_SHOWN:
        if m in agg and agg[m].notna().any():
            out[f"{compare.NAMES.get(m, m)} {compare.unit(m)} (95 % CI)"] = [
                _with_interval(v, lo, hi) for v, lo, hi in zip(agg[m], agg[f"{m}_ci_low"], agg[f"{m}_ci_high"])]
    return out


def _with_interval(v: float, lo: float, hi: float) -> str:
    if pd.isna(v):
        return "—"
    digits = 0 if abs(v) >= 100 else 1
    return f"{v:,.{digits}f}" + (f" ({lo:,.{digits}f}–{hi:,.{digits}f})" if pd.notna(lo) else "")


COMPARED = ("mean_ttft_ms", "output_throughput", "mean_tpot_ms", "p99_itl_ms")


def compare_runs(measured: pd.DataFrame, aa_noise: str = "") -> tuple[pd.DataFrame, str]:
    """The main series against each other one shown: per point they share and per metric, whether
    the difference exceeds what their repeats allow (Welch over repeats); with one repeat either
    side, that it cannot tell. `aa_noise`: what an A/A experiment measured on this server."""
    if measured.empty or measured["series"].nunique() < 2:
        return pd.DataFrame(), ""
    keys = [c for c in ("input_len", "output_len", "max_concurrency", "request_rate", "users") if c in measured]
    names = list(dict.fromkeys(measured["series"]))
    main, rows, single = names[0], [], False
    a_all = measured[measured["series"] == main]
    for other in names[1:]:
        b_all = measured[measured["series"] == other]
        for key, a in a_all.groupby(keys, dropna=False, sort=False):
            b = b_all
            for k, v in zip(keys, key if isinstance(key, tuple) else (key,)):
                b = b[b[k].isna()] if pd.isna(v) else b[b[k] == v]
            if b.empty:
                continue
            setting = ", ".join(f"{HEADERS.get(k, k)} {v:g}" for k, v in zip(keys, key)
                                if pd.notna(v) and not (k == "request_rate" and v == float("inf")))
            for m in COMPARED:
                if m not in a or m not in b:
                    continue
                c = stats.compare(m, pd.to_numeric(a[m], errors="coerce"), pd.to_numeric(b[m], errors="coerce"))
                if c.n_a == 0 or c.n_b == 0:
                    continue
                if c.verdict == "not_measured":
                    single = True
                    what = "one repeat: cannot tell"
                else:
                    what = c.verdict.replace("_", " ") + (f" ({c.rel_ci[0]:+.0%} to {c.rel_ci[1]:+.0%})"
                                                          if math.isfinite(c.rel_ci[0]) else "")
                rows.append({"point": setting, "metric": compare.NAMES.get(m, m), "main run": round(c.a, 1),
                             "compared with": other, "its value": round(c.b, 1),
                             "difference": f"{c.rel:+.1%}" if math.isfinite(c.rel) else "—", "verdict": what})
    return pd.DataFrame(rows), _comparison_note(main, single, aa_noise)


def _comparison_note(main: str, single: bool, aa_noise: str) -> str:
    note = (f"Main run: {html.escape(main, quote=False)}. Differences are called only where both runs have 2 or "
            "more repeats (Welch's t over repeats, 95 %).")
    if single:
        note += (" Where either has one repeat, nothing can be called: one run is one sample. "
                 + (aa_noise or "No A/A experiment has been run on this server to show its noise (run one: "
                    "`engine.py experiment --preset NAME --aa`, or the Experiment panel's A/A)."))
    return note


def aa_noise_text(runs_dir: Path, model: str) -> str:
    """What the newest A/A experiment on this server's model measured: the widest relative
    interval of its metrics, as this server's run-to-run noise."""
    for folder in sorted(Path(runs_dir).glob("*/experiment.json"), reverse=True):
        try:
            exp = read_experiment(folder.parent)
            meta_model = read_meta(folder.parent).model
        except RunFolderError:
            continue
        if exp is None or not exp.aa or (model and meta_model != model) or not exp.metrics:
            continue
        parts = [f"{compare.NAMES.get(m, m)} ±{max(abs(lo), abs(hi)):.0%}"
                 for m, r in exp.metrics.items() for lo, hi in [r.rel_ci] if lo is not None and hi is not None]
        return (f"An A/A experiment on this server ({folder.parent.name}, {exp.repeats} repeats an arm) found "
                f"differences between identical runs within: {', '.join(parts)}; smaller differences are noise here.")
    return ""


def _model_of(folder: Path) -> str:
    try:
        return read_meta(folder).model
    except RunFolderError:
        return ""


def experiment_markdown(exp: Experiment | None) -> str:
    """The main run's experiment: the note, a sentence per metric, the article's claim beside its verdict."""
    if exp is None:
        return ""
    lines = ["### Experiment: " + " vs ".join(html.escape(a.name) for a in exp.arms)
             + (" (A/A)" if exp.aa else "") + ("" if exp.done else " — not finished")]
    if exp.note:
        lines.append(f"*{html.escape(exp.note)}*")
    lines += [f"- {html.escape(a.name)} was skipped: {html.escape(a.skipped)}" for a in exp.arms if a.skipped]
    lines += [f"- {html.escape(s, quote=False)}" for s in exp.sentences]
    if exp.claim is not None:
        lines.append(f"\n**The article ({html.escape(exp.claim.section)}):** “{html.escape(exp.claim.text)}”  \n"
                     f"**Measured here:** {exp.claim_verdict} (on {compare.NAMES.get(exp.claim.metric, exp.claim.metric)})")
    lines.append(f"\n*Order: {html.escape(' '.join(exp.order))}. Method: {html.escape(exp.method)}.*")
    return "\n".join(lines)
def _bounds(measured_r: roofline.Roofline | None, article_r: roofline.Roofline, levels: list[int],
            lengths: list[int], one_len: int, out_len: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The bound lines by concurrency and by prompt length: the article's datasheet bound, and the
    served model's measured bound when there is one."""
    by_conc = [roofline.bound_by_concurrency(article_r, levels, one_len, out_len)]
    by_len = [roofline.bound_by_input(article_r, lengths, out_len, None)]
    if measured_r is not None:
        by_conc.append(roofline.bound_by_concurrency(measured_r, levels, one_len, out_len, "measured bound"))
        by_len.append(roofline.bound_by_input(measured_r, lengths, out_len, None, "measured bound"))
    return pd.concat(by_conc, ignore_index=True), pd.concat(by_len, ignore_index=True)


def load_views(folders: list[Path], uploads: list[Path], g: roofline.GPU, served: ServedModel,
               measured_r: roofline.Roofline | None = None, runs_dir: Path | None = None,
               known: Mapping[Path, Tables] | None = None) -> tuple[Views, list[str]]:
    """Charts, the summary table and downloads for the selected runs (the first is the main one),
    with the article's numbers judged for `g`; and the reasons any upload was refused. `known`:
    see `measured_series`."""
    measured, (summary, requests, timeline), refused = measured_series(folders, uploads, known)
    article_shape = roofline.ModelShape.load(roofline.article().model)
    judged = roofline.article_tables(article_shape, g)
    ref_conc, ref_len = roofline.reference_series(*judged)
    one_len = (int(summary["input_len"].iloc[0]) if not summary.empty and summary["input_len"].nunique() == 1
               else ARTICLE_INPUT_LEN)
    lens = summary["output_len"].dropna() if not summary.empty else pd.Series(dtype=float)
    out_len = int(lens.iloc[0]) if not lens.empty else ARTICLE_OUTPUT_LEN  # a file's points have none of their own
    seen = (lambda col: measured[col].dropna().astype(int).tolist()) if not measured.empty else (lambda col: [])
    levels = sorted({*ARTICLE_LEVELS, *seen("max_concurrency")})
    lengths = sorted({ARTICLE_INPUT_LEN, ARTICLE_LONGEST_INPUT, *seen("input_len")})
    by_conc, by_len = _bounds(measured_r, roofline.Roofline(article_shape, g), levels, lengths, one_len, out_len)
    files = [str(folders[0] / n) for n in ("summary.csv", "aggregate.csv", "requests.csv", "run.json",
                                           "capacity.json", "experiment.json", "report.html")
             if folders and (folders[0] / n).exists()]
    cap = read_capacity(folders[0]) if folders else None
    exp = read_experiment(folders[0]) if folders else None
    mean = averaged(measured)
    comparison, note = compare_runs(measured, aa_noise_text(runs_dir, _model_of(folders[0])) if runs_dir and folders
                                    else "")
    views = Views(answer_markdown(cap), charts.capacity_chart(cap), charts.concurrency_chart(mean, ref_conc, by_conc),
                  charts.input_length_chart(mean, ref_len, by_len), charts.ttft_by_turn(requests, summary),
                  charts.latency_distribution(requests, summary), charts.timeline_chart(timeline), shown_summary(summary),
                  files or None, *reference_tables(*judged), uncertainty=uncertainty_markdown(summary),
                  aggregate=shown_aggregate(summary), comparison=comparison, comparison_note=note,
                  experiment=experiment_markdown(exp), forest=charts.forest_plot(exp),
                  by_prompt=charts.ttft_by_prompt(requests), time_parts=charts.where_time_goes(summary))
    return views, refused
