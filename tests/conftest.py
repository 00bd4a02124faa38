"""Shared fixtures: one real vLLM (CPU) server per test session, and a sandboxed environment.

Markers (set here, from what a test uses): `vllm` for the tests that start real vLLM (through the
`vllm_server` or `app_url` fixture, or by launching the app), `browser` for those that drive
Chromium; `-m "not vllm and not browser"` runs the rest alone, on `FAST_WORKERS` processes unless
`-n` says otherwise (they share nothing; the vLLM tests share one server and keep to one process).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest


def _isolated_home() -> Path:
    """A HOME of the session's own, so no test reads or leaves caches in the user's (measured
    devices, logs, runs of other sessions); the smoke model's folder and vLLM's own compile cache
    stay shared, as they only cost start-up time. Set before the app's modules read HOME."""
    real = Path.home()
    home = Path(tempfile.mkdtemp(prefix="showcase-test-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    cache = home / ".cache"
    (cache / "vllm-showcase").mkdir(parents=True)
    for shared in (Path(".cache") / "vllm-showcase" / "models", Path(".cache") / "vllm"):
        (real / shared).mkdir(parents=True, exist_ok=True)
        (home / shared).symlink_to(real / shared)
    os.environ["HOME"] = str(home)
    return home


TEST_HOME = _isolated_home()

from server_procs import ServerProcess  # noqa: E402

from showcase import ROOT, processes, server, sources  # noqa: E402, F401 (after HOME is set; ROOT: for the tests that import it from here)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
VLLM_FIXTURES = {"vllm_server", "app_url"}
FAST_WORKERS = 4  # the tests without vLLM mostly wait on stubs: 4 processes keep 2 cores busy


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The tests without vLLM and a browser, asked for alone, run in parallel (pytest-xdist)."""
    expr = config.option.markexpr or ""
    alone = "not vllm" in expr and "not browser" in expr and not hasattr(config, "workerinput")
    if alone and config.option.numprocesses is None:
        config.option.numprocesses = FAST_WORKERS
        if config.option.dist == "no":  # a worker that is done takes over another's waiting tests
            config.option.dist = "worksteal"
BROWSER_FILES = {"test_browser.py", "test_report.py"}  # the files that drive Chromium


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if VLLM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.vllm)
        if item.path.name in BROWSER_FILES:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def device() -> sources.Device:
    return sources.detect_device()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def vllm_server(device, model_cache, tmp_path_factory):
    """The real vLLM server (the smoke model on a CPU), started once for the whole session.

    Teardown stops it and fails if any process of its group is left behind.
    """
    source = sources.resolve(None, "real", device, cache_dir=model_cache)
    srv = server.VLLMServer(device, source, log_dir=tmp_path_factory.mktemp("logs"))
    srv.start(server.default_settings(source, device))
    status = srv.wait_ready(600)
    assert status.state is server.State.READY, status.message + "\n" + "\n".join(status.log_tail)
    pgid = srv.pid
    yield srv
    srv.stop()
    assert srv.state is server.State.STOPPED
    assert not processes.group_alive(pgid), "a vLLM process outlived stop()"


@pytest.fixture
def stub(tmp_path):
    """Start stub_server.py in its own process with the given latencies; stopped after the test."""

    procs: list[ServerProcess] = []

    def start(ttft_ms: float = 100, itl_ms: float = 20, break_after: int | None = None,
              drop_idle_s: float | None = None, itl_per_stream_ms: float = 0.0, batch_clock: bool = False,
              reasoning_tokens: int = 0, no_histograms: bool = False, outside_ms: float = 0.0) -> str:
        port = server.free_port()
        argv = ["--port", str(port), "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)]
        if break_after is not None:
            argv += ["--break-after", str(break_after)]
        if drop_idle_s is not None:
            argv += ["--drop-idle-s", str(drop_idle_s)]
        if itl_per_stream_ms:
            argv += ["--itl-per-stream-ms", str(itl_per_stream_ms)]
        if batch_clock:
            argv.append("--batch-clock")
        if reasoning_tokens:
            argv += ["--reasoning-tokens", str(reasoning_tokens)]
        argv += ["--no-histograms"] if no_histograms else []
        argv += ["--outside-ms", str(outside_ms)] if outside_ms else []
        return serve("stub_server", argv, port, tmp_path / f"stub-{port}.log", procs)

    start.procs = procs  # type: ignore[attr-defined]  # for the tests that kill the stub
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def serve(module: str, argv: list[str], port: int, log: Path, procs: list[ServerProcess]) -> str:
    """Start a test server (kept in `procs`, to be killed) and wait until its /health answers."""
    import time
    import urllib.request

    procs.append(ServerProcess(module, argv, log))
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return url
        except OSError:
            if procs[-1].poll() is not None:
                break
            time.sleep(0.1)
    raise RuntimeError(f"{module}.py did not start: {log.read_text()[-2000:]}")


@pytest.fixture
def hostile(tmp_path):
    """Start hostile_server.py with a fault (see its docstring); stopped after the test."""
    procs: list[ServerProcess] = []

    def start(fault: str) -> str:
        port = server.free_port()
        return serve("hostile_server", ["--port", str(port), "--fault", fault], port,
                     tmp_path / f"hostile-{port}.log", procs)

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
    from showcase import coordinator, measure, presets

    runs_dir = tmp_path_factory.mktemp("runs")
    figures = measure.DeviceFigures(vllm_server.device).start()
    coord = coordinator.BenchmarkCoordinator(vllm_server, runs_dir=runs_dir, figures=figures)
    demo = app.build_demo(vllm_server, coord, presets.load_all(), admin_password=ADMIN)
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=server.free_port(), allowed_paths=[str(runs_dir)],
                            quiet=True)
    yield url.rstrip("/")
    demo.close()
