"""The app as a process: served at once, and no vLLM process outlives it when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from conftest import ROOT

from showcase import processes, server


def _descendants_with_engine(app: psutil.Process, timeout_s: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = app.children(recursive=True)
        if any("EngineCore" in " ".join(k.cmdline() or [k.name()]) or "EngineCore" in k.name() for k in kids):
            return kids
        time.sleep(0.5)
    raise AssertionError("vLLM's engine core never started under the app")


@pytest.mark.vllm
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_app_leaves_no_vllm_process(sig, tmp_path):
    port = server.free_port()
    env = dict(os.environ, SHOWCASE_LOG_DIR=str(tmp_path))
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                           stdout=(tmp_path / "app.log").open("w"), stderr=subprocess.STDOUT)
    try:
        proc = psutil.Process(app.pid)
        deadline = time.monotonic() + 60
        while True:  # the UI answers while vLLM is still loading
            try:
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "app.log").read_text()
                time.sleep(0.5)
        kids = _descendants_with_engine(proc, 120)
        os.kill(app.pid, sig)
        app.wait(timeout=60)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            alive = [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
            if not alive:
                break
            time.sleep(0.5)
        assert not alive, f"left running after {sig.name}: {[k.pid for k in alive]}"
    finally:
        if app.poll() is None:
            app.kill()


def test_the_watchdog_ends_the_group_when_its_pipe_closes(tmp_path):
    """The pipe closing is what the kernel does when the app dies, even by SIGKILL."""
    victim = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                               "print('ignoring SIGTERM', flush=True); time.sleep(600)"], start_new_session=True,
                              stdout=subprocess.PIPE, text=True)
    assert victim.stdout.readline().strip() == "ignoring SIGTERM"  # its handler is set before anything is sent
    grace_s = 1.0  # the app's watchdog waits processes.WATCHDOG_GRACE_S; the same script, a shorter wait
    watchdog = subprocess.Popen(processes.watchdog_command(victim.pid, grace_s), stdin=subprocess.PIPE,
                                start_new_session=True)
    assert victim.poll() is None
    closed = time.monotonic()
    watchdog.stdin.close()
    assert victim.wait(timeout=20) == -signal.SIGKILL  # it ignored SIGTERM, so it took SIGKILL
    assert time.monotonic() - closed >= grace_s  # after the SIGTERM's grace, not at once
    watchdog.wait(timeout=5)
