"""The app's benchmark slot: restarts, pre-flight refusal and one run at a time, with a fake server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import engine
import models
import presets
import runs


class FakeServer:
    """The VLLMServer surface the coordinator uses, pointing at a stub; records restarts."""

    def __init__(self, base_url: str, device: models.Device, settings: engine.ServerSettings, log_dir: Path,
                 smoke: bool = False):
        self.device, self.settings, self.endpoint, self.log_dir = device, settings, None, log_dir
        self.source = models.ModelSource("/m", "stub", "dummy", is_smoke=smoke)
        self.ready_timeout_s = 5
        self.restarts: list[engine.ServerSettings] = []
        self._url = base_url
        self.served_model_name, self.api_key = "stub", "EMPTY"

    def restart(self, settings):
        self.restarts.append(settings)
        self.settings = settings

    def wait_ready(self, timeout_s):
        return engine.Status(engine.State.READY, "ready", "stub", "cpu")

    def require_ready(self):
        return self._url


CPU = models.Device("cpu", "cpu")


def small(name: str) -> presets.Preset:
    return presets.load_all()[name]


def test_a_preset_with_other_server_settings_restarts_the_server_first(stub, tmp_path):
    base = engine.ServerSettings(model="/m", served_model_name="stub", max_model_len=4096, dtype="bfloat16")
    server = FakeServer(stub(ttft_ms=5, itl_ms=1), CPU, base, tmp_path / "logs", smoke=True)
    coord = runs.BenchmarkCoordinator(server, runs_dir=tmp_path)
    coord.start(small("low-latency-chatbot"), {"concurrency": [1], "num_requests": 2, "output_len": 4})
    snap = runs.wait_idle(coord, 60)
    assert snap.status == "completed", snap.message
    assert len(server.restarts) == 1 and server.restarts[0].max_num_seqs == 8  # the preset's setting
    assert server.restarts[0].dtype == "bfloat16"  # everything else as launched
    coord.start(small("low-latency-chatbot"), {"concurrency": [1], "num_requests": 2, "output_len": 4})
    runs.wait_idle(coord, 60)
    assert len(server.restarts) == 1  # same settings now: no second restart


def test_preflight_refuses_a_preset_that_cannot_fit_the_gpu(stub, tmp_path):
    base = engine.ServerSettings(model="Qwen/Qwen3-4B-Instruct-2507", served_model_name="stub", max_model_len=8192)
    server = FakeServer(stub(), models.Device("cuda", "NVIDIA A10G", 1, 23028), base, tmp_path / "logs")
    coord = runs.BenchmarkCoordinator(server, runs_dir=tmp_path)
    with pytest.raises(runs.PreflightRefused, match="largest max_model_len that fits is 82,"):
        coord.start(small("article-input-lengths"))
    assert not server.restarts and not coord.snapshot().running


def test_only_one_benchmark_at_a_time(stub, tmp_path):
    base = engine.ServerSettings(model="/m", served_model_name="stub", max_model_len=4096)
    server = FakeServer(stub(ttft_ms=50, itl_ms=20), CPU, base, tmp_path / "logs", smoke=True)
    coord = runs.BenchmarkCoordinator(server, runs_dir=tmp_path)
    coord.start(small("article-concurrency-sweep"), {"concurrency": [1], "num_requests": 20})
    with pytest.raises(runs.BenchmarkBusy, match="already running"):
        coord.start(small("article-concurrency-sweep"))
    for _ in range(300):  # stop in the middle of the point
        p = coord.snapshot().progress
        if p is not None and p.done >= 1:
            break
        time.sleep(0.05)
    coord.stop()
    snap = runs.wait_idle(coord, 60)
    assert snap.status == "stopped" and snap.folder is not None
    listed = runs.list_runs(tmp_path)
    assert listed and listed[0].folder == snap.folder and "stopped" in listed[0].label


def test_uploaded_summaries_must_look_like_one(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("concurrency,output_throughput,mean_ttft_ms,input_len\n1,50,200,1024\n")
    assert runs.load_summary(good, "other machine")["series"].iloc[0] == "other machine"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(engine.EngineError, match="not a benchmark summary"):
        runs.load_summary(bad, "x")
