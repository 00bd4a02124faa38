"""What a benchmark runs: a workload, the points it expands into, the SLOs, and the limits.

This module owns the one description of a point (`Point`), the workload that expands into points
(`Workload.points`), the one SLO type (`SLOs`), and the visitor limits (`LIMITS`) that a shared
link's visitors are held to. It validates strictly and knows nothing about servers, HTTP or files.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator, model_validator

from showcase.errors import UserError

# What a visitor of the app may set: generous for a GPU, bounded so a shared link cannot queue a
# day of work: each value, and the run as a whole (points, requests, hours).
LIMITS = {"concurrency": 256, "num_requests": 2000, "input_len": 262144, "output_len": 8192, "duration_s": 3600,
          "points": 64, "total_requests": 20000, "run_s": 4 * 3600, "turns": 64, "think_time_s": 600}


class WorkloadError(UserError):
    """A workload that does not validate, or that the server cannot serve; refused before the run."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ARRIVALS_SLACK, ARRIVALS_MARGIN = 2, 10  # a Poisson count over a short time runs well above its mean


class Chat(Strict):
    """Chat users' conversations: each user holds `turns` turns; every turn resends the shared
    system prompt and the whole history (the server's real replies) plus a new message of the
    point's `input_len` tokens, then waits for the reply of `output_len` tokens and thinks."""

    turns: int = Field(3, ge=1, le=LIMITS["turns"])
    system_prompt_len: int = Field(0, ge=0, le=LIMITS["input_len"])  # content tokens, the same for every user
    think_time_s: FiniteFloat = Field(0.0, ge=0, le=LIMITS["think_time_s"])  # from a reply to the next message
    think_time: Literal["fixed", "exponential"] = "fixed"  # exponential: `think_time_s` is the mean


class Point(Strict):
    """One measured point: a load shape and request lengths."""

    index: int
    input_len: int  # prompt tokens; for chat users, the tokens of each new message
    output_len: int
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

    def context_len(self) -> int:
        """The longest prompt plus reply this point sends (a chat's last turn carries the whole
        history; the chat template's few tokens a turn come on top)."""
        if self.chat is None:
            return self.input_len + self.output_len
        return self.chat.system_prompt_len + self.chat.turns * (self.input_len + self.output_len)

    def arrivals_bound(self) -> int:
        """With a rate for a duration: more arrivals than the schedule can bring (it stops at the
        duration), so none is ever missing."""
        return int(self.request_rate * self.duration_s * ARRIVALS_SLACK) + ARRIVALS_MARGIN


class Workload(Strict):
    """The load: every combination of `input_len` × `request_rate` × `concurrency` is a point;
    with `users` instead of `concurrency`, every `input_len` × `users` is a point of chat users."""

    concurrency: list[int] | None = Field(None, min_length=1)
    input_len: list[int] = Field(min_length=1)
    output_len: int = Field(ge=1, le=LIMITS["output_len"])
    request_rate: list[FiniteFloat] | None = None  # req/s; with it, concurrency is the in-flight cap
    burstiness: FiniteFloat = Field(1.0, gt=0)
    num_requests: int | None = Field(32, ge=1, le=LIMITS["num_requests"])
    duration_s: FiniteFloat | None = Field(None, gt=0, le=LIMITS["duration_s"])
    warmup_requests: int = Field(1, ge=0, le=LIMITS["concurrency"])
    timeout_s: FiniteFloat = Field(300.0, gt=0)
    stream: bool = True
    shared_prefix_len: int = Field(0, ge=0)
    users: list[int] | None = Field(None, min_length=1)  # chat users per point: users × turns requests (not num_requests)
    chat: Chat = Chat()

    @field_validator("concurrency", "input_len", "request_rate", "users")
    @classmethod
    def _once_each(cls, levels: list | None) -> list | None:
        """A level given twice is measured once (in the order first given)."""
        return list(dict.fromkeys(levels)) if levels is not None else None

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if (self.concurrency is None) == (self.users is None):
            raise ValueError("give exactly one of concurrency and users")
        if any(c < 1 or c > LIMITS["concurrency"] for c in self.levels):
            raise ValueError(f"concurrency and users levels must be between 1 and {LIMITS['concurrency']}")
        if self.users is not None:
            self._check_chat()
        if any(n < 1 or n > LIMITS["input_len"] for n in self.input_len):
            raise ValueError(f"input_len values must be between 1 and {LIMITS['input_len']}")
        if self.request_rate is not None and any(r <= 0 for r in self.request_rate):
            raise ValueError("request_rate values must be above 0")
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of num_requests and duration_s")
        if any(self.shared_prefix_len >= n for n in self.input_len) and self.shared_prefix_len:
            raise ValueError("shared_prefix_len must be shorter than every input_len")
        self._check_size()
        return self

    @property
    def levels(self) -> list[int]:
        """The concurrency levels, or the numbers of chat users."""
        return self.users or self.concurrency or []

    def _check_chat(self) -> None:
        if self.request_rate is not None or self.duration_s is not None or self.shared_prefix_len:
            raise ValueError("chat users set their own pace: no request_rate, duration_s or shared_prefix_len")
        if not self.stream:
            raise ValueError("chat users stream their replies")

    def requests_per_point(self, level: int) -> int | None:
        return level * self.chat.turns if self.users is not None else self.num_requests

    def _check_size(self) -> None:
        """The run as a whole: its points, its requests, and how long its arrivals take."""
        points = len(self.input_len) * len(self.request_rate or [None]) * len(self.levels)
        if points > LIMITS["points"]:
            raise ValueError(f"{points} points (input lengths × rates × concurrency levels); at most {LIMITS['points']}")
        per_point = self.requests_per_point(max(self.levels))
        if per_point is not None and points * (per_point + self.warmup_requests) > LIMITS["total_requests"]:
            raise ValueError(f"{points} points × {per_point + self.warmup_requests} requests is more than "
                             f"{LIMITS['total_requests']} requests in all")
        longest = (self.num_requests / min(self.request_rate) if self.request_rate and self.num_requests
                   else self.duration_s or 0)
        if longest > LIMITS["duration_s"] or points * longest > LIMITS["run_s"]:
            raise ValueError(f"the arrivals alone would take {longest:,.0f} s per point and {points * longest:,.0f} s "
                             f"in all; at most {LIMITS['duration_s']} s a point and {LIMITS['run_s']} s a run "
                             "(raise request_rate or lower num_requests)")

    def points(self) -> tuple[Point, ...]:
        """Every combination of input length × rate × concurrency (or users), in that order."""
        combos = [(n, r, c) for n in self.input_len for r in (self.request_rate or [None]) for c in self.levels]
        return tuple(self.point(i, n, c, r) for i, (n, r, c) in enumerate(combos))

    def point(self, index: int, input_len: int, level: int, rate: float | None = None) -> Point:
        """The point of this workload at one prompt length, level (concurrency or users) and rate."""
        shared = self.model_dump(include={"output_len", "burstiness", "duration_s", "timeout_s", "stream",
                                          "shared_prefix_len"})
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
