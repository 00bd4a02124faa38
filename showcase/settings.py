"""What shapes a vLLM server's launch: `ServerSettings`, and the values vLLM accepts for them.

Plain data, validated when made (`SettingsError`): the server's lifecycle builds its command line
from it, presets validate their `server:` fields into it, and a run's metadata records it. It
knows nothing about processes, ports or files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from showcase.errors import UserError

# The one table of values vLLM accepts for these settings (presets validate against it too).
Dtype = Literal["auto", "bfloat16", "float16", "float32"]
KVCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]
Quantization = Literal["awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors"]
REASONING_PARSER = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # vLLM's own list grows each release; it refuses unknown names
LoadFormat = Literal["auto", "safetensors", "dummy"]


class SettingsError(UserError):
    """Server settings that vLLM would refuse, caught before anything is launched."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything that shapes the vLLM command line. `None` means vLLM's own default."""

    model: str
    served_model_name: str
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    enable_chunked_prefill: bool | None = None
    enable_prefix_caching: bool | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    dtype: Dtype = "auto"
    kv_cache_dtype: KVCacheDtype = "auto"
    quantization: Quantization | None = None
    load_format: LoadFormat = "auto"
    enforce_eager: bool = False
    enable_prompt_tokens_details: bool = False  # usage.prompt_tokens_details.cached_tokens in every answer
    # A reasoning model's parser (e.g. qwen3, deepseek_r1): its reasoning then streams in a field of
    # its own, so the chat can fold it and the benchmark can time the first answer token apart.
    reasoning_parser: str | None = None

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise SettingsError(f"{name} must be a whole number of at least 1, not {value!r}")

        for name in ("max_model_len", "max_num_seqs", "tensor_parallel_size"):
            positive(name)
        util = self.gpu_memory_utilization
        if util is not None and not 0 < util <= 1:
            raise SettingsError(f"gpu_memory_utilization must be in (0, 1], not {util!r}")
        for name, allowed in (
            ("dtype", get_args(Dtype)), ("kv_cache_dtype", get_args(KVCacheDtype)),
            ("quantization", (None, *get_args(Quantization))), ("load_format", get_args(LoadFormat)),
        ):
            if getattr(self, name) not in allowed:
                raise SettingsError(f"{name} must be one of {', '.join(map(str, allowed))}, not {getattr(self, name)!r}")
        if self.reasoning_parser is not None and not REASONING_PARSER.fullmatch(str(self.reasoning_parser)):
            raise SettingsError(f"reasoning_parser must be a parser's name (letters, digits, _ . -), not "
                                f"{self.reasoning_parser!r}")
        if not self.model or not self.served_model_name:
            raise SettingsError("model and served_model_name must not be empty")
