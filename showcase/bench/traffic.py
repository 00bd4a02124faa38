"""Real traffic from a file: a prompts file (a dataset) or a production trace, read into typed rows.

This module owns reading what users bring, its format detected from the content: prompts files
(JSONL, a JSON array or CSV with a prompt field and an optional output length; OpenAI chat rows
with `messages`; ShareGPT `conversations`) and traces (Mooncake JSONL with `timestamp` in ms,
`input_length`, `output_length` and optional `hash_ids`; the Azure LLM inference trace CSV with
`TIMESTAMP`, `ContextTokens`, `GeneratedTokens`). Files are taken as people write them (a BOM,
UTF-16, blank lines, Windows line ends, extra fields); what cannot be sent is refused before the
run with the fields the file has and the names accepted. It knows nothing about HTTP or tokens:
`prompts` turns rows into requests.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from showcase.bench.workload import Workload, WorkloadError

PROMPT_FIELDS = ("prompt", "text", "question", "input", "content", "instruction")
OUTPUT_FIELDS = ("output_tokens", "output_length", "output_tokens_count", "max_tokens")
HUMAN, BOT = ("human", "user"), ("gpt", "assistant", "chatgpt", "bard", "bing", "model")
BLOCK_TOKENS = 512  # Mooncake: each hash id stands for this many prompt tokens
MAX_FILE_BYTES = 4 * 2**30  # a file the command line reads whole (ShareGPT's is 0.7 GB)
UPLOAD_MAX_BYTES = 64 * 2**20  # an upload to the app, and any file a visitor's run reads
UPLOAD_MAX_ROWS = 100_000


class TrafficError(WorkloadError):
    """A prompts file or trace that cannot be sent; the message names the file and says why."""


@dataclass(frozen=True)
class Turn:
    """One human message of a conversation and the reply that followed it in the file."""

    text: str
    reply: str | None  # its length in the server's tokens is the output length (ShareGPT)


@dataclass(frozen=True)
class DatasetRow:
    """One request of a prompts file: what is sent, and its output length where the file gives one."""

    row: int  # 0-based, counting the file's data rows
    messages: tuple[dict, ...]  # chat messages (role, content), the last a user's
    output_len: int | None = None  # the file's own
    reply: str | None = None  # ShareGPT: the reply that followed the prompt (its length is the output length)
    turns: tuple[Turn, ...] = ()  # ShareGPT: the whole conversation's human turns, for replay turn by turn


@dataclass(frozen=True)
class Dataset:
    path: str
    format: str  # what was detected, said in the run's metadata
    rows: tuple[DatasetRow, ...]

    @property
    def conversations(self) -> bool:
        return any(len(r.turns) > 1 for r in self.rows)


@dataclass(frozen=True)
class TraceRow:
    row: int  # 0-based
    t_s: float  # send time in seconds from the trace's first request
    input_len: int  # prompt tokens, chat template included
    output_len: int
    hash_ids: tuple[int, ...] = ()  # one per `BLOCK_TOKENS` of prompt: equal ids, equal blocks


@dataclass(frozen=True)
class Trace:
    path: str
    format: str
    rows: tuple[TraceRow, ...] = field(repr=False)

    def window(self, start_s: float, end_s: float) -> Trace:
        """The requests sent in [start_s, end_s) of the trace, their times from the window's start."""
        rows = [r for r in self.rows if start_s <= r.t_s < end_s]
        if not rows:
            raise TrafficError(f"{Path(self.path).name}: no request between {start_s:g} s and {end_s:g} s "
                               f"(the trace spans {self.span_s:g} s)")
        return Trace(self.path, self.format, tuple(TraceRow(r.row, r.t_s - start_s, r.input_len, r.output_len,
                                                            r.hash_ids) for r in rows))

    @property
    def span_s(self) -> float:
        return self.rows[-1].t_s if self.rows else 0.0

    def implied_cached_share(self) -> float:
        """The share of prompt tokens a prefix cache could serve, by the trace's own ids: each
        request's leading blocks whose ids all came before (in send order), capped at its length."""
        seen: set[int] = set()
        cached = total = 0
        for r in self.rows:
            lead = 0
            for h in r.hash_ids:
                if h not in seen:
                    break
                lead += 1
            cached += min(r.input_len, lead * BLOCK_TOKENS)
            total += r.input_len
            seen.update(r.hash_ids)
        return cached / total if total and any(r.hash_ids for r in self.rows) else math.nan


