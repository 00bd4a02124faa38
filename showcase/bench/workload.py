"""What a benchmark runs: a workload, the points it expands into, the SLOs, and the allowances.

This module owns the one description of a point (`Point`), the workload that expands into points
(`Workload.points`), the one SLO type (`SLOs`), and the allowances (`Allowance`): `VISITOR` for whoever
reaches the app without its admin password, `TRUSTED` for the command line and the admin (what the
load generator can drive; every workload is held to it). It validates strictly and knows nothing
about servers, HTTP or files.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator, model_validator

from showcase.errors import UserError


class WorkloadError(UserError):
    """A workload that does not validate, or that the server cannot serve; refused before the run."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Allowance(Strict):
    """How much one run may ask for: each value, and the run as a whole (points, requests, hours)."""

    who: str
    concurrency: int  # streams or chat users a point
    num_requests: int
    input_len: int
    output_len: int
    duration_s: float  # of a point's arrivals
    points: int
    total_requests: int
    run_s: float  # of a run's arrivals
    turns: int
    think_time_s: float
    workers: int  # load-generator processes a run may spawn (each ~100 MB)

    def check(self, w: Workload) -> None:
        """Refuse `w` with a `WorkloadError` naming the first limit it passes."""
        problem = self._problem(w)
        if problem:
            raise WorkloadError(f"{problem} (the allowance for {self.who})")

    def _problem(self, w: Workload) -> str:
        points = len(w.input_len or [None]) * len(w.request_rate or [None]) * len(w.levels or [None]) * w.repeats
        per_point = w.requests_per_point(max(w.levels, default=1))
        longest = (w.num_requests / min(w.request_rate) if w.request_rate and w.num_requests else w.duration_s or 0)
        checks = [
            (max(w.levels, default=0) > self.concurrency, f"concurrency and users levels: at most {self.concurrency:,}"),
            (max(w.input_len or [0]) > self.input_len, f"input_len: at most {self.input_len:,} tokens"),
            ((w.output_len or 0) > self.output_len, f"output_len: at most {self.output_len:,} tokens"),
            (w.num_requests is not None and w.num_requests > self.num_requests,
             f"num_requests: at most {self.num_requests:,} a point"),
            (w.warmup_requests > self.concurrency, f"warmup_requests: at most {self.concurrency:,}"),
            (w.workers is not None and w.workers > self.workers, f"workers: at most {self.workers}"),
            (w.chat.turns > self.turns or w.chat.think_time_s > self.think_time_s
             or w.chat.system_prompt_len > self.input_len,
             f"chat: at most {self.turns} turns, {self.think_time_s:g} s think time, a system prompt of "
             f"{self.input_len:,} tokens"),
            (points > self.points, f"{points} points (input lengths × rates × levels × repeats); at most {self.points:,}"),
            (per_point is not None and points * (per_point + w.warmup_requests) > self.total_requests,
             f"{points} points × {(per_point or 0) + w.warmup_requests:,} requests is more than "
             f"{self.total_requests:,} requests in all"),
            (longest > self.duration_s or points * longest > self.run_s,
             f"the arrivals alone would take {longest:,.0f} s per point and {points * longest:,.0f} s in all; at "
             f"most {self.duration_s:,.0f} s a point and {self.run_s:,.0f} s a run (raise request_rate or lower "
             "num_requests)"),
        ]
        return next((text for failed, text in checks if failed), "")


# Whoever reaches the app without its admin password: generous for a GPU, bounded so a shared link
# cannot queue a day of work.
VISITOR = Allowance(who="visitors of the app", concurrency=256, num_requests=2000, input_len=262_144, output_len=8192,
                 duration_s=3600, points=64, total_requests=20_000, run_s=4 * 3600, turns=64, think_time_s=600,
                 workers=os.cpu_count() or 1)
# The command line and the admin: what one load generator can be asked to drive (a data-parallel
# cluster at 10,000 streams, a million requests); prompts are bounded by the server's context.
TRUSTED = Allowance(who="the command line and the admin", concurrency=100_000, num_requests=10_000_000,
                input_len=16_777_216, output_len=1_048_576, duration_s=7 * 86400, points=10_000,
                total_requests=100_000_000, run_s=30 * 86400, turns=10_000, think_time_s=86400, workers=1024)


ARRIVALS_SLACK, ARRIVALS_MARGIN = 2, 10  # a Poisson count over a short time runs well above its mean


class Chat(Strict):
    """Chat users' conversations: each user holds `turns` turns; every turn resends the shared
    system prompt and the whole history (the server's real replies) plus a new message of the
    point's `input_len` tokens, then waits for the reply of `output_len` tokens and thinks."""

    turns: int = Field(3, ge=1)
    system_prompt_len: int = Field(0, ge=0)  # content tokens, the same for every user
    think_time_s: FiniteFloat = Field(0.0, ge=0)  # from a reply to the next message
    think_time: Literal["fixed", "exponential"] = "fixed"  # exponential: `think_time_s` is the mean


