"""The rows of a run's tables: one typed record per point (`Summary`, each field with its unit and
its one-line definition), per request (`RequestRow`) and per sample of the server's /metrics
(`TimelineRow`).

This module owns what a row of `summary.csv`, `requests.csv` and `timeline.csv` holds. The
summary's columns, the app's headline table (which
column, under which short header, shown only where some row has a value), the tab's and the
README's column definitions, the columns read as numbers and those an upload may bring all derive
from the fields here, so they cannot drift apart. Column names follow `vllm bench serve
--save-result` where it has one. How each value is computed is `metrics`' and `run`'s; this module
only reads and writes rows and knows nothing about requests.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypedDict

NAN = float("nan")


class RequestRow(TypedDict, total=False):
    """One request of `requests.csv`: what was asked and what came back, times in ms from the run's
    start; the metrics (`ttft_ms` …) only for a request that succeeded."""

    point: int
    index: int
    warmup: bool
    stream: bool
    input_len: int | None  # the target, chat template included; None: a file's prompt as it is
    output_len: int | None  # the target; None: the model's own stop
    scheduled: float  # ms: when the load generator wanted to send it
    start: float  # ms: just before it was written
    end: float  # ms: when its response was finished (or failed)
    prompt_tokens: int | None  # the server's usage
    output_tokens: int | None
    error: str | None
    retried: bool
    conversation: int | None  # chat users: whose conversation, and its turn
    turn: int | None
    cached_tokens: int | None
    expected_prompt_tokens: int | None
    row: int | None  # the prompts file's or trace's row, 0-based
    chunks: int  # content chunks received
    ttft_ms: float
    ttft_answer_ms: float
    tpot_ms: float
    e2el_ms: float
    mean_itl_ms: float
    client_queue_ms: float  # start − scheduled


class TimelineRow(TypedDict, total=False):
    """One sample of the server's /metrics in `timeline.csv` (the gauges it has)."""

    t_s: float  # seconds from the run's start
    point: int  # the point being measured; -1 between points
    kv_cache_usage: float
    running: float
    waiting: float
    preemptions: float
    prefix_cache_queries: float
    prefix_cache_hits: float
    prefix_cache_hit_rate: float  # hits over lookups since the sample before


@dataclass(frozen=True)
class Column:
    """What one column of `summary.csv` is."""

    name: str
    unit: str  # "" for an index, a label or a count of nothing in particular
    meaning: str
    header: str | None  # its short header in the app's summary table; None: in the CSV only
    optional: bool  # in the app's table only where some row has a value
    upload: bool  # read from an uploaded summary (another machine's, another tool's)
    numeric: bool


def _col(unit: str, meaning: str, header: str | None = None, *, optional: bool = False, upload: bool = False,
         default: Any = NAN) -> Any:
    return field(default=default, metadata={"unit": unit, "meaning": meaning, "header": header,
                                            "optional": optional, "upload": upload})


_TTFT = "time to first token (of any kind: a reasoning model's reasoning counts)"
_ANSWER = "time to the first token of the answer (after any reasoning)"
_TPOT = "time per output token after the first"
_ITL = "inter-token latency (each gap between content chunks, spread over the tokens the chunk carried)"
_E2EL = "end-to-end latency"
_SERVER = "the server's own view: the mean vLLM's latency histogram of this part recorded over the point's measured requests (sums and counts read just after the warm-up and once the point's requests are counted: after − before); empty where the server has no such histogram"


