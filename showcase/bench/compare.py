"""Repeats and experiments read off a run's summary: the aggregate over repeats, and B against A.

This module owns `aggregate.csv` (a row per setting: the mean of each headline metric over its
repeats and its 95 % interval, by `stats.interval`), the experiment's plan (`ExperimentPlan`:
arms, the article's claim it tests), and `experiment.json` (`Experiment`: arms, the order they ran
in, and for each metric B relative to A with its interval and verdict, by `stats.compare_all`),
with the sentences a person reads. It knows nothing about servers, HTTP or files: rows in,
records out.
"""

from __future__ import annotations

import math
from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field, FiniteFloat, field_validator

from showcase.bench import stats
from showcase.bench.workload import Strict
from showcase.settings import ServerSettings

# What identifies a setting: the rows of repeats of one setting share these.
SETTING_COLUMNS = ("arm", "input_len", "output_len", "max_concurrency", "request_rate", "users")
AGGREGATED = ("request_throughput", "output_throughput", "mean_ttft_ms", "p90_ttft_ms", "p99_ttft_ms",
              "mean_tpot_ms", "p99_itl_ms", "mean_e2el_ms", "goodput")
UNITS = {"output_throughput": "tokens/s", "goodput": "req/s", "request_throughput": "req/s"}
NAMES = {"mean_ttft_ms": "mean TTFT", "p90_ttft_ms": "p90 TTFT", "p99_ttft_ms": "p99 TTFT",
         "mean_tpot_ms": "mean TPOT", "p99_itl_ms": "p99 ITL", "mean_e2el_ms": "mean E2E latency",
         "output_throughput": "output throughput", "goodput": "goodput", "request_throughput": "request throughput"}


def unit(metric: str) -> str:
    return UNITS.get(metric, "ms")


def setting_columns(summary: pd.DataFrame) -> list[str]:
    return [c for c in SETTING_COLUMNS if c in summary.columns]


def aggregate(summary: pd.DataFrame, confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """A row per setting (arm and load shape): its repeats, and for each headline metric the mean
    over repeats with its interval (`{metric}_ci_low`, `{metric}_ci_high`; NaN with one repeat)."""
    if summary.empty:
        return pd.DataFrame()
    keys = setting_columns(summary)
    rows = []
    for key, group in summary.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["repeats"] = len(group)
        row["points"] = ";".join(str(int(p)) for p in group["point"].dropna()) if "point" in group else ""
        for metric in AGGREGATED:
            if metric not in group.columns:
                continue
            ci = stats.interval(pd.to_numeric(group[metric], errors="coerce").tolist(), confidence)
            row |= {metric: ci.mean, f"{metric}_ci_low": ci.low, f"{metric}_ci_high": ci.high}
        for applied in ("mean_in_flight", "achieved_rate"):  # the load really applied, beside the label's
            if applied in group.columns:
                row[applied] = pd.to_numeric(group[applied], errors="coerce").mean()
        flags = sorted({f for cell in group.get("flags", pd.Series(dtype=str)).dropna().astype(str)
                        for f in cell.split(";") if f})
        row["flags"] = ";".join(flags)
        rows.append(row)
    return pd.DataFrame(rows)


def most_repeats(summary: pd.DataFrame) -> int:
    """The most repeats any setting of this summary has (1 for a run without repeats)."""
    agg = aggregate(summary)
    return int(agg["repeats"].max()) if not agg.empty else 0


# -- experiments ------------------------------------------------------------------------------------


class Arm(Strict):
    """One side of an experiment: server settings to launch with (fields of a preset's `server:`),
    workload fields over the experiment's, or an endpoint already running."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.+=-]{0,39}$")
    server: dict = Field(default_factory=dict)
    workload: dict = Field(default_factory=dict)
    endpoint: str | None = None
    model: str | None = None  # with an endpoint: its served model (default: the one it serves)


class Claim(Strict):
    """What the article says, quoted, and what it predicts: B `better` (or `worse`) on `metric`."""

    text: str
    section: str
    metric: str
    expect: Literal["better", "worse"] = "better"

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        if metric not in stats.LOWER_IS_BETTER:
            raise ValueError(f"metric must be one of {', '.join(stats.LOWER_IS_BETTER)}")
        return metric


class ExperimentPlan(Strict):
    """Two or more arms on one workload; each arm is compared with the first."""

    arms: list[Arm] = Field(min_length=2, max_length=8)
    claim: Claim | None = None
    seed: int = 0
    confidence: FiniteFloat = Field(stats.CONFIDENCE, gt=0.5, lt=1)

    @field_validator("arms")
    @classmethod
    def _distinct(cls, arms: list[Arm]) -> list[Arm]:
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ: {', '.join(names)}")
        return arms

    @property
    def is_aa(self) -> bool:
        """Every arm the same (names aside): differences can only be noise."""
        first = self.arms[0].model_dump(exclude={"name"})
        return all(a.model_dump(exclude={"name"}) == first for a in self.arms[1:])


class ArmRecord(BaseModel):
    """An arm as it ran: where, with which server settings, and why it was skipped, if it was."""

    name: str
    endpoint: str | None = None
    server_settings: ServerSettings | None = None  # None: an endpoint, its settings not ours to know
    workload: dict = {}
    skipped: str | None = None  # why this arm could not run (its server did not start, say)


class MetricResult(BaseModel):
    """B against A on one metric (experiment.json): means, b − a, its interval, relative to a."""

    a: float | None
    b: float | None
    diff: float | None
    ci: list[float | None]
    rel: float | None
    rel_ci: list[float | None]
    verdict: stats.Verdict
    detectable: float | None  # the smallest |b − a| this experiment could have detected (80 % power)
    n_a: int
    n_b: int
    unit: str
    lower_is_better: bool


class Pair(BaseModel):
    a: str
    b: str
    metrics: dict[str, MetricResult]
    sentences: list[str]


class Experiment(BaseModel):
    """experiment.json: the arms, the order they ran in, and each arm against the first."""

    arms: list[ArmRecord]
    order: list[str]
    repeats: int
    confidence: float
    method: str = stats.METHOD
    aa: bool = False
    done: bool = False  # False while it runs, and when it ended before every repeat
    metrics: dict[str, MetricResult] = {}  # the second arm against the first (the A/B of the file)
    comparisons: list[Pair] = []  # every arm against the first
    sentences: list[str] = []
    claim: Claim | None = None
    claim_verdict: Literal["confirmed", "contradicted", "not detectable here", "not tested"] | None = None
    note: str = ""


def _clean(x: float) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _result(c: stats.Comparison) -> MetricResult:
    return MetricResult(a=_clean(c.a), b=_clean(c.b), diff=_clean(c.diff), ci=[_clean(v) for v in c.ci],
                        rel=_clean(c.rel), rel_ci=[_clean(v) for v in c.rel_ci], verdict=c.verdict,
                        detectable=_clean(c.detectable), n_a=c.n_a, n_b=c.n_b, unit=unit(c.metric),
                        lower_is_better=c.lower_is_better)


def _num(x: float, metric: str) -> str:
    return f"{x:,.0f}" if unit(metric) == "tokens/s" and abs(x) >= 100 else f"{x:,.1f}" if abs(x) >= 1 else f"{x:.3g}"


def _signed(x: float, metric: str) -> str:
    return ("+" if x > 0 else "−" if x < 0 else "") + _num(abs(x), metric)


def sentence(name_b: str, metric: str, r: MetricResult, confidence: float) -> str:
    """E.g. "B's mean TTFT is 15.1 ms lower (−12.0 %; 95 % CI of B − A −18.4 to −11.8 ms, 3 repeats
    each): better"."""
    what, u = NAMES.get(metric, metric), unit(metric)
    if r.verdict == "not_measured" or r.diff is None:
        return f"{name_b}'s {what}: not measured in both arms with 2 or more repeats each, so nothing can be said."
    word = "higher" if r.diff > 0 else "lower"
    amount = f"{_num(abs(r.diff), metric)} {u} {word}" if r.diff else "the same"
    rel = f"{r.rel:+.1%}; ".replace("-", "−") if r.rel is not None and r.diff else ""
    lo, hi = r.ci
    span = f"{_signed(lo, metric)} to {_signed(hi, metric)} {u}" if lo is not None and hi is not None else "unknown"
    each = f"{r.n_a} repeats each" if r.n_a == r.n_b else f"{r.n_a} and {r.n_b} repeats"
    tail = r.verdict.replace("_", " ")
    if r.verdict == "no_difference" and r.detectable is not None:
        tail += f" (the smallest difference it could have detected: about {_num(r.detectable, metric)} {u})"
    return f"{name_b}'s {what} is {amount} ({rel}{confidence:.0%} CI of the difference {span}, {each}): {tail}"


