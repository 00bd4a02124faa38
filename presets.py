"""Benchmark presets: server settings, a workload and SLOs, read strictly from `presets/*.yaml`.

This module owns the preset schema and its validation: unknown keys, wrong types and impossible
values are refused with the file and the field named. It knows nothing about running anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PRESET_DIR = Path(__file__).resolve().parent / "presets"

# What a visitor may set from the UI: generous for a GPU, bounded so a shared link cannot
# queue a day of work.
LIMITS = {"concurrency": 256, "num_requests": 2000, "input_len": 262144, "output_len": 8192, "duration_s": 3600}


class PresetError(Exception):
    """A preset file or an edited workload that does not validate; the message names file and field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerPart(Strict):
    """Server settings a preset may set; everything else comes from the app's launch options."""

    max_model_len: int | None = Field(None, ge=1)
    max_num_seqs: int | None = Field(None, ge=1)
    enable_chunked_prefill: bool | None = None
    enable_prefix_caching: bool | None = None
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    tensor_parallel_size: int | Literal["all"] = 1
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    quantization: Literal["awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors"] | None = None
    enforce_eager: bool = False


class Workload(Strict):
    """The load: every combination of `concurrency` × `input_len` (× `request_rate`) is a point."""

    concurrency: list[int] = Field(min_length=1)
    input_len: list[int] = Field(min_length=1)
    output_len: int = Field(ge=1, le=LIMITS["output_len"])
    request_rate: list[float] | None = None  # req/s; with it, concurrency is the in-flight cap
    burstiness: float = Field(1.0, gt=0)
    num_requests: int | None = Field(32, ge=1, le=LIMITS["num_requests"])
    duration_s: float | None = Field(None, gt=0, le=LIMITS["duration_s"])
    warmup_requests: int = Field(1, ge=0, le=LIMITS["concurrency"])
    timeout_s: float = Field(300.0, gt=0)
    stream: bool = True
    shared_prefix_len: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if any(c < 1 or c > LIMITS["concurrency"] for c in self.concurrency):
            raise ValueError(f"concurrency levels must be between 1 and {LIMITS['concurrency']}")
        if any(n < 1 or n > LIMITS["input_len"] for n in self.input_len):
            raise ValueError(f"input_len values must be between 1 and {LIMITS['input_len']}")
        if self.request_rate is not None and any(r <= 0 for r in self.request_rate):
            raise ValueError("request_rate values must be above 0")
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of num_requests and duration_s")
        if any(self.shared_prefix_len >= n for n in self.input_len) and self.shared_prefix_len:
            raise ValueError("shared_prefix_len must be shorter than every input_len")
        return self


class SLOPart(Strict):
    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)
    e2el_ms: float | None = Field(None, gt=0)


class CPUScale(Strict):
    """How the preset shrinks for the CPU smoke model, and why, said to the user."""

    note: str
    server: dict = Field(default_factory=dict)
    workload: dict = Field(default_factory=dict)


class Preset(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str
    source: str
    server: ServerPart = ServerPart()
    workload: Workload
    slos: SLOPart = SLOPart()
    reference: str | None = None  # which table of the article this preset reproduces
    cpu: CPUScale | None = None

    def for_cpu(self) -> Preset:
        """The preset as the CPU smoke model can serve it (validated again after scaling)."""
        if self.cpu is None:
            return self
        # Only the fields the file set, so that unset server fields keep the launch defaults.
        data = self.model_dump(exclude_unset=True)
        data["server"] = data.get("server", {}) | self.cpu.server
        data["workload"] = data["workload"] | self.cpu.workload
        return Preset.model_validate(data)

    def with_workload(self, **changes) -> Preset:
        """The preset with some workload fields edited, validated as strictly as the file."""
        try:
            workload = Workload.model_validate(self.workload.model_dump(exclude_unset=True) | changes)
        except ValidationError as exc:
            raise PresetError(_explain(exc, f"workload of {self.name}")) from exc
        return self.model_copy(update={"workload": workload})


def _explain(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{field}: {err['msg']}")
    return f"{where}: " + "; ".join(parts)


def load(path: Path) -> Preset:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PresetError(f"{path.name}: cannot be read as YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PresetError(f"{path.name}: a preset is a mapping of fields")
    try:
        preset = Preset.model_validate(data)
    except ValidationError as exc:
        raise PresetError(_explain(exc, path.name)) from exc
    if preset.name != path.stem:
        raise PresetError(f"{path.name}: name: {preset.name!r} must match the file name {path.stem!r}")
    if preset.cpu is not None:
        try:
            preset.for_cpu()
        except ValidationError as exc:
            raise PresetError(_explain(exc, f"{path.name} (cpu scaling)")) from exc
    return preset


def load_all(folder: Path = PRESET_DIR) -> dict[str, Preset]:
    return {p.stem: load(p) for p in sorted(folder.glob("*.yaml"))}
