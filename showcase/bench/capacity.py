"""The capacity search: the largest load a deployment serves within its latency targets.

This module owns the search (doubling from the lowest level until one fails, then bisection on
integers), the verdict on one probed level (the chosen percentile of every SLO given, and the
share of failed requests), the plan a user sets (`CapacityPlan`), and the answer written to
`capacity.json` (`Capacity`) with its one-sentence summary. Levels are integers: concurrent
streams, chat users, or request rates in steps of `resolution` req/s. It measures nothing and
knows nothing about HTTP or files: `run` measures each probed level as an ordinary point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, FiniteFloat

from showcase.bench.workload import VISITOR, Allowance, Point, SLOs, Strict, Workload, WorkloadError

By = Literal["concurrency", "rate", "users"]
NOUNS = {"concurrency": "concurrent streams", "rate": "requests/s", "users": "chat users"}
SLO_NAMES = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2el_ms": "E2E"}
MIN_PER_STREAM = 2  # requests each stream sends at a concurrency level, at least (a point of one request each is a burst)


class CapacityPlan(Strict):
    """What to search: by which load, up to where, judged at which percentile."""

    by: By = "concurrency"
    percentile: FiniteFloat = Field(90.0, gt=0, le=100)
    max_failed_share: FiniteFloat = Field(0.0, ge=0, lt=1)  # a level passes with at most this share failed
    upper: int = Field(VISITOR.concurrency, ge=1)  # the highest level probed (rates: in steps of resolution)
    resolution: FiniteFloat = Field(0.5, gt=0)  # req/s per step, for `by: rate`

    def value(self, level: int) -> int | float:
        """A level's load: streams or users as they are (whole numbers), rates in steps of `resolution`."""
        return level * self.resolution if self.by == "rate" else int(level)

    def label(self, level: int) -> str:
        return f"{self.value(level):g}"

    def point(self, workload: Workload, level: int, index: int) -> Point:
        """The point that probes `level`: the workload's first prompt length, at least
        `MIN_PER_STREAM` requests per stream at a concurrency level."""
        n = workload.input_len[0] if workload.input_len else None
        if self.by == "rate":
            return workload.point(index, n, None, self.value(level)).model_copy(update={"concurrency": None})
        point = workload.point(index, n, level)
        if self.by == "concurrency" and point.num_requests is not None:
            point = point.model_copy(update={"num_requests": max(point.num_requests, MIN_PER_STREAM * level)})
        return point


def check(plan: CapacityPlan, workload: Workload, slos: SLOs, allowance: Allowance | None = None) -> None:
    """Refuse a search that cannot answer: no SLO, or a workload of the wrong kind for `by`."""
    if not slos.any:
        raise WorkloadError("a capacity search needs at least one SLO (TTFT, TPOT or E2E)")
    if (plan.by == "users") != (workload.users is not None):
        raise WorkloadError("search by users with a chat-users workload (users, turns), and only then")
    if workload.trace is not None and plan.by != "concurrency":
        raise WorkloadError("a trace sets its own rate: search a trace by concurrency (the cap on requests in flight)")
    if plan.by == "rate" and workload.duration_s is not None:
        raise WorkloadError("a search by rate sends a number of requests per level: give num_requests, not duration_s")
    if allowance is not None and plan.by in ("concurrency", "users") and plan.upper > allowance.concurrency:
        raise WorkloadError(f"upper: at most {allowance.concurrency:,} {NOUNS[plan.by]} (the allowance for {allowance.who})")


class Probe(BaseModel):
    """One probed level: its measured percentile of each SLO'd latency, failures, and the verdict."""

    level: int
    load: int | float  # the level as streams, users (whole numbers) or req/s
    point: int  # its (first) row in summary.csv
    points: list[int] = []  # every repeat's row in summary.csv
    values_ms: dict[str, float | None]  # "ttft_ms" etc.: the plan's percentile (mean over repeats); None: no value
    upper_ms: dict[str, float | None] = {}  # with repeats: the upper end of each one's 95 % interval, as judged
    failed_share: float | None  # over every repeat; None when nothing was sent
    passed: bool
    binding: str | None = None  # the SLO (or "failures", "under_loaded") it missed by the widest margin

    @property
    def integral(self) -> bool:
        return self.load == int(self.load)


def _value(x: float) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def judge_repeats(level: int, plan: CapacityPlan, values: list[dict[str, float]], completed: list[int],
                  failed: list[int], points: list[int], slos: SLOs) -> Probe:
    """A level's verdict over its repeats: failures pooled; each SLO'd percentile judged by the
    upper end of its 95 % interval over the repeats (Student t), or by its one value without
    repeats. A percentile with no value (nothing completed, no TTFT without streaming, no TPOT for
    one-token replies) cannot meet its target: the level fails on it, saying so."""
    from showcase.bench import stats

    sent = sum(completed) + sum(failed)
    share = sum(failed) / sent if sent else math.nan
    means: dict[str, float] = {}
    uppers: dict[str, float] = {}
    for name in SLO_NAMES:
        ci = stats.interval([v.get(name, math.nan) for v in values])
        means[name] = ci.mean
        uppers[name] = ci.high if ci.n >= 2 else ci.mean
    passed, binding = judge(uppers, share, slos, plan.max_failed_share)
    return Probe(level=level, load=plan.value(level), point=points[0], points=points,
                 values_ms={k: _value(v) for k, v in means.items()},
                 upper_ms={k: _value(v) for k, v in uppers.items()} if len(values) > 1 else {},
                 failed_share=_value(share), passed=passed, binding=binding)