class FileFacts(BaseModel):
    """What a run read its requests from, for its metadata: the file, what it was taken for, its rows."""

    path: str
    kind: Literal["dataset", "trace"]
    format: str
    rows: int
    sha256: str
    implied_cached_share: float | None = None  # a trace's: what its hash ids let a prefix cache serve


def facts(path: str, kind: Literal["dataset", "trace"], max_bytes: int = MAX_FILE_BYTES,
          max_rows: int | None = None) -> FileFacts:
    """Read `path` as `kind` (refused with the reason if it cannot be sent) and say what it is."""
    import hashlib

    read = read_dataset(path, max_bytes, max_rows) if kind == "dataset" else read_trace(path, max_bytes, max_rows)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    share = read.implied_cached_share() if isinstance(read, Trace) else math.nan
    return FileFacts(path=str(path), kind=kind, format=read.format, rows=len(read.rows), sha256=digest,
                     implied_cached_share=share if math.isfinite(share) else None)


def workload_facts(w: Workload, visitor: bool) -> FileFacts | None:
    """The workload's prompts file or trace read as it takes it (a visitor's within the upload
    bounds), refused now if it cannot be sent; None for synthetic prompts."""
    path = w.dataset or w.trace
    if path is None:
        return None
    max_bytes, max_rows = (UPLOAD_MAX_BYTES, UPLOAD_MAX_ROWS) if visitor else (MAX_FILE_BYTES, None)
    return facts(path, "dataset" if w.dataset is not None else "trace", max_bytes, max_rows)


# -- reading -------------------------------------------------------------------------------------------


def text_of(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """A file's text: UTF-8 (a BOM dropped) or UTF-16 with its BOM; refused when missing, too
    large, empty, binary or in another encoding."""
    name = path.name
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TrafficError(f"{name} is {size / 1e6:,.1f} MB; at most {max_bytes / 1e6:,.0f} MB are read here")
        raw = path.read_bytes()
    except OSError as exc:
        raise TrafficError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = raw.decode("utf-16", "strict") if _decodes(raw, "utf-16") else None
    elif b"\x00" in raw:
        raise TrafficError(f"{name} is a binary file, not text (JSONL, JSON or CSV)")
    else:
        text = raw.decode("utf-8-sig") if _decodes(raw, "utf-8-sig") else None
    if text is None:
        raise TrafficError(f"{name} is not UTF-8 (or UTF-16 with a BOM) text: save it as UTF-8")
    if not text.strip():
        raise TrafficError(f"{name} is empty: no request to send")
    return text.lstrip("\ufeff")


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def records(text: str, name: str) -> tuple[str, list[dict]]:
    """The file's rows as objects and the container's name: a JSON array, JSONL, or CSV with a header."""
    start = text.lstrip()[:1]
    if start == "[":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TrafficError(f"{name}: starts like a JSON array but does not parse: {exc}") from exc
        if not all(isinstance(r, dict) for r in data):
            raise TrafficError(f"{name}: a JSON array whose items are not all objects")
        return "JSON array", data
    if start == "{":
        rows: list[dict] = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                if not rows:  # one object over several lines: a JSON document, not JSONL
                    return _json_object(text, name)
                raise TrafficError(f"{name}: line {i + 1} is not a JSON object: {exc}") from exc
            if not isinstance(obj, dict):
                raise TrafficError(f"{name}: line {i + 1} is not a JSON object")
            rows.append(obj)
        return "JSONL", rows
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip() for h in reader.fieldnames or []]
        rows = [{(k or "").strip(): v for k, v in r.items()} for r in reader
                if any((v or "").strip() for v in r.values() if isinstance(v, str))]
    except csv.Error as exc:
        raise TrafficError(f"{name}: neither JSON, JSONL nor CSV ({exc})") from exc
    return "CSV (header: " + ", ".join(header[:8]) + ")", rows


