"""The server a benchmark script measures: the one the app would launch on this machine.

Without a GPU that is the CPU smoke model, vLLM and the load generator on cores of their own.
Shared by the scripts that measure the real server (agreement, noise); it prints nothing of
their figures.
"""

from __future__ import annotations

import sys

from showcase import server, sources
from showcase.settings import ServerSettings


def this_machines_server() -> tuple[sources.Device, sources.ModelSource, server.VLLMServer, ServerSettings]:
    """This machine's device, the model the app would serve, its server (not started) and settings."""
    device = sources.detect_device()
    source = sources.resolve(None, "real", device)
    return device, source, server.VLLMServer(device, source), server.default_settings(source, device)


def started(srv: server.VLLMServer, settings: ServerSettings) -> server.Status | None:
    """Start `srv` and wait for it; None, with its reason and log tail on stderr, when it did not start."""
    srv.start(settings)
    status = srv.wait_ready(srv.ready_timeout_s)
    if status.state is not server.State.READY:
        print(status.message, *status.log_tail, sep="\n", file=sys.stderr)
        return None
    return status
