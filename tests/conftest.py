"""Shared fixtures: one real vLLM (CPU) server per test session, and a sandboxed environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import engine  # noqa: E402
import models  # noqa: E402


@pytest.fixture(scope="session")
def device() -> models.Device:
    return models.detect_device()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def vllm_server(device, model_cache, tmp_path_factory):
    """The real vLLM server (the smoke model on a CPU), started once for the whole session.

    Teardown stops it and fails if any process of its group is left behind.
    """
    source = models.resolve(None, "real", device, cache_dir=model_cache)
    server = engine.VLLMServer(device, source, log_dir=tmp_path_factory.mktemp("logs"))
    server.start(engine.default_settings(source, device))
    status = server.wait_ready(600)
    assert status.state is engine.State.READY, status.message + "\n" + "\n".join(status.log_tail)
    pgid = server.pid
    yield server
    server.stop()
    assert server.state is engine.State.STOPPED
    assert not engine.group_alive(pgid), "a vLLM process outlived stop()"


@pytest.fixture
def stub(tmp_path):
    """Start stub_server.py in its own process with the given latencies; stopped after the test."""
    import subprocess
    import time
    import urllib.request

    procs = []

    def start(ttft_ms: float = 100, itl_ms: float = 20, break_after: int | None = None,
              drop_idle_s: float | None = None) -> str:
        port = engine.free_port()
        cmd = [sys.executable, str(ROOT / "stub_server.py"), "--port", str(port),
               "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)]
        if break_after is not None:
            cmd += ["--break-after", str(break_after)]
        if drop_idle_s is not None:
            cmd += ["--drop-idle-s", str(drop_idle_s)]
        proc = subprocess.Popen(cmd, stdout=(tmp_path / f"stub-{port}.log").open("w"), stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                return url
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the stub server did not start")

    start.procs = procs
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def server_metric(base_url: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (all labels) on a server's /metrics."""
    import urllib.request

    text = urllib.request.urlopen(f"{base_url}/metrics").read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


ADMIN = "admin-secret"


@pytest.fixture(scope="session")
def app_url(vllm_server, tmp_path_factory):
    """The app launched once per session on the shared vLLM server, with an admin password."""
    import app
    import runs

    runs_dir = tmp_path_factory.mktemp("runs")
    coord = runs.BenchmarkCoordinator(vllm_server, runs_dir=runs_dir)
    demo = app.build_demo(vllm_server, coord, admin_password=ADMIN)
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=engine.free_port(), allowed_paths=[str(runs_dir)],
                            quiet=True)
    yield url.rstrip("/")
    demo.close()