def judge(values_ms: Mapping[str, float | None], failed_share: float | None, slos: SLOs,
          max_failed_share: float) -> tuple[bool, str | None]:
    """Whether a level passes, and if not, what failed first: the SLO exceeded by the largest
    ratio (a percentile with no value counts as missed), or "failures" when more requests failed
    than allowed."""
    if failed_share is None or not math.isfinite(failed_share) or failed_share > max_failed_share:
        return False, "failures"
    ratios = {}
    for name, target in slos.model_dump().items():
        if target is None:
            continue
        value = values_ms.get(name)
        ratios[name] = value / target if value is not None and math.isfinite(value) else math.inf
    worst = max(ratios, key=lambda name: ratios[name])
    return (False, worst) if ratios[worst] > 1 else (True, None)


class Search:
    """Doubling from level 1 until a level fails (or `upper` passes), then bisection between the
    highest passing level below the lowest failing one and that failing level."""

    def __init__(self, upper: int) -> None:
        self.upper = upper
        self.results: dict[int, bool] = {}

    @property
    def min_failing(self) -> int | None:
        return min((k for k, ok in self.results.items() if not ok), default=None)

    @property
    def max_passing(self) -> int | None:
        """The highest passing level below the lowest failing one (None: none passed)."""
        hi = self.min_failing
        return max((k for k, ok in self.results.items() if ok and (hi is None or k < hi)), default=None)

    def next(self) -> int | None:
        """The next level to probe; None when the answer is found."""
        lo, hi = self.max_passing or 0, self.min_failing
        if hi is None:
            return None if lo >= self.upper else min(max(1, 2 * lo), self.upper)
        return None if hi - lo <= 1 else (lo + hi) // 2

    def record(self, level: int, passed: bool) -> None:
        self.results[level] = passed


class Capacity(BaseModel):
    """capacity.json: the answer, how it was judged, and every probed level."""

    plan: CapacityPlan
    slos: SLOs
    percentile: float = 90.0  # the plan's, said at the top for readers of the file
    max_passing: int | float | None = None  # the answer, as a load; None when even the lowest level failed
    reason: str = ""  # why there is no answer (max_passing None): what the lowest level missed
    min_failing: int | float | None = None  # None when the upper bound passed
    binding_slo: str | None = None  # what failed first at min_failing
    repeats: int = 1  # each level measured this many times
    probes: list[Probe] = []
    usd_per_m_output_tokens: float | None = None  # at max_passing, with a price per GPU-hour
    usd_per_user_hour: float | None = None  # at max_passing, for chat users
    done: bool = False  # False while searching, and when the run ended before the answer
    sentence: str = ""


def targets(slos: SLOs, percentile: float) -> str:
    p = f"p{percentile:g}"
    return " and ".join(f"{p} {SLO_NAMES[k]} ≤ {v:g} ms" for k, v in slos.model_dump().items() if v is not None)


def missed(probe: Probe, plan: CapacityPlan) -> str:
    """What a failing level missed, in words."""
    if probe.binding == "under_loaded":
        return "the load was never applied (our client could not keep that many requests in flight or on schedule)"
    if probe.binding == "failures":
        if probe.failed_share is None:
            return "no request was sent"
        return f"{probe.failed_share:.0%} of requests failed (at most {plan.max_failed_share:.0%} allowed)"
    assert probe.binding is not None  # a failed probe names what failed it
    name = f"p{plan.percentile:g} {SLO_NAMES[probe.binding]}"
    value = probe.values_ms.get(probe.binding)
    if value is None:
        return f"{name} has no value (no completed request measured it), so its target cannot be met"
    upper = probe.upper_ms.get(probe.binding)
    if upper is not None and len(probe.points) > 1:
        return f"{name} is {value:,.1f} ms over {len(probe.points)} repeats (95 % interval up to {upper:,.1f} ms)"
    return f"{name} is {value:,.1f} ms"


def sentence(cap: Capacity) -> str:
    """The answer in one sentence, e.g. "serves up to 39 concurrent streams with p90 TTFT ≤ 500 ms;
    at 40, p90 TTFT is 512.3 ms"."""
    plan = cap.plan

    def noun(load: float) -> str:  # "1 concurrent stream", "2 concurrent streams"
        word = NOUNS[plan.by]
        return f"{load:g} {word[:-1] if load == 1 and plan.by != 'rate' else word}"

    failing = next((p for p in cap.probes if p.load == cap.min_failing), None)
    goal = targets(cap.slos, plan.percentile)
    if cap.max_passing is None:
        text = f"does not meet {goal} even at {noun(failing.load)}: {missed(failing, plan)}" \
            if failing else f"found no answer for {goal}"
    elif failing is None:
        text = f"serves at least {noun(cap.max_passing)} with {goal} (the upper bound of the search; none failed)"
    else:
        text = (f"serves up to {noun(cap.max_passing)} with {goal}; at {failing.load:g}, "
                f"{missed(failing, plan)}")
    costs = []
    if cap.usd_per_m_output_tokens is not None and cap.max_passing is not None:
        costs.append(f"${cap.usd_per_m_output_tokens:,.2f} per million output tokens")
    if cap.usd_per_user_hour is not None and cap.max_passing is not None:
        costs.append(f"${cap.usd_per_user_hour:,.3f} per user-hour")
    if cap.repeats > 1:
        text += (f" (each level measured {cap.repeats} times; a level passes when the upper end of each "
                 f"percentile's 95 % interval over its repeats meets the target)")
    text += f", at {' and '.join(costs)}" if costs else ""
    return text if cap.done else f"{text} — the search ended before it finished, so this is not yet the answer"
