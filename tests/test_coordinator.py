"""The app's benchmark slot: restarts, pre-flight refusal and one run at a time, with a fake server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from showcase import coordinator, prepare, presets, server, sources
from showcase.bench import run as bench
from showcase.settings import ServerSettings


class FakeServer:
    """A `server.ServerHandle` pointing at a stub; records every (re)start's settings."""

    def __init__(self, base_url: str, device: sources.Device, settings: ServerSettings, log_dir: Path,
                 smoke: bool = False):
        self.device, self.settings, self.launch_settings = device, settings, settings
        self.endpoint: str | None = None
        self.log_dir, self.ready_timeout_s = log_dir, 5.0
        self.source = sources.ModelSource("/m", "stub", "dummy", is_smoke=smoke)
        self.restarts: list[ServerSettings] = []
        self._url = base_url
        self.served_model_name, self.api_key = "stub", "EMPTY"

    def status(self) -> server.Status:
        return server.Status(server.State.READY, "ready", "stub", "cpu", settings=self.settings)

    def start(self, settings=None):
        self.restarts.append(settings)
        self.settings = settings

    def stop(self):
        pass

    def wait_ready(self, timeout_s):
        return self.status()

    def require_ready(self):
        return self._url


def test_the_fake_keeps_to_the_servers_protocol():
    # Every name of the protocol, and no other, is what the coordinator may use of a server.
    import typing

    names = {n for n in dir(server.ServerHandle) if not n.startswith("_")} | set(
        typing.get_type_hints(server.ServerHandle))
    fake = FakeServer("http://x", CPU, ServerSettings(model="/m", served_model_name="stub"), Path("."))
    real = server.VLLMServer(CPU, endpoint="http://x")
    for name in names:
        assert hasattr(fake, name) and hasattr(real, name), name


CPU = sources.Device("cpu", "cpu")


def small(name: str) -> presets.Preset:
    return presets.load_all()[name]


def test_a_preset_with_other_server_settings_restarts_the_server_first(stub, tmp_path):
    base = ServerSettings(model="/m", served_model_name="stub", max_model_len=4096, dtype="bfloat16")
    srv = FakeServer(stub(ttft_ms=5, itl_ms=1), CPU, base, tmp_path / "logs", smoke=True)
    coord = coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path)
    coord.start(small("low-latency-chatbot"), {"concurrency": [1], "num_requests": 2, "output_len": 4})
    snap = coord.wait(60)
    assert snap.status == "completed", snap.message
    assert len(srv.restarts) == 1 and srv.restarts[0].max_num_seqs == 8  # the preset's setting
    assert srv.restarts[0].dtype == "bfloat16"  # everything else as launched
    coord.start(small("low-latency-chatbot"), {"concurrency": [1], "num_requests": 2, "output_len": 4})
    coord.wait(60)
    assert len(srv.restarts) == 1  # same settings now: no second restart


def test_preflight_refuses_a_preset_that_cannot_fit_the_gpu(stub, tmp_path):
    base = ServerSettings(model="Qwen/Qwen3-4B-Instruct-2507", served_model_name="stub", max_model_len=8192)
    srv = FakeServer(stub(), sources.Device("cuda", "NVIDIA A10G", 1), base, tmp_path / "logs")
    coord = coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path)
    with pytest.raises(prepare.PreflightRefused, match="largest max_model_len that fits is 82,"):
        coord.start(small("article-input-lengths"))
    assert not srv.restarts and not coord.snapshot().running


def test_only_one_benchmark_at_a_time(stub, tmp_path):
    base = ServerSettings(model="/m", served_model_name="stub", max_model_len=4096)
    srv = FakeServer(stub(ttft_ms=50, itl_ms=20), CPU, base, tmp_path / "logs", smoke=True)
    coord = coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path)
    coord.start(small("article-concurrency-sweep"), {"concurrency": [1], "num_requests": 20})
    with pytest.raises(coordinator.BenchmarkBusy, match="already running"):
        coord.start(small("article-concurrency-sweep"))
    deadline = time.monotonic() + 30
    while (p := coord.snapshot().progress) is None or p.done < 1:  # stop in the middle of the point
        assert time.monotonic() < deadline and coord.snapshot().running, "no request of the point finished"
        time.sleep(0.05)
    assert p.done < 20
    coord.stop()
    snap = coord.wait(60)
    assert snap.status == "stopped" and snap.folder is not None
    listed = coordinator.list_runs(tmp_path)
    assert listed and listed[0].folder == snap.folder and "stopped" in listed[0].label


