"""The statistics over repeats, on synthetic repeats whose truth is known."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from showcase.bench import compare, stats


def test_a_known_effect_is_detected_and_its_interval_covers_the_truth():
    rng = np.random.default_rng(1)
    a, b = rng.normal(100, 5, 5), rng.normal(80, 5, 5)
    c = stats.compare("mean_ttft_ms", a, b)
    assert c.verdict == "better"  # lower TTFT
    assert c.ci[0] < -20 < c.ci[1]
    assert c.rel == pytest.approx(c.diff / c.a)
    assert c.detectable < 20
    t = stats.compare("output_throughput", a, b)
    assert t.verdict == "worse"  # lower throughput


def test_interval_coverage_is_about_the_confidence_asked():
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(400):
        ci = stats.interval(rng.normal(10, 2, 4))
        covered += ci.low <= 10 <= ci.high
    assert 0.91 <= covered / 400 <= 0.99


def _repeat(rng, drift_sd: float = 0.1, own_sd: float = 0.02) -> dict[str, float]:
    """One run's headline metrics: a drift of the whole server moves them all together (as a
    CPU server's ±15 % from one run to the next does), plus a little noise of their own."""
    d = rng.normal(1, drift_sd)
    own = lambda: rng.normal(1, own_sd)  # noqa: E731
    return {"mean_ttft_ms": 50 * d * own(), "p90_ttft_ms": 70 * d * own(), "mean_tpot_ms": 20 * d * own(),
            "p99_itl_ms": 40 * d * own(), "mean_e2el_ms": 700 * d * own(), "output_throughput": 300 / d * own(), "goodput": 5 / d * own()}


def _arm(rng, n: int, **kw) -> dict[str, list[float]]:
    runs = [_repeat(rng, **kw) for _ in range(n)]
    return {m: [r[m] for r in runs] for m in stats.HEADLINE}


def test_an_aa_experiment_says_no_difference_in_at_least_95_percent_of_200():
    rng = np.random.default_rng(3)
    clean = sum(all(c.verdict == "no_difference" for c in stats.compare_all(_arm(rng, 3), _arm(rng, 3)))
                for _ in range(200))
    assert clean >= 190


def test_each_metric_alone_of_an_aa_experiment_is_rarely_called_different_even_with_independent_noise():
    rng = np.random.default_rng(4)
    calls: Counter[str] = Counter()
    for _ in range(200):
        a = {m: list(rng.normal(10, 1, 3)) for m in stats.HEADLINE}
        b = {m: list(rng.normal(10, 1, 3)) for m in stats.HEADLINE}
        calls.update(c.verdict for c in stats.compare_all(a, b))
    assert calls["no_difference"] >= 0.95 * 200 * len(stats.HEADLINE)


def test_a_small_effect_under_large_noise_with_few_repeats_is_not_called():
    rng = np.random.default_rng(5)
    calls = [stats.compare("mean_ttft_ms", rng.normal(100, 20, 3), rng.normal(97, 20, 3)).verdict
             for _ in range(50)]
    assert calls.count("no_difference") >= 45


def test_one_repeat_states_no_uncertainty():
    ci = stats.interval([12.0])
    assert ci.mean == 12 and math.isnan(ci.low) and math.isnan(ci.high)
    assert stats.compare("mean_ttft_ms", [1.0], [2.0]).verdict == "not_measured"
    assert math.isnan(stats.interval([]).mean)


def test_repeats_to_detect_grow_with_the_noise_and_shrink_with_the_effect():
    assert stats.repeats_to_detect(0.05, 0.25) < stats.repeats_to_detect(0.05, 0.10) < stats.repeats_to_detect(
        0.15, 0.10)
    assert stats.repeats_to_detect(0.0, 0.1) == 2
    assert stats.repeats_to_detect(math.nan, 0.1) is None


def test_two_arms_run_in_abba_blocks_and_more_arms_in_randomized_blocks():
    order = stats.order(["A", "B"], 4, seed=7)
    assert len(order) == 8 and Counter(order) == {"A": 4, "B": 4}
    for block in (order[:4], order[4:]):
        assert block[0] == block[3] != block[1] == block[2]  # ABBA or BAAB
    assert stats.order(["A", "B"], 4, seed=7) == order  # reproducible from the seed
    leads = Counter(stats.order(["A", "B"], 2, seed=s)[0] for s in range(40))
    assert leads["A"] >= 10 and leads["B"] >= 10  # neither arm always goes first
    odd = stats.order(["A", "B"], 3, seed=1)
    assert Counter(odd) == {"A": 3, "B": 3}
    three = stats.order(["A", "B", "C"], 5, seed=2)
    assert all(sorted(three[i:i + 3]) == ["A", "B", "C"] for i in range(0, 15, 3))
    assert len({tuple(three[i:i + 3]) for i in range(0, 15, 3)}) > 1


def test_the_aggregate_has_a_row_per_setting_with_its_interval_over_repeats():
    summary = pd.DataFrame([
        {"point": i, "repeat": r, "arm": "", "input_len": 32, "output_len": 8, "max_concurrency": c,
         "request_rate": math.inf, "users": math.nan, "mean_ttft_ms": v, "output_throughput": 100.0 + v,
         "flags": "client_bound" if i == 0 else math.nan}
        for i, (r, c, v) in enumerate([(0, 1, 10.0), (0, 4, 20.0), (1, 1, 12.0), (1, 4, 22.0), (2, 1, 11.0),
                                        (2, 4, 21.0)])])
    agg = compare.aggregate(summary)
    assert list(agg["max_concurrency"]) == [1, 4] and list(agg["repeats"]) == [3, 3]
    one = agg.iloc[0]
    assert one["mean_ttft_ms"] == pytest.approx(11.0)
    assert one["mean_ttft_ms_ci_low"] < 11 < one["mean_ttft_ms_ci_high"]
    assert one["points"] == "0;2;4" and one["flags"] == "client_bound"
    single = compare.aggregate(summary[summary["repeat"] == 0])
    assert single["mean_ttft_ms_ci_low"].isna().all()


def test_the_sentence_says_direction_interval_repeats_and_verdict():
    r = compare._result(stats.compare("mean_ttft_ms", [100.0, 102, 98], [85.0, 86, 84]))
    text = compare.sentence("B", "mean_ttft_ms", r, 0.95)
    assert text.startswith("B's mean TTFT is 15.0 ms lower (−15.0%; 95% CI of the difference −")
    assert text.endswith("3 repeats each): better")
    same = compare._result(stats.compare("mean_tpot_ms", [10.0, 11, 9], [10.5, 9.5, 10]))
    assert "no difference (the smallest difference it could have detected: about" in compare.sentence(
        "B", "mean_tpot_ms", same, 0.95)


def test_the_claim_is_confirmed_contradicted_or_not_detectable():
    claim = compare.Claim(text="caching speeds up", section="§7.2", metric="mean_ttft_ms")
    better = compare._result(stats.compare("mean_ttft_ms", [100.0, 101, 99], [50.0, 51, 49]))
    worse = compare._result(stats.compare("mean_ttft_ms", [50.0, 51, 49], [100.0, 101, 99]))
    same = compare._result(stats.compare("mean_ttft_ms", [50.0, 60, 40], [51.0, 41, 61]))
    assert compare.claim_verdict(claim, {"mean_ttft_ms": better}) == "confirmed"
    assert compare.claim_verdict(claim, {"mean_ttft_ms": worse}) == "contradicted"
    assert compare.claim_verdict(claim, {"mean_ttft_ms": same}) == "not detectable here"