class FromFile(Strict):
    """Where a workload's requests come from when not from synthetic prompts: a prompts file
    (`dataset`: its prompts sent as they are) or a trace (`trace`: each request at its time, with
    a prompt of its input length and its output length)."""

    dataset: str | None = None  # a prompts file (JSONL, JSON or CSV; chat messages; ShareGPT)
    trace: str | None = None  # Mooncake JSONL or the Azure LLM inference trace CSV
    seed: int | None = None  # the dataset's rows shuffled with this seed; None: in file order
    salt_prompts: bool = False  # a unique tag before each prompt, so that repeats miss the prefix cache
    time_scale: FiniteFloat = Field(1.0, gt=0)  # a trace's times multiplied by this (2: half as fast)
    trace_window: tuple[FiniteFloat, FiniteFloat] | None = None  # seconds of the trace: [start, end)

    @property
    def from_file(self) -> bool:
        return self.dataset is not None or self.trace is not None


class Point(FromFile):
    """One measured point: a load shape and request lengths (or the file they come from)."""

    index: int
    input_len: int | None  # prompt tokens; for chat users, the tokens of each new message; None: the file's
    output_len: int | None  # None: the file's where it gives them, else the model's own stop
    concurrency: int | None  # closed loop: requests in flight; with a rate: the cap (None: no cap); users
    request_rate: float | None = None  # requests/s (Poisson when burstiness is 1); None: closed loop
    burstiness: float = 1.0
    num_requests: int | None = 32
    duration_s: float | None = None
    warmup_requests: int = 1
    timeout_s: float = 300.0
    stream: bool = True
    shared_prefix_len: int = 0
    users: int | None = None  # chat users, each holding a conversation (`chat`); None: single prompts
    chat: Chat | None = None
    workers: int | None = None  # load generator processes; None: chosen from the cores and the load
    repeat: int = 0  # which repeat of its setting this point is (0-based)
    arm: str | None = None  # an experiment's arm; None outside experiments

    @property
    def open_loop(self) -> bool:
        """Requests sent at their own times (a rate's arrivals, or a trace's), not as others end."""
        return self.request_rate is not None or self.trace is not None

    def context_len(self) -> int | None:
        """The longest prompt plus reply this point sends (a chat's last turn carries the whole
        history; the chat template's few tokens a turn come on top); None: a file's, unknown here."""
        if self.input_len is None or self.output_len is None:
            return None
        if self.chat is None:
            return self.input_len + self.output_len
        return self.chat.system_prompt_len + self.chat.turns * (self.input_len + self.output_len)

    def arrivals_bound(self) -> int:
        """With a rate for a duration: more arrivals than the schedule can bring (it stops at the
        duration), so none is ever missing."""
        assert self.request_rate is not None and self.duration_s is not None  # asked only of a rate for a duration
        return int(self.request_rate * self.duration_s * ARRIVALS_SLACK) + ARRIVALS_MARGIN