def claim_verdict(claim: Claim | None, metrics: dict[str, MetricResult]):
    """Confirmed when the measured verdict on the claim's metric is what it predicts, contradicted
    when it is the opposite, not detectable here when no difference could be told."""
    if claim is None:
        return None
    r = metrics.get(claim.metric)
    if r is None or r.verdict == "not_measured":
        return "not tested"
    if r.verdict == "no_difference":
        return "not detectable here"
    return "confirmed" if r.verdict == claim.expect else "contradicted"


def analyse(summary: pd.DataFrame, plan: ExperimentPlan, arms: list[ArmRecord], run_order: list[str],
            repeats: int, done: bool, metrics: tuple[str, ...] = stats.HEADLINE) -> Experiment:
    """Every arm that ran against the first that ran, from the summary's rows (one per repeat)."""
    ran = [a.name for a in arms if a.skipped is None]
    values: dict[str, dict[str, list[float]]] = {}
    for name in ran:
        rows = summary[summary["arm"].astype(str) == name] if "arm" in summary.columns and not summary.empty \
            else pd.DataFrame()
        values[name] = {m: pd.to_numeric(rows[m], errors="coerce").tolist() if m in rows.columns else []
                        for m in metrics}
    exp = Experiment(arms=arms, order=run_order, repeats=repeats, confidence=plan.confidence, aa=plan.is_aa,
                     done=done, claim=plan.claim)
    if len(ran) < 2:
        skipped = "; ".join(f"{a.name}: {a.skipped}" for a in arms if a.skipped)
        exp.note = f"Fewer than two arms ran, so nothing is compared ({skipped or 'no repeat finished'})."
        exp.sentences = [exp.note]
        exp.claim_verdict = "not tested" if plan.claim else None
        return exp
    for b in ran[1:]:
        comps = stats.compare_all(values[ran[0]], values[b], metrics, plan.confidence)
        results = {c.metric: _result(c) for c in comps}
        exp.comparisons.append(Pair(a=ran[0], b=b, metrics=results,
                                    sentences=[sentence(b, m, r, plan.confidence) for m, r in results.items()
                                               if r.verdict != "not_measured" or m != "goodput"]))
    exp.metrics = exp.comparisons[0].metrics
    exp.sentences = [s for p in exp.comparisons for s in p.sentences]
    if exp.aa:
        exp.note = ("A/A experiment: the arms are the same, so any difference is noise; the intervals show this "
                    "server's run-to-run noise.")
    exp.claim_verdict = claim_verdict(plan.claim, exp.metrics)
    return exp
