"""Statistics over repeats: intervals, A/B comparisons and their verdicts, and the run order.

This module owns how the app says how sure it is. The unit is the repeat: a point measured N
times gives N values of each metric, and every interval is over those N values (Student t), never
over the requests inside one run, which share that run's drift (a server's speed moves by ±15 %
between identical runs minutes apart; intervals over requests come out several times too narrow).

A comparison of arm B against arm A is Welch's t over the two arms' repeat values: the difference
of the means (b − a), its interval, and a verdict: `better` or `worse` when the interval excludes
zero (better: lower for latencies, higher for throughputs), else `no_difference`. An experiment
judges several metrics at once, so the intervals are simultaneous: each at 1 − (1 − confidence)/k
for k metrics (Bonferroni), so that an A/A experiment calls any metric different in at most
1 − confidence of experiments. The smallest difference the experiment could have detected is
stated with each (at 80 % power). Pure functions of numbers; it knows nothing about runs or files.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Values = Sequence[float] | np.ndarray  # one metric's values over repeats


def _t_ppf(q: float, df: float) -> float:
    """Student's t quantile. scipy.stats is imported here, when first asked: it takes most of a
    second to import, which every run process and command would pay at start for one function."""
    from scipy import stats as sps

    return float(sps.t.ppf(q, df))

Verdict = Literal["better", "worse", "no_difference", "not_measured"]
CONFIDENCE = 0.95
POWER = 0.8  # for the smallest detectable difference
METHOD = ("Student t over repeats (each repeat is one value; requests inside a run are not independent of its "
          "drift); A/B: Welch's t on the two arms' repeats, intervals simultaneous over the metrics judged "
          "(Bonferroni)")

# Metrics judged in an experiment, and which way is better. Names as in summary.csv.
LOWER_IS_BETTER = {"mean_ttft_ms": True, "p90_ttft_ms": True, "mean_tpot_ms": True, "p99_itl_ms": True,
                   "mean_e2el_ms": True, "output_throughput": False, "goodput": False}
HEADLINE = ("mean_ttft_ms", "p90_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "mean_e2el_ms", "output_throughput", "goodput")


def _finite(values: Values) -> np.ndarray:
    arr = np.asarray([float(v) for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


@dataclass(frozen=True)
class Interval:
    """A metric's mean over n repeats and its two-sided interval (NaN bounds with fewer than 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def interval(values: Values, confidence: float = CONFIDENCE) -> Interval:
    """Student t interval of the mean of `values` (one per repeat); NaN-free values only."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    se = float(x.std(ddof=1)) / math.sqrt(n)
    t = _t_ppf(0.5 + confidence / 2, n - 1)
    return Interval(mean, mean - t * se, mean + t * se, n)


@dataclass(frozen=True)
class Comparison:
    """B against A on one metric: means, b − a with its interval, relative to a, the verdict, and
    the smallest |b − a| this experiment could have detected (at 80 % power)."""

    metric: str
    a: float
    b: float
    diff: float
    ci: tuple[float, float]
    rel: float
    rel_ci: tuple[float, float]
    verdict: Verdict
    detectable: float
    n_a: int
    n_b: int
    confidence: float
    lower_is_better: bool

    @property
    def detectable_rel(self) -> float:
        return self.detectable / abs(self.a) if self.a else math.nan


def compare(metric: str, a: Values, b: Values, confidence: float = CONFIDENCE,
            lower_is_better: bool | None = None) -> Comparison:
    """Welch's t interval of mean(b) − mean(a) at `confidence`; the verdict from its sign."""
    lower = LOWER_IS_BETTER.get(metric, True) if lower_is_better is None else lower_is_better
    xa, xb = _finite(a), _finite(b)
    nan2 = (math.nan, math.nan)
    if len(xa) < 2 or len(xb) < 2:
        ma = float(xa.mean()) if len(xa) else math.nan
        mb = float(xb.mean()) if len(xb) else math.nan
        return Comparison(metric, ma, mb, mb - ma, nan2, (mb - ma) / ma if ma else math.nan, nan2, "not_measured",
                          math.nan, len(xa), len(xb), confidence, lower)
    ma, mb = float(xa.mean()), float(xb.mean())
    va, vb = float(xa.var(ddof=1)) / len(xa), float(xb.var(ddof=1)) / len(xb)
    diff, se = mb - ma, math.sqrt(va + vb)
    if se == 0:  # identical repeats in both arms: the difference is exact
        ci, detectable = (diff, diff), 0.0
    else:
        df = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
        t = _t_ppf(0.5 + confidence / 2, df)
        ci = (diff - t * se, diff + t * se)
        detectable = (t + _t_ppf(POWER, df)) * se
    if ci[0] > 0 or ci[1] < 0:
        higher = ci[0] > 0
        verdict: Verdict = "worse" if higher == lower else "better"
    else:
        verdict = "no_difference"
    rel = diff / ma if ma else math.nan
    rel_ci = (ci[0] / ma, ci[1] / ma) if ma else nan2
    return Comparison(metric, ma, mb, diff, ci, rel, rel_ci, verdict, detectable, len(xa), len(xb), confidence, lower)


def compare_all(a: Mapping[str, Values], b: Mapping[str, Values], metrics: Sequence[str] = HEADLINE,
                confidence: float = CONFIDENCE) -> list[Comparison]:
    """Each metric that both arms measured, with simultaneous intervals (Bonferroni over them)."""
    judged = [m for m in metrics if len(_finite(a.get(m, []))) >= 2 and len(_finite(b.get(m, []))) >= 2]
    each = 1 - (1 - confidence) / max(1, len(judged))
    return [compare(m, a.get(m, []), b.get(m, []), each if m in judged else confidence) for m in metrics]


def repeats_to_detect(cv: float, effect: float, confidence: float = CONFIDENCE, power: float = POWER,
                      most: int = 1000) -> int | None:
    """Repeats per arm for a two-arm Welch comparison to detect a relative `effect` when one
    repeat's coefficient of variation is `cv` (equal in both arms); None beyond `most`."""
    if not (math.isfinite(cv) and cv >= 0):
        return None
    for n in range(2, most + 1):
        se = cv * math.sqrt(2 / n)
        df = 2 * (n - 1)
        if (_t_ppf(0.5 + confidence / 2, df) + _t_ppf(power, df)) * se <= effect:
            return n
    return None


def order(arms: Sequence[str], repeats: int, seed: int = 0) -> list[str]:
    """The sequence in which arms run, each run one repeat of its arm, so slow drift cancels.

    Two arms: ABBA blocks (each block's lead drawn at random, so neither arm always goes first;
    an odd last repeat is one AB or BA pair). More arms: randomized complete blocks (every block
    runs each arm once, in a random order). `seed` makes the order reproducible."""
    rng = random.Random(seed)
    names = list(arms)
    out: list[str] = []
    if len(names) == 2:
        for _ in range(repeats // 2):
            first, second = names if rng.random() < 0.5 else names[::-1]
            out += [first, second, second, first]
        if repeats % 2:
            out += names if rng.random() < 0.5 else names[::-1]
        return out
    for _ in range(repeats):
        block = names[:]
        rng.shuffle(block)
        out += block
    return out
