"""Benchmark presets: server settings, a workload and SLOs, read strictly from `presets/*.yaml`.

This module owns the preset schema and its validation: unknown keys, wrong types and impossible
values are refused with the file and the field named. The workload, its points and the SLOs are
`bench.workload`'s types; the allowed server values are `server`'s. It knows nothing about
running anything.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from showcase import PRESET_DIR, ROOT
from showcase.bench.capacity import CapacityPlan
from showcase.bench.compare import Arm, ExperimentPlan
from showcase.bench.workload import SLOs, Strict, Workload, WorkloadError, explain
from showcase.settings import ServerSettings, SettingsError


class PresetError(WorkloadError):
    """A preset file or an edited workload that does not validate; the message names file and field."""


# What a preset may not set: which model the server loads, its name and its weights are the launch's.
LAUNCH_ONLY = frozenset({"model", "served_model_name", "load_format"})
PRESET_FIELDS = tuple(f.name for f in fields(ServerSettings) if f.name not in LAUNCH_ONLY)
# Each field's value checked against its annotation here, as strictly as a preset file's (no "4"
# for 4, no "yes" for true), then the ranges by `ServerSettings` itself.
_FIELD_TYPES = {name: TypeAdapter(kind) for name, kind in get_type_hints(ServerSettings).items()}


def server_part(part: dict[str, Any]) -> dict[str, Any]:
    """A preset's server fields (any of `ServerSettings`' but `LAUNCH_ONLY`), validated by
    `ServerSettings` itself, the one type of server settings; tensor_parallel_size may also be
    "all" (every GPU). A `ValueError` names the field and what is wrong."""
    for name in part:
        if name not in PRESET_FIELDS:
            raise ValueError(f"server.{name}: not a server setting a preset may set ({', '.join(PRESET_FIELDS)})")
    probe = dict(part)
    if probe.get("tensor_parallel_size") == "all":
        probe["tensor_parallel_size"] = 1
    for name, value in probe.items():
        try:
            _FIELD_TYPES[name].validate_python(value, strict=True)
        except ValidationError as exc:
            raise ValueError(f"server.{name}: {exc.errors()[0]['msg']}") from None
    try:
        ServerSettings(model="m", served_model_name="m", **probe)
    except SettingsError as exc:
        raise ValueError(f"server.{exc}") from None
    return part



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
    server: dict[str, Any] = Field(default_factory=dict)  # of `ServerSettings`' fields: `server_part`
    workload: Workload
    slos: SLOs = SLOs()
    capacity: CapacityPlan | None = None  # a capacity search: the largest load within the SLOs
    experiment: ExperimentPlan | None = None  # arms compared on this workload (`engine.py experiment`)
    price_per_gpu_hour: float | None = Field(None, gt=0)  # dollars, for the cost columns; never a default
    cpu: CPUScale | None = None

    @field_validator("server")
    @classmethod
    def _server(cls, part: dict[str, Any]) -> dict[str, Any]:
        return server_part(part)

    @model_validator(mode="after")
    def _arms(self) -> Preset:
        """Each arm's server fields are a preset's, its workload fields edit this workload."""
        for arm in self.experiment.arms if self.experiment else []:
            if arm.server:
                server_part(self.server | arm.server)
            if arm.workload:
                self.with_workload(**arm.workload)
        return self

    def for_arm(self, arm: Arm) -> Preset:
        """The preset as one arm of its experiment runs it: the arm's server and workload fields over
        its own, no experiment, one repeat (the experiment repeats the arms)."""
        merged = server_part(self.server | arm.server)
        changed = self.with_workload(**(arm.workload | {"repeats": 1}))
        return changed.model_copy(update={"server": merged, "experiment": None})

    def for_cpu(self) -> Preset:
        """The preset as the CPU smoke model can serve it (validated again after scaling)."""
        if self.cpu is None:
            return self
        # Only the fields the file set, so that unset server fields keep the launch defaults.
        data = self.model_dump(exclude_unset=True)
        data["server"] = data.get("server", {}) | self.cpu.server
        data["workload"] = data["workload"] | self.cpu.workload
        return Preset.model_validate(data)

    def with_file_found(self) -> Preset:
        """The preset with its prompts file or trace as an absolute path (a preset's relative path is
        the project's)."""
        w = self.workload
        given = w.dataset or w.trace
        if given is None:
            return self
        path = Path(given).expanduser()
        path = path if path.is_absolute() or path.exists() else ROOT / path
        return self.with_workload(**{"dataset" if w.dataset is not None else "trace": str(path.resolve())})

    def with_workload(self, **changes) -> Preset:
        """The preset with some workload fields edited, validated as strictly as the file."""
        base = self.workload.model_dump(exclude_unset=True)
        for given, other in (("concurrency", "users"), ("users", "concurrency")):
            if changes.get(given) is not None:  # levels of one kind replace the preset's of the other
                base.pop(other, None)
        if "chat" in changes:  # the conversation's fields given, over the preset's own
            changes = changes | {"chat": base.get("chat", {}) | changes["chat"]}
        try:
            workload = Workload.model_validate(base | changes)
        except ValidationError as exc:
            raise PresetError(explain(exc, f"workload of {self.name}")) from exc
        return self.model_copy(update={"workload": workload})


def load(path: Path) -> Preset:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PresetError(f"{path.name}: cannot be read as YAML text: {str(exc).splitlines()[0][:200]}") from exc
    if not isinstance(data, dict):
        raise PresetError(f"{path.name}: a preset is a mapping of fields")
    try:
        preset = Preset.model_validate(data)
    except ValidationError as exc:
        raise PresetError(explain(exc, path.name)) from exc
    except RecursionError:
        raise PresetError(f"{path.name}: nested too deeply to be a preset") from None
    if preset.name != path.stem:
        raise PresetError(f"{path.name}: name: {preset.name!r} must match the file name {path.stem!r}")
    if preset.cpu is not None:
        try:
            preset.for_cpu()
        except ValidationError as exc:
            raise PresetError(explain(exc, f"{path.name} (cpu scaling)")) from exc
    return preset


def preset_files(folder: Path = PRESET_DIR) -> list[Path]:
    """The preset files of a folder: `*.yaml` and `*.yml`."""
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_catalogue(folder: Path = PRESET_DIR) -> tuple[dict[str, Preset], dict[str, str]]:
    """Every preset file of `folder` that validates, by name, and the reason for each that does not
    (by file stem): one bad file costs that preset, not the catalogue."""
    good: dict[str, Preset] = {}
    bad: dict[str, str] = {}
    for path in preset_files(folder):
        try:
            good[path.stem] = load(path)
        except PresetError as exc:
            bad[path.stem] = str(exc)
    return good, bad


def load_all(folder: Path = PRESET_DIR) -> dict[str, Preset]:
    """The catalogue, strictly: every preset file of `folder` by name; any bad file raises, naming every one."""
    good, bad = load_catalogue(folder)
    if bad:
        raise PresetError("; ".join(bad.values()))
    return good