class Workload(FromFile):
    """The load: every combination of `input_len` × `request_rate` × `concurrency` is a point;
    with `users` instead of `concurrency`, every `input_len` × `users` is a point of chat users.
    With a `dataset` its prompts replace `input_len` (every `request_rate` × level is a point; with
    `users`, each user replays one of its conversations); a `trace` is one point (per `concurrency`
    cap, if any), its requests at their times."""

    concurrency: list[int] | None = Field(None, min_length=1)
    input_len: list[int] | None = Field(None, min_length=1)
    output_len: int | None = Field(None, ge=1)  # with a dataset: for rows that give none (else the model's stop)
    request_rate: list[FiniteFloat] | None = None  # req/s; with it, concurrency is the in-flight cap
    burstiness: FiniteFloat = Field(1.0, gt=0)
    num_requests: int | None = Field(32, ge=1)
    duration_s: FiniteFloat | None = Field(None, gt=0)
    warmup_requests: int = Field(1, ge=0)
    timeout_s: FiniteFloat = Field(300.0, gt=0)
    stream: bool = True
    shared_prefix_len: int = Field(0, ge=0)
    users: list[int] | None = Field(None, min_length=1)  # chat users per point: users × turns requests (not num_requests)
    chat: Chat = Chat()
    workers: int | None = Field(None, ge=1, le=1024)  # load generator processes; None: chosen per point
    repeats: int = Field(1, ge=1, le=100)  # every point measured this many times, interleaved across the points

    @model_validator(mode="before")
    @classmethod
    def _no_bools(cls, data: object) -> object:
        """`true` is no number of streams or tokens (pydantic would take it as 1)."""
        if isinstance(data, dict):
            for key, value in data.items():
                values = value if isinstance(value, list) else [value]
                if key not in ("stream", "salt_prompts") and any(isinstance(v, bool) for v in values):
                    raise ValueError(f"{key}: {value!r} is not a number")
        return data

    @model_validator(mode="before")
    @classmethod
    def _a_trace_sends_all(cls, data: object) -> object:
        """A trace sends all its requests unless `num_requests` is given (not the default of 32)."""
        if isinstance(data, dict) and data.get("trace") is not None and "num_requests" not in data \
                and data.get("duration_s") is None:
            return {**data, "num_requests": None}
        return data

    @field_validator("concurrency", "input_len", "request_rate", "users")
    @classmethod
    def _once_each(cls, levels: list | None) -> list | None:
        """A level given twice is measured once (in the order first given)."""
        return list(dict.fromkeys(levels)) if levels is not None else None

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if self.trace is not None:
            self._check_trace()
        elif (self.concurrency is None) == (self.users is None):
            raise ValueError("give exactly one of concurrency and users")
        if any(c < 1 for c in self.levels):
            raise ValueError("concurrency and users levels must be 1 or more")
        if self.users is not None:
            self._check_chat()
        self._check_lengths()
        if self.request_rate is not None and any(r <= 0 for r in self.request_rate):
            raise ValueError("request_rate values must be above 0")
        if self.trace is None and (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of num_requests and duration_s")
        if self.shared_prefix_len and any(self.shared_prefix_len >= n for n in self.input_len or [0]):
            raise ValueError("shared_prefix_len must be shorter than every input_len")
        problem = TRUSTED._problem(self)  # every workload, whoever asks, within what the engine can drive
        if problem:
            raise ValueError(problem)
        return self

    @property
    def levels(self) -> list[int]:
        """The concurrency levels, or the numbers of chat users."""
        return self.users or self.concurrency or []

    def _check_lengths(self) -> None:
        if self.dataset is not None and self.trace is not None:
            raise ValueError("give a dataset or a trace, not both")
        if self.from_file:
            if self.input_len is not None:
                raise ValueError("the file gives the prompts: leave input_len out")
            if self.shared_prefix_len:
                raise ValueError("the file gives the prompts: shared_prefix_len applies to synthetic prompts only")
        elif self.input_len is None or self.output_len is None:
            raise ValueError("give input_len and output_len (or a dataset or a trace)")
        elif any(n < 1 for n in self.input_len):
            raise ValueError("input_len values must be 1 or more")
        if self.dataset is None and (self.seed is not None or self.salt_prompts):
            raise ValueError("seed and salt_prompts apply to a dataset's prompts")
        if self.trace is None and (self.time_scale != 1.0 or self.trace_window is not None):
            raise ValueError("time_scale and trace_window apply to a trace")
        if self.trace_window is not None and not 0 <= self.trace_window[0] < self.trace_window[1]:
            raise ValueError("trace_window: START:END in seconds, 0 <= START < END")

    def _check_trace(self) -> None:
        if self.users is not None or self.request_rate is not None or self.duration_s is not None:
            raise ValueError("a trace sets its own pace: no users, request_rate or duration_s (concurrency, if "
                             "given, caps the requests in flight)")
        if self.output_len is not None:
            raise ValueError("the trace gives each request's output length: leave output_len out")

    def _check_chat(self) -> None:
        if self.request_rate is not None or self.duration_s is not None or self.shared_prefix_len:
            raise ValueError("chat users set their own pace: no request_rate, duration_s or shared_prefix_len")
        if not self.stream:
            raise ValueError("chat users stream their replies")

    def requests_per_point(self, level: int | None) -> int | None:
        return (level or 0) * self.chat.turns if self.users is not None else self.num_requests

    def points(self) -> tuple[Point, ...]:
        """Every combination of input length × rate × concurrency (or users), in that order; with
        repeats, the whole sequence again for each repeat (interleaved, so that a server's slow drift
        spreads over every setting instead of landing on one setting's repeats)."""
        lengths: list[int | None] = [*self.input_len] if self.input_len else [None]
        rates: list[float | None] = [*self.request_rate] if self.request_rate else [None]
        levels: list[int | None] = [*self.levels] if self.levels else [None]
        combos = [(n, r, c) for n in lengths for r in rates for c in levels]
        return tuple(self.point(k * len(combos) + i, n, c, r).model_copy(update={"repeat": k})
                     for k in range(self.repeats) for i, (n, r, c) in enumerate(combos))

    def point(self, index: int, input_len: int | None, level: int | None, rate: float | None = None) -> Point:
        """The point of this workload at one prompt length (None: the file's), level (concurrency or
        users; None: a trace without a cap) and rate."""
        shared = self.model_dump(include={"output_len", "burstiness", "duration_s", "timeout_s", "stream",
                                          "shared_prefix_len", "workers", *FromFile.model_fields})
        chat = {"users": level, "chat": self.chat} if self.users is not None else {}
        return Point(index=index, input_len=input_len, request_rate=rate, concurrency=level,
                     num_requests=self.requests_per_point(level), warmup_requests=self.warmup_requests,
                     **shared, **chat)


class SLOs(Strict):
    """Service-level objectives in ms; a request is good when it meets every one given."""

    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)
    e2el_ms: float | None = Field(None, gt=0)

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))

    def overridden(self, **values: float | None) -> SLOs:
        """These SLOs with the values given (None leaves one as it is), validated."""
        return validated(SLOs, self.model_dump() | {k: v for k, v in values.items() if v is not None}, "SLOs")


def validated(model: type[BaseModel], data: dict, where: str):
    """`model` from `data`, or a `WorkloadError` naming `where` and every field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WorkloadError(explain(exc, where)) from exc


def explain(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{field}: {err['msg']}")
    return f"{where}: " + "; ".join(parts)
