"""The test servers' processes (stub_server.py, hostile_server.py), forked from one that has
already imported them.

Each start would otherwise be a new interpreter importing aiohttp (0.3 s of CPU, paid about a
hundred times a session on a 2-core machine); multiprocessing's forkserver imports them once per
test process and forks each server from there, with its command-line arguments and its output
to a log file. It knows nothing about what the servers answer.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import sys
from pathlib import Path

SERVERS = ("stub_server", "hostile_server")
_forks = mp.get_context("forkserver")
_forks.set_forkserver_preload(["server_procs", *SERVERS])


def _main(module: str, argv: list[str], log: str) -> None:
    """In the forked process: output to `log`, then the server's own `main()` on `argv`."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.argv = [f"{module}.py", *argv]
    importlib.import_module(module).main()


class ServerProcess:
    """A started test server, with the part of `subprocess.Popen`'s interface the tests use."""

    def __init__(self, module: str, argv: list[str], log: Path) -> None:
        assert module in SERVERS, module
        self._proc = _forks.Process(target=_main, args=(module, argv, str(log)), daemon=True, name=module)
        self._proc.start()
        assert self._proc.pid is not None
        self.pid: int = self._proc.pid

    def poll(self) -> int | None:
        return self._proc.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        self._proc.kill()

    def wait(self, timeout: float | None = None) -> int | None:
        self._proc.join(timeout)
        return self._proc.exitcode