def _json_object(text: str, name: str) -> tuple[str, list[dict]]:
    """A JSON document holding one list of rows under some key (as some exports do)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TrafficError(f"{name}: neither JSONL (an object a line) nor a JSON document: {exc}") from exc
    lists = [(k, v) for k, v in data.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
    if len(lists) != 1:
        raise TrafficError(f"{name}: a JSON object with fields {', '.join(list(data)[:10])}; expected rows "
                           "(JSONL, or a JSON array of objects)")
    return f"JSON object, rows under {lists[0][0]!r}", lists[0][1]


def _count(value: object, what: str, where: str, minimum: int = 1) -> int:
    """A token count from a file: a whole number (also written as text, "12" or "12.0")."""
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) \
            or number != int(number) or number < minimum:
        raise TrafficError(f"{where}: {what} is {value!r}, not a whole number of {minimum} or more")
    return int(number)


def _fields_of(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows[:20] for k in r))
    return ", ".join(map(str, keys[:15])) or "none"


def _rows(path: Path, max_bytes: int, max_rows: int | None) -> tuple[str, list[dict]]:
    """A file's rows (at least one, at most `max_rows`) and their container's name."""
    container, rows = records(text_of(path, max_bytes), path.name)
    if not rows:
        raise TrafficError(f"{path.name}: no rows (a CSV needs a header line and rows below it)")
    if max_rows is not None and len(rows) > max_rows:
        raise TrafficError(f"{path.name} has {len(rows):,} rows; at most {max_rows:,} are taken here")
    return container, rows


# -- prompts files --------------------------------------------------------------------------------------


def read_dataset(path: Path | str, max_bytes: int = MAX_FILE_BYTES, max_rows: int | None = None) -> Dataset:
    """A prompts file as rows to send; `TrafficError` for what cannot be sent, with the reason."""
    path = Path(path)
    name, (container, rows) = path.name, _rows(path, max_bytes, max_rows)
    first = rows[0]
    out_field = next((f for f in OUTPUT_FIELDS if f in first), None)
    if "conversations" in first:
        kind, parse = "ShareGPT conversations", _sharegpt
    elif "messages" in first:
        kind, parse = "OpenAI chat messages", _chat
    else:
        prompt_field = next((f for f in PROMPT_FIELDS if f in first), None)
        if prompt_field is None:
            raise TrafficError(f"{name} ({container}): no prompt field; it has {_fields_of(rows)}; accepted: a prompt "
                               f"in {', '.join(PROMPT_FIELDS)}, OpenAI chat 'messages', or ShareGPT 'conversations'")
        kind = f"prompt field {prompt_field!r}"

        def parse(r: dict, where: str) -> tuple[tuple[dict, ...], str | None, tuple[Turn, ...]]:
            text = r.get(prompt_field)
            if not isinstance(text, str) or not text.strip():
                raise TrafficError(f"{where}: no prompt in {prompt_field!r} (its fields: {', '.join(map(str, r))})")
            return ({"role": "user", "content": text},), None, ()

    parsed, skipped = [], 0
    for i, r in enumerate(rows):
        where = f"{name}, row {i + 1}"
        try:
            messages, reply, turns = parse(r, where)
        except _NoHumanTurn:  # public ShareGPT dumps hold such rows; `vllm bench serve` skips them too
            skipped += 1
            continue
        raw = r.get(out_field) if out_field else None
        out = _count(raw, out_field, where) if out_field and raw not in (None, "") else None
        parsed.append(DatasetRow(i, messages, out, reply, turns))
    if not parsed:
        raise TrafficError(f"{name}: no conversation has a human turn to send")
    said = f"{container}, {kind}" + (f", output length {out_field!r}" if out_field else ", no output lengths")
    said += f", {skipped:,} conversations without a human turn skipped" if skipped else ""
    return Dataset(str(path), said, tuple(parsed))


class _NoHumanTurn(TrafficError):
    """A ShareGPT conversation with nothing to send: skipped, and counted in the file's format."""


def _chat(r: dict, where: str) -> tuple[tuple[dict, ...], str | None, tuple[Turn, ...]]:
    msgs = r.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise TrafficError(f"{where}: messages is not a list of messages")
    out = []
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise TrafficError(f"{where}: a message without a role and text content: {str(m)[:100]}")
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] == "assistant":  # a row that carries its reference answer: the prompt is what precedes it
        out = out[:-1]
    if not out or out[-1]["role"] != "user":
        raise TrafficError(f"{where}: the messages end without a user message to answer")
    return tuple(out), None, ()