@dataclass(frozen=True)
class Summary:
    """One point's summary row. Numbers are NaN where undefined (never 0 for "unknown")."""

    point: int = _col("", "index of the point in the run, from 0", "point", default=0)
    arm: str = _col("", "an experiment's arm; empty outside experiments", "arm", optional=True, upload=True,
                    default="")
    repeat: int = _col("", "which repeat of its setting this point is, from 0 (`--repeats`)", "repeat", upload=True,
                       default=0)
    max_concurrency: int | None = _col("requests", "requests in flight (closed loop), or the cap with a rate",
                                       "concurrency", upload=True, default=None)
    request_rate: float = _col("req/s", "the arrival rate (a trace's: its mean); `inf` for a closed loop",
                               "rate (req/s)", upload=True, default=math.inf)
    input_len: float = _col("tokens", "the prompt length asked; empty for a prompts file's or trace's points (each "
                            "request has its own)", "prompt", upload=True)
    output_len: float = _col("tokens", "the reply length asked; empty for a prompts file's or trace's points",
                             "output", upload=True)
    completed: int = _col("requests", "measured requests that succeeded (warm-up excluded)", "done", default=0)
    failed: int = _col("requests", "measured requests the server failed (warm-up excluded)", "failed", default=0)
    retried: int = _col("requests", "requests sent a second time on a new connection: the first attempt went out on "
                        "an idle connection the server (or a balancer) had already closed, and broke before any "
                        "byte of an answer", default=0)
    duration: float = _col("s", "wall time from the first measured send to the last measured completion")
    request_throughput: float = _col("req/s", "completed / duration", "req/s")
    output_throughput: float = _col("tok/s", "output tokens of completed requests / duration", "output tok/s",
                                    upload=True)
    total_token_throughput: float = _col("tok/s", "prompt + output tokens of completed requests / duration")
    mean_input_tokens: float = _col("tokens", "mean prompt tokens of completed requests, from the server's usage")
    mean_output_tokens: float = _col("tokens", "mean output tokens of completed requests, from the server's usage")
    p50_input_tokens: float = _col("tokens", "the median prompt tokens (shown for a file's points)", "prompt p50")
    p90_input_tokens: float = _col("tokens", "the 90th percentile of prompt tokens", "prompt p90")
    p50_output_tokens: float = _col("tokens", "the median output tokens", "output p50")
    p90_output_tokens: float = _col("tokens", "the 90th percentile of output tokens", "output p90")
    mean_ttft_ms: float = _col("ms", f"mean {_TTFT}", "mean TTFT ms", upload=True)
    mean_ttft_answer_ms: float = _col("ms", f"mean {_ANSWER}", "mean TTFT answer ms")
    median_ttft_ms: float = _col("ms", f"median {_TTFT}")
    p90_ttft_ms: float = _col("ms", f"90th percentile {_TTFT}")
    p99_ttft_ms: float = _col("ms", f"99th percentile {_TTFT}", "p99 TTFT ms")
    median_ttft_answer_ms: float = _col("ms", f"median {_ANSWER}")
    p90_ttft_answer_ms: float = _col("ms", f"90th percentile {_ANSWER}")
    p99_ttft_answer_ms: float = _col("ms", f"99th percentile {_ANSWER}")
    mean_tpot_ms: float = _col("ms", f"mean {_TPOT}", "mean TPOT ms", upload=True)
    median_tpot_ms: float = _col("ms", f"median {_TPOT}")
    p90_tpot_ms: float = _col("ms", f"90th percentile {_TPOT}")
    p99_tpot_ms: float = _col("ms", f"99th percentile {_TPOT}")
    mean_itl_ms: float = _col("ms", f"mean {_ITL}")
    median_itl_ms: float = _col("ms", f"median {_ITL}")
    p90_itl_ms: float = _col("ms", f"90th percentile {_ITL}")
    p99_itl_ms: float = _col("ms", f"99th percentile {_ITL}", "p99 ITL ms", upload=True)
    mean_e2el_ms: float = _col("ms", f"mean {_E2EL}", "mean E2E ms")
    median_e2el_ms: float = _col("ms", f"median {_E2EL}")
    p90_e2el_ms: float = _col("ms", f"90th percentile {_E2EL}")
    p99_e2el_ms: float = _col("ms", f"99th percentile {_E2EL}")
    server_mean_ttft_ms: float = _col("ms", f"{_SERVER}: time to first token", "server's TTFT ms", optional=True)
    outside_ttft_ms: float = _col("ms", "our mean TTFT − the server's: the network, HTTP, the API server's work "
                                  "before the engine's clock starts (chat template, tokenizing) and our client",
                                  "TTFT outside server ms", optional=True)
    server_mean_queue_ms: float = _col("ms", f"{_SERVER}: waiting in its queue")
    server_mean_prefill_ms: float = _col("ms", f"{_SERVER}: prefill")
    server_mean_decode_ms: float = _col("ms", f"{_SERVER}: decode")
    server_mean_e2el_ms: float = _col("ms", f"{_SERVER}: end-to-end")
    server_mean_itl_ms: float = _col("ms", f"{_SERVER}: inter-token latency")
    server_mean_tpot_ms: float = _col("ms", f"{_SERVER}: time per output token")
    server_requests: float = _col("requests", "how many requests those histograms counted over the point (more than "
                                  "`completed`: others shared the server)")
    server_requests_max: float = _col("requests", "the most requests (running + waiting) the server's /metrics "
                                      "showed during the point")
    goodput: float = _col("req/s", "requests meeting all SLOs / duration; empty without SLOs", "goodput")
    efficiency: float = _col("share", "output tok/s over this device's measured bound at the point's concurrency "
                             "and mean context; empty where the device was not measured", "efficiency",
                             optional=True)
    users: float = _col("users", "chat users holding a conversation each (chat-users points)", "users",
                        optional=True, upload=True)
    cached_prompt_share: float = _col("share", "prompt tokens the server answered from its prefix cache (usage "
                                      "`cached_tokens`, where reported)", "cached prompt share", optional=True)
    trace_cached_share: float = _col("share", "a trace's prompt tokens its `hash_ids` let a prefix cache serve "
                                     "(leading blocks seen before)", "trace's cacheable share", optional=True)
    prefix_cache_hit_rate: float = _col("share", "the server's prefix-cache hits over lookups during the point "
                                        "(/metrics counters)")
    p99_send_lag_ms: float = _col("ms", "an open loop's p99 of actual − scheduled send time (under a cap it "
                                  "includes the wait for a slot); empty for a closed loop", "p99 send lag ms",
                                  optional=True)
    mean_in_flight: float = _col("requests", "the load really applied: requests in flight over the measured window "
                                 "(time-weighted mean), beside `max_concurrency`, the load asked", "mean in flight",
                                 optional=True)
    max_in_flight: int = _col("requests", "the most requests in flight at once over the measured window", default=0)
    achieved_rate: float = _col("req/s", "an open loop's requests as really sent (first send to last), beside "
                                "`request_rate`; empty for a closed loop")
    usd_per_m_output_tokens: float = _col("$", "the price per GPU-hour given × the GPUs, over the output tokens of "
                                          "an hour at the point's throughput; empty without a price",
                                          "$ / M output tokens", optional=True)
    usd_per_user_hour: float = _col("$", "the deployment's hour shared by the chat users served at once; empty "
                                    "without a price", "$ / user-hour", optional=True)
    client_lag_p99_ms: float = _col("ms", "p99 of how late our event loop woke up during the point")
    client_cpu_share: float = _col("share of one core", "CPU our client process used during the point")
    client_runq_share: float = _col("share of the point", "how long our event loop's thread was ready to run but "
                                    "waited for a CPU held by other processes (the kernel's run-queue time, "
                                    "`/proc/thread-self/schedstat`)")
    errors: str = _col("", "failure reasons with counts, e.g. `HTTP 400: … ×3`", default="")
    flags: str = _col("", """`;`-separated: `all_failed`, `failures`, `short_output`, `input_len_mismatch`, `no_usage`, `itl_per_chunk` (the server gave no per-chunk usage, ITL is per chunk), `client_bound` (our client used ≥ 90 % of a core: it, not the server, may have set the pace), `client_starved` (our client waited for a CPU for ≥ 5 % of the point: other processes held its core, so replies waited in its socket and their timestamps are late; `vllm bench serve` suffers the same and does not say so), `shared_server` (the server held more requests than the point sent: others ran beside it), `prompts_reused` (a prompt went out more than once in the run: duration mode ran more requests than distinct prompts, or a file had fewer rows than the requests), `model_stop` (some requests had no output length: the model stopped where it chose), `behind_schedule` (a trace point whose p99 send lag passed 10 ms), `under_loaded` (the point did not apply the load its label says: a closed loop that never had its concurrency in flight, by our count or by the server's running + waiting (/metrics, 5 % allowed: requests can wait unread in its socket while our count says sent), or an open loop whose requests went out more than 5 % slower than its schedule's rate, a cap's waits included; a capacity search never passes such a level), `outside_server` (more than a quarter of the mean TTFT, and more than 5 ms, lies outside the server's own clock: the network, HTTP, the API server or our client added it; `outside_ttft_ms`), `stopped`, `server_died`""", "flags", upload=True, default="")

    def row(self) -> dict[str, object]:
        """The row as `summary.csv` holds it."""
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, row: dict[str, object]) -> Summary:
        """A row read back (an earlier run's, this run's resumed folder): columns it lacks take their
        default, columns it has beyond these are left out."""
        known: dict[str, Any] = {}
        for k, v in row.items():
            if k not in FIELDS:
                continue
            kind, empty = FIELDS[k].type, v is None or (isinstance(v, float) and math.isnan(v))
            if kind == "str":
                known[k] = "" if empty else str(v)
            elif kind in ("int", "int | None"):  # a CSV gives counts back as floats, and empty cells as NaN
                known[k] = (FIELDS[k].default if kind == "int" else None) if empty else int(v)  # type: ignore[call-overload]
            else:
                known[k] = v
        return cls(**known)