def test_uploaded_summaries_must_look_like_one(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("concurrency,output_throughput,mean_ttft_ms,input_len\n1,50,200,1024\n")
    assert coordinator.load_summary(good, "other machine")["series"].iloc[0] == "other machine"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(coordinator.UploadError, match="not a benchmark summary"):
        coordinator.load_summary(bad, "x")


def test_uploads_are_bounded_and_only_the_drawn_columns_are_read(tmp_path, monkeypatch):
    header = "concurrency,output_throughput,mean_ttft_ms,input_len,huge\n"
    wide = tmp_path / "wide.csv"
    wide.write_text(header + "1,50,200,1024," + "x" * 1000 + "\n")
    assert list(coordinator.load_summary(wide, "w").columns) == [
        "concurrency", "output_throughput", "mean_ttft_ms", "input_len", "max_concurrency", "series"]
    many = tmp_path / "many.csv"
    many.write_text(header + "1,50,200,1024,0\n" * (coordinator.UPLOAD_MAX_ROWS + 1))
    with pytest.raises(coordinator.UploadError, match="more than 10,000 rows"):
        coordinator.load_summary(many, "m")
    monkeypatch.setattr(coordinator, "UPLOAD_MAX_MB", 0.001)
    with pytest.raises(coordinator.UploadError, match="at most 0.001 MB"):
        coordinator.load_summary(wide, "w")
    monkeypatch.undo()
    words = tmp_path / "words.csv"
    words.write_text(header + "1,fast,200,1024,0\n")
    with pytest.raises(coordinator.UploadError, match="output_throughput holds values that are not numbers.*fast"):
        coordinator.load_summary(words, "x")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(coordinator.UploadError, match="binary file, not a CSV summary"):
        coordinator.load_summary(binary, "b")


def test_each_preset_runs_on_the_launch_defaults_plus_its_own_server_fields(stub, tmp_path):
    # Not on the previous preset's settings: low-latency-chatbot sets max_num_seqs 8, the sweep
    # sets none, so the sweep's concurrency-16 point must get the launch default again.
    base = ServerSettings(model="/m", served_model_name="stub", max_model_len=4096, max_num_seqs=64)
    srv = FakeServer(stub(ttft_ms=5, itl_ms=1), CPU, base, tmp_path / "logs", smoke=True)
    coord = coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path)
    coord.start(small("low-latency-chatbot"), {"concurrency": [1], "num_requests": 2, "output_len": 4})
    assert coord.wait(60).status == "completed"
    coord.start(small("article-concurrency-sweep"), {"concurrency": [16], "num_requests": 16, "output_len": 4})
    snap = coord.wait(60)
    assert snap.status == "completed", snap.message
    assert [s.max_num_seqs for s in srv.restarts] == [8, 64]
    assert bench.read_meta(snap.folder).server_settings.max_num_seqs == 64


def test_at_exit_a_run_in_progress_ends_as_stopped_before_the_server_goes(stub, tmp_path):
    base = ServerSettings(model="/m", served_model_name="stub", max_model_len=4096)
    srv = FakeServer(stub(ttft_ms=20, itl_ms=10), CPU, base, tmp_path / "logs", smoke=True)
    srv.launch_settings = srv.settings = server.settings_for(small("article-concurrency-sweep").for_cpu().server, base, CPU)
    coord = coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path)
    coord.start(small("article-concurrency-sweep"), {"concurrency": [1], "num_requests": 200, "output_len": 4})
    deadline = time.monotonic() + 60
    while (coord.snapshot().progress is None or coord.snapshot().progress.done < 1):
        assert time.monotonic() < deadline, coord.snapshot()
        time.sleep(0.05)
    coord.shutdown()  # what atexit runs, before the server's own stop
    snap = coord.snapshot()
    assert not snap.running and snap.status == "stopped" and bench.read_meta(snap.folder).status == "stopped"


def test_a_finished_run_hands_its_tables_to_the_app_which_shows_them_without_reading_them_again(
        stub, tmp_path, monkeypatch):
    from showcase import roofline, views

    base = ServerSettings(model="/m", served_model_name="stub", max_model_len=4096)
    srv = FakeServer(stub(ttft_ms=5, itl_ms=1), CPU, base, tmp_path / "logs", smoke=True)
    coord = coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path)
    coord.start(small("article-concurrency-sweep"), {"concurrency": [1, 2], "num_requests": 3, "output_len": 4})
    snap = coord.wait(120)
    assert snap.status == "completed" and snap.folder is not None
    known = coord.handed_back()
    summary, requests, _ = known[snap.folder.resolve()]
    assert list(summary["max_concurrency"]) == [1, 2] and len(requests) >= 6

    def no_reading(folder: Path) -> None:
        raise AssertionError(f"{folder} was read again")

    monkeypatch.setattr(views, "read_tables", no_reading)
    v, _ = views.load_views([snap.folder], [], roofline.gpu("A10G"), views.ServedModel(None, ""), known=known)
    assert list(v.summary["concurrency"]) == [1, 2]
