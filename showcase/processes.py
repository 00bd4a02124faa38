"""Processes and their logs: the watchdog that ends vLLM when the app dies, stopping a process
group, and reading why a process exited from its log's last lines.

It knows nothing about vLLM's settings or the app; `server` uses it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

STOP_GRACE_S = 15.0  # SIGTERM, then this long for a group's processes to end, then SIGKILL
WATCHDOG_GRACE_S = 10.0  # the watchdog's SIGTERM, then this long before its SIGKILL


# A watchdog per launch: it blocks reading a pipe whose write end only the app holds. The kernel
# closes that end when the app exits or is killed (even by SIGKILL, even while vLLM is still
# starting and ignores SIGTERM), and the watchdog then ends vLLM's whole process group.
# Arguments: the group's id and the grace between SIGTERM and SIGKILL (`watchdog_command`).
WATCHDOG = r"""
import os, signal, sys, time
pgid, grace_s = int(sys.argv[1]), float(sys.argv[2])
sys.stdin.buffer.read()
for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        break
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            sys.exit(0)
        time.sleep(0.1)
"""


def watchdog_command(pgid: int, grace_s: float = WATCHDOG_GRACE_S) -> list[str]:
    """The watchdog's command line for a process group; start it with its stdin a pipe kept open."""
    return [sys.executable, "-c", WATCHDOG, str(pgid), str(grace_s)]


def log_tail(path: Path, lines: int = 20) -> tuple[str, ...]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ()
    return tuple(deque(text.splitlines(), maxlen=lines))


def explain_exit(code: int, tail: tuple[str, ...]) -> str:
    """A person's reading of why vLLM exited, from the last lines of its log."""
    text = "\n".join(tail)
    known = (
        ("Address already in use", "the port is already in use by another program"),
        ("larger than the maximum number of tokens that can be stored in KV cache",
         "max_model_len does not fit in the KV cache: lower max_model_len or raise gpu_memory_utilization"),
        ("CUDA out of memory", "the GPU ran out of memory"),
        ("No such file or directory", "a file or folder the model needs does not exist"),
        ("is not a local folder and is not a valid model identifier", "the model is neither a folder nor a hub id"),
        ("not supported", "vLLM does not support something in these settings"),
    )
    for needle, reason in known:
        if needle in text:
            return f"vLLM exited (code {code}): {reason}."
    return f"vLLM exited (code {code}); see the last log lines."


def terminate_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group, wait for all of it, then SIGKILL whatever is left."""
    pgid = proc.pid  # started with start_new_session, so the leader's pid is the group id
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_alive(pgid):
                return
            time.sleep(0.1)
    proc.wait(timeout=10)


def group_alive(pgid: int) -> bool:
    """Whether any process of a process group is still running (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