def _sharegpt(r: dict, where: str) -> tuple[tuple[dict, ...], str | None, tuple[Turn, ...]]:
    conv = r.get("conversations")
    if not isinstance(conv, list):
        raise TrafficError(f"{where}: conversations is not a list of turns")
    system, pending = None, None
    turns: list[Turn] = []
    for t in conv:
        if not isinstance(t, dict) or not isinstance(t.get("value"), str):
            raise TrafficError(f"{where}: a turn without from/value text: {str(t)[:100]}")
        who = str(t.get("from", "")).lower()
        if who == "system" and not turns and pending is None:
            system = t["value"]
        elif who in HUMAN:
            if pending is not None:  # two human turns in a row: the first had no reply
                turns.append(Turn(pending, None))
            pending = t["value"]
        elif who in BOT and pending is not None:
            turns.append(Turn(pending, t["value"]))
            pending = None
    if pending is not None:
        turns.append(Turn(pending, None))
    turns = [t for t in turns if t.text.strip()]
    if not turns:
        raise _NoHumanTurn(f"{where}: the conversation has no human turn to send")
    head = ({"role": "system", "content": system},) if system else ()
    return (*head, {"role": "user", "content": turns[0].text}), turns[0].reply, tuple(turns)


# -- traces ---------------------------------------------------------------------------------------------

AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE = ("timestamp", "input_length", "output_length")


def read_trace(path: Path | str, max_bytes: int = MAX_FILE_BYTES, max_rows: int | None = None) -> Trace:
    """A trace as requests at their times; `TrafficError` for what cannot be replayed, with the reason."""
    path = Path(path)
    name, (container, rows) = path.name, _rows(path, max_bytes, max_rows)
    if all(f in rows[0] for f in AZURE):
        kind, times = "Azure LLM inference trace", [_azure_time(r["TIMESTAMP"], f"{name}, row {i + 1}")
                                                    for i, r in enumerate(rows)]
        lengths = [(r["ContextTokens"], r["GeneratedTokens"], None) for r in rows]
        names = ("ContextTokens", "GeneratedTokens")
    elif all(f in rows[0] for f in MOONCAKE):
        kind = "Mooncake trace"
        times = [_ms(r.get("timestamp"), f"{name}, row {i + 1}") for i, r in enumerate(rows)]
        lengths = [(r.get("input_length"), r.get("output_length"), r.get("hash_ids")) for r in rows]
        names = ("input_length", "output_length")
    else:
        raise TrafficError(f"{name} ({container}): not a trace; it has {_fields_of(rows)}; accepted: Mooncake JSONL "
                           f"({', '.join(MOONCAKE)}, optional hash_ids) or the Azure trace CSV ({', '.join(AZURE)})")
    out = []
    for i, (t, (n_in, n_out, ids)) in enumerate(zip(times, lengths)):
        where = f"{name}, row {i + 1}"
        if i and t < times[i - 1]:
            raise TrafficError(f"{where}: its time ({t - times[0]:.3f} s) comes before the row above's "
                               f"({times[i - 1] - times[0]:.3f} s); a trace is in send order")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(h, int) and not isinstance(h, bool)
                                                                     for h in ids)):
            raise TrafficError(f"{where}: hash_ids is not a list of whole numbers")
        out.append(TraceRow(i, t - times[0], _count(n_in, names[0], where), _count(n_out, names[1], where),
                            tuple(ids or ())))
    return Trace(str(path), f"{container}, {kind}", tuple(out))


def _ms(value: object, where: str) -> float:
    """A Mooncake timestamp (milliseconds, 0 or more) in seconds."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise TrafficError(f"{where}: timestamp is {value!r}, not milliseconds")
    return number / 1000


def _azure_time(value: object, where: str) -> float:
    """Seconds since the epoch of an Azure trace's date-time (its sub-second digits kept; more than
    six are cut to microseconds)."""
    text = str(value).strip()
    head, dot, frac = text.partition(".")
    try:
        stamp = datetime.fromisoformat(head + (dot + frac[:6] if dot else ""))
    except ValueError as exc:
        raise TrafficError(f"{where}: TIMESTAMP {text!r} is not a date and time") from exc
    return stamp.timestamp()


def kind_of(path: Path | str, max_bytes: int = MAX_FILE_BYTES) -> Literal["dataset", "trace"]:
    """Whether a file is a trace (Mooncake or Azure fields) or a prompts file, from its first row."""
    path = Path(path)
    _, rows = records(text_of(path, max_bytes), path.name)
    first = rows[0] if rows else {}
    return "trace" if all(f in first for f in AZURE) or all(f in first for f in MOONCAKE) else "dataset"