FIELDS = {f.name: f for f in dataclasses.fields(Summary)}
COLUMNS = tuple(Column(f.name, f.metadata["unit"], f.metadata["meaning"], f.metadata["header"],
                       f.metadata["optional"], f.metadata["upload"], f.type not in ("str",))
                for f in dataclasses.fields(Summary))
HEADERS = {c.name: c.header for c in COLUMNS if c.header is not None}  # the app's table, in order
OPTIONAL = frozenset(c.name for c in COLUMNS if c.optional)
UPLOAD = tuple(c.name for c in COLUMNS if c.upload)
NUMERIC = tuple(c.name for c in COLUMNS if c.numeric)


def columns_markdown() -> str:
    """The column table of the README and the tab's Definitions: consecutive columns with one
    unit and meaning share a row."""
    rows: list[tuple[list[str], str, str]] = []
    for c in COLUMNS:
        if rows and rows[-1][1:] == (c.unit, c.meaning):
            rows[-1][0].append(c.name)
        else:
            rows.append(([c.name], c.unit, c.meaning))
    lines = ["| column | unit | meaning |", "| --- | --- | --- |"]
    lines += [f"| {', '.join(f'`{n}`' for n in names)} | {unit} | {meaning} |" for names, unit, meaning in rows]
    return "\n".join(lines)
