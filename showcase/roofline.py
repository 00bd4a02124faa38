"""Physical upper bounds on serving speed, verdicts on reference numbers, and the pre-flight fit.

This module owns the roofline model: from a Hugging Face config.json, a dtype, a GPU (from
`assets/gpus.csv`) and a tensor-parallel size it gives the parameter count, weight and KV-cache
bytes, how many KV tokens fit, and the fastest anything can go: decode tokens/s at a concurrency
and context, minimum prefill time, minimum request time, requests/s. Every bound is generous
(peak bandwidth and FLOPS, perfect overlap, ideal tensor parallelism), so a number above it is
impossible, not merely unlikely. The pre-flight fit (`launch_fit`) reads a launch's settings
(`showcase.settings`, plain data); it knows nothing about vLLM's process, HTTP or the UI.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict

from showcase import ASSETS
from showcase.errors import UserError
from showcase.settings import ServerSettings

BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "fp8": 1, "fp8_e4m3": 1,
         "fp8_e5m2": 1, "int8": 1, "int4": 0.5, "awq": 0.5, "gptq": 0.5}
BEST_CASE_OVERHEAD_GB = 0.5  # activations etc. when judging references: the most generous case
PREFLIGHT_OVERHEAD_GB = 1.5  # per GPU, activations and CUDA graphs, when checking a launch
DEFAULT_CONTEXT = 32768  # what a launch without max_model_len is checked for when the config states none
DEFAULT_UTILIZATION = 0.9  # vLLM's default gpu_memory_utilization
KNOWN_CONFIGS = {"Qwen/Qwen3-4B-Instruct-2507": ASSETS / "qwen3-4b-instruct-2507" / "config.json"}


class RooflineError(UserError):
    """A config, GPU or table the model cannot work with; the message says what is known or needed."""


# -- the model's shape ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qk_norm: bool
    attention_bias: bool = False
    max_position: int | None = None
    name: str = ""

    @classmethod
    def from_config(cls, cfg: dict, name: str = "") -> ModelShape:
        if not isinstance(cfg, dict):
            raise RooflineError(f"a config.json is an object of fields, not a {type(cfg).__name__}")
        if cfg.get("num_experts") or cfg.get("num_local_experts"):
            raise RooflineError("mixture-of-experts configs are not modelled")
        try:
            heads = int(cfg["num_attention_heads"])
            hidden = int(cfg["hidden_size"])
            return cls(
                layers=int(cfg["num_hidden_layers"]), hidden=hidden, heads=heads,
                kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                intermediate=int(cfg["intermediate_size"]), vocab=int(cfg["vocab_size"]),
                tied=bool(cfg.get("tie_word_embeddings", False)),
                qk_norm=cfg.get("model_type") in ("qwen3",),
                attention_bias=bool(cfg.get("attention_bias", False)),
                max_position=cfg.get("max_position_embeddings"), name=name,
            )
        except KeyError as exc:
            raise RooflineError(f"the config has no {exc.args[0]!r}") from exc
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise RooflineError(f"the config's sizes are not whole numbers: {exc}") from exc

    @classmethod
    def load(cls, path_or_id: str) -> ModelShape:
        """From a config.json, a model folder, or a hub id (the default model's config ships in assets/)."""
        path = Path(path_or_id).expanduser()
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            if path_or_id in KNOWN_CONFIGS:
                path = KNOWN_CONFIGS[path_or_id]
            elif path_or_id.count("/") == 1 and not path_or_id.startswith((".", "/", "~")):
                try:
                    from huggingface_hub import hf_hub_download

                    path = Path(hf_hub_download(path_or_id, "config.json"))
                except Exception as exc:  # any hub failure: say what was tried
                    raise RooflineError(f"could not fetch config.json of {path_or_id} from the hub: {exc}") from exc
            else:
                raise RooflineError(f"no config.json at {path_or_id}")
        try:
            return cls.from_config(json.loads(path.read_text()), name=path_or_id)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RooflineError(f"cannot read {path}: {exc}") from exc

    @property
    def params(self) -> int:
        d, hd = self.hidden, self.head_dim
        attn = d * self.heads * hd + 2 * d * self.kv_heads * hd + self.heads * hd * d
        if self.attention_bias:
            attn += self.heads * hd + 2 * self.kv_heads * hd
        mlp = 3 * d * self.intermediate  # gated (SwiGLU): gate, up, down
        norms = 2 * d + (2 * hd if self.qk_norm else 0)
        embed = self.vocab * d * (1 if self.tied else 2)
        return embed + self.layers * (attn + mlp + norms) + d

    def weight_bytes(self, dtype: str = "bfloat16") -> float:
        return self.params * _bytes(dtype)

    def kv_bytes_per_token(self, kv_dtype: str = "bfloat16") -> float:
        return self.layers * self.kv_heads * self.head_dim * 2 * _bytes(kv_dtype)

    @property
    def attn_flops_per_token_per_ctx(self) -> float:
        """Attention FLOPs for one token attending to one earlier token: QKᵀ and AV, 2 FLOPs each."""
        return 4 * self.layers * self.heads * self.head_dim


def weights_dtype(dtype: str) -> str:
    """The dtype weights are held in: vLLM's "auto" takes the config's, bfloat16 for the models here."""
    return "bfloat16" if dtype == "auto" else dtype


def served_shape(model: str, served_name: str) -> ModelShape:
    """The shape of the model a server loads, named as clients call it."""
    return replace(ModelShape.load(model), name=served_name)


def _bytes(dtype: str) -> float:
    if dtype not in BYTES:
        raise RooflineError(f"unknown dtype {dtype!r}; known: {', '.join(BYTES)}")
    return BYTES[dtype]


# -- GPUs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gb: float
    bandwidth_gbs: float
    tflops: float
    note: str
    source: str
    aliases: tuple[str, ...] = ()
    price_usd_per_hour: float | None = None  # indicative, on demand: a suggestion, never filled in
    price_source: str = ""
    price_date: str = ""


@functools.cache
def known_gpus() -> dict[str, GPU]:
    """`assets/gpus.csv`, read once."""
    with (ASSETS / "gpus.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return {r["name"]: GPU(r["name"], float(r["memory_gb"]), float(r["bandwidth_gbs"]), float(r["bf16_tflops"]),
                           r["note"], r["source"], tuple(a for a in r["aliases"].split(";") if a),
                           float(r["price_usd_per_hour"]) if r.get("price_usd_per_hour") else None,
                           r.get("price_source", ""), r.get("price_date", "")) for r in rows}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower().replace("nvidia", "").replace("geforce", "") if ch.isalnum())


def gpu(name: str) -> GPU:
    """A GPU by its table name or an nvidia-smi name, case and punctuation ignored."""
    gpus = known_gpus()
    for g in gpus.values():
        if _key(name) in {_key(g.name), *(_key(a) for a in g.aliases)}:
            return g
    raise RooflineError(f"unknown GPU {name!r}; known: {', '.join(gpus)}")


# -- bounds ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roofline:
    """Bounds for one model on `tp` GPUs of one kind; generous by construction."""

    shape: ModelShape
    gpu: GPU
    tp: int = 1
    dtype: str = "bfloat16"
    kv_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if isinstance(self.tp, bool) or not isinstance(self.tp, int) or self.tp < 1:
            raise RooflineError(f"the tensor-parallel size is a whole number of GPUs, at least 1, not {self.tp!r}")
        for name in ("dtype", "kv_dtype"):
            if getattr(self, name) not in BYTES:
                raise RooflineError(f"{name} must be one of {', '.join(BYTES)}, not {getattr(self, name)!r}")

    @property
    def weights(self) -> float:
        return self.shape.weight_bytes(self.dtype)

    @property
    def kv_per_token(self) -> float:
        return self.shape.kv_bytes_per_token(self.kv_dtype if self.kv_dtype != "auto" else self.dtype)

    @property
    def bandwidth(self) -> float:
        return self.gpu.bandwidth_gbs * 1e9 * self.tp

    @property
    def flops(self) -> float:
        return self.gpu.tflops * 1e12 * self.tp

    def kv_space(self, utilization: float = 1.0, overhead_gb: float = BEST_CASE_OVERHEAD_GB) -> float:
        """Bytes left for the KV cache after weights and overhead (may be negative)."""
        return self.gpu.memory_gb * 1e9 * self.tp * utilization - self.weights - overhead_gb * 1e9 * self.tp

    def kv_tokens(self, utilization: float = 1.0, overhead_gb: float = BEST_CASE_OVERHEAD_GB) -> int:
        return max(0, math.floor(self.kv_space(utilization, overhead_gb) / self.kv_per_token))

    def seqs_that_fit(self, seq_len: int) -> int:
        """Sequences of `seq_len` tokens whose KV cache fits at once, in the best case."""
        return self.kv_tokens() // max(1, seq_len)

    def step_s(self, concurrency: int, context: float) -> float:
        """Minimum time of one decode step for `concurrency` sequences of mean length `context`."""
        memory = (self.weights + concurrency * context * self.kv_per_token) / self.bandwidth
        compute = concurrency * (2 * self.shape.params + self.shape.attn_flops_per_token_per_ctx * context) / self.flops
        return max(memory, compute)

    def decode_tokens_per_s(self, concurrency: int, context: float = 0.0) -> float:
        """Upper bound on output tokens/s summed over `concurrency` streams."""
        return concurrency / self.step_s(concurrency, context)

    def prefill_s(self, tokens: int) -> float:
        """Minimum prefill time (the TTFT floor) for a prompt of `tokens`, at peak FLOPS.

        Every weight works on every prompt token except the LM head (vocab × hidden), which works
        on the last one only: a prefill computes the logits of the last position (vLLM does), so
        counting the head per token (as physics.md's table does, ~10 % more for Qwen3-4B, most of
        a tiny model's FLOPs) would put a floor above what a server can reach.
        """
        head = self.shape.vocab * self.shape.hidden
        causal_attention = self.shape.attn_flops_per_token_per_ctx * tokens * tokens / 2
        return (2 * (self.shape.params - head) * tokens + 2 * head + causal_attention) / self.flops

    def request_s(self, input_len: int, output_len: int, concurrency: int = 1) -> float:
        """Minimum time for one request: its prefill, then output_len − 1 decode steps at this concurrency."""
        context = input_len + output_len / 2
        return self.prefill_s(input_len) + (output_len - 1) * self.step_s(concurrency, context)

    def requests_per_s(self, concurrency: int, input_len: int, output_len: int) -> float:
        return concurrency / self.request_s(input_len, output_len, concurrency)


def bounds_table(shape: ModelShape, g: GPU, tp: int = 1, dtype: str = "bfloat16") -> pd.DataFrame:
    """The bounds a person asks for first, one row per concurrency."""
    r = Roofline(shape, g, tp, dtype)
    rows = []
    for c in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        rows.append({
            "concurrency": c,
            "decode_tok_s_ctx0": r.decode_tokens_per_s(c, 0),
            "decode_tok_s_ctx1k": r.decode_tokens_per_s(c, 1024),
            "decode_tok_s_ctx8k": r.decode_tokens_per_s(c, 8192),
            "req_s_1k_in_512_out": r.requests_per_s(c, 1024, 512),
        })
    return pd.DataFrame(rows).round({"decode_tok_s_ctx0": 1, "decode_tok_s_ctx1k": 1, "decode_tok_s_ctx8k": 1,
                                     "req_s_1k_in_512_out": 3})


def describe(r: Roofline) -> str:
    return (f"{r.shape.name or 'model'} on {r.tp}× {r.gpu.name} ({r.dtype}): {r.shape.params / 1e9:.2f} B parameters, "
            f"{r.weights / 1e9:.2f} GB of weights, {r.kv_per_token:,.0f} B of KV per token, "
            f"{r.kv_tokens():,} KV tokens fit at best")


# -- verdicts on reference numbers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    verdict: str  # plausible | exceeds_bound | does_not_fit
    factor: float  # the largest measured / bound ratio (NaN when it does not fit)
    bound_output_throughput: float
    bound_min_ttft_ms: float  # NaN when the prompt length is unknown


def judge(r: Roofline, concurrency: float | None, output_throughput: float, mean_ttft_ms: float | None = None,
          input_len: float | None = None, output_len: float | None = None) -> Verdict:
    """Put a reported point beside its bound. Unknown lengths are taken at their most generous
    (no context); an unknown concurrency as many sequences as fit."""
    known_in = input_len is not None and not math.isnan(input_len)
    known_out = output_len is not None and not math.isnan(output_len)
    n_in = input_len if input_len is not None and known_in else 0.0
    n_out = output_len if output_len is not None and known_out else 0.0
    seq = int(n_in + n_out)
    fit = r.seqs_that_fit(seq) if seq else math.inf
    if fit == 0:
        return Verdict("does_not_fit", math.nan, math.nan, math.nan)
    conc = fit if concurrency is None or math.isnan(concurrency) else min(int(concurrency), fit)
    context = n_in + n_out / 2 if known_in else 0.0
    bound = r.decode_tokens_per_s(int(conc), context)
    factors = [output_throughput / bound]
    floor_ms = r.prefill_s(int(n_in)) * 1000 if known_in else math.nan
    if known_in and mean_ttft_ms is not None and not math.isnan(mean_ttft_ms) and mean_ttft_ms > 0:
        factors.append(floor_ms / mean_ttft_ms)
    factor = max(factors)
    return Verdict("exceeds_bound" if factor > 1 else "plausible", factor, bound, floor_ms)


REQUIRED = ("concurrency", "output_throughput")
OPTIONAL = ("mean_ttft_ms", "input_len", "output_len")


def check_table(table: pd.DataFrame, shape: ModelShape, g: GPU, tp: int = 1, dtype: str = "bfloat16") -> pd.DataFrame:
    """`table` with bound_output_throughput, verdict, factor and bound_min_ttft_ms added.

    Needs `concurrency` (or the benchmark's `max_concurrency`) and `output_throughput`.
    """
    table = table.copy()
    if "concurrency" not in table.columns and "max_concurrency" in table.columns:
        table["concurrency"] = table["max_concurrency"]
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise RooflineError(f"the table lacks {', '.join(missing)}; needed: {', '.join(REQUIRED)} "
                            f"(optional: {', '.join(OPTIONAL)}); it has: {', '.join(map(str, table.columns))}")
    if table.empty:
        raise RooflineError("the table has no rows")
    # Numbers above 0 everywhere; a blank is allowed where unknown is meaningful (taken at its most
    # generous, as `judge` says), never for the throughput being judged.
    for col in (*REQUIRED, *(c for c in OPTIONAL if c in table.columns)):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = (values.isna() & (table[col].notna() | (col == "output_throughput"))) | (values <= 0)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            shown = "a blank" if pd.isna(table[col].iloc[row]) else repr(str(table[col].iloc[row]))
            raise RooflineError(f"row {row + 1}: {col} must be a number above 0, not {shown}")
        table[col] = values
    r = Roofline(shape, g, tp, dtype)
    verdicts = [
        judge(r, row["concurrency"], row["output_throughput"], row.get("mean_ttft_ms"), row.get("input_len"),
              row.get("output_len"))
        for row in table.to_dict("records")
    ]
    table["bound_output_throughput"] = [round(v.bound_output_throughput, 1) for v in verdicts]
    table["bound_min_ttft_ms"] = [round(v.bound_min_ttft_ms, 1) for v in verdicts]
    table["verdict"] = [v.verdict for v in verdicts]
    table["factor"] = [round(v.factor, 2) for v in verdicts]
    return table


# -- the article's reference tables ---------------------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConcurrencyRow(_Record):
    concurrency: int
    mean_ttft_ms: float
    request_throughput: float
    output_throughput: float


class LengthRow(_Record):
    input_len: int
    mean_ttft_ms: float
    throughput: float  # the article does not say whether output only or prompt + output


class ConcurrencyTable(_Record):
    output_len: int
    rows: tuple[ConcurrencyRow, ...]


class LengthTable(_Record):
    output_len: int
    rows: tuple[LengthRow, ...]


class Article(_Record):
    """The article's result tables as it states them, with what it states of its setup."""

    source: str
    stated_gpu: str
    stated_gpu_count: int
    stated_software: str
    stated_dtype: str
    model: str
    caveats: tuple[str, ...]
    concurrency: ConcurrencyTable
    input_length: LengthTable


@functools.cache
def article() -> Article:
    """`assets/article_reference.yaml`, read once."""
    return Article.model_validate(yaml.safe_load((ASSETS / "article_reference.yaml").read_text()))


def article_tables(shape: ModelShape | None = None, g: GPU | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The article's two tables with bounds and verdicts for the GPU it states (or `g`)."""
    ref = article()
    shape = shape or ModelShape.load(ref.model)
    g = g or gpu(ref.stated_gpu)
    conc = pd.DataFrame([row.model_dump() for row in ref.concurrency.rows])
    conc = check_table(conc, shape, g)  # prompt length unstated: judged at no context
    conc["output_len"] = ref.concurrency.output_len
    length = pd.DataFrame([row.model_dump() for row in ref.input_length.rows])
    length["output_len"] = ref.input_length.output_len
    length["concurrency"] = math.nan  # unstated: as many as fit
    length["output_throughput"] = length["throughput"]  # read as output tokens, the article's own label
    length = check_table(length, shape, g)
    length["bound_total_throughput"] = [
        round(b * (i + o) / o, 1) if not math.isnan(b) else math.nan
        for b, i, o in zip(length["bound_output_throughput"], length["input_len"], length["output_len"])
    ]
    return conc, length


# -- pre-flight -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    fits: bool
    message: str
    largest_max_model_len: int | None


def launch_fit(shape: ModelShape | RooflineError, g: GPU | None, settings: ServerSettings, unchecked: str) -> Fit:
    """`preflight` for a launch's settings; without a known GPU (`unchecked` says why) or a
    readable config, no check applies, and the message says so."""
    if g is None:
        return Fit(True, f"No memory check applies: {unchecked}.", None)
    if isinstance(shape, RooflineError):
        return Fit(True, f"No memory check applies: {shape}.", None)
    return preflight(shape, g, settings.max_model_len or shape.max_position or DEFAULT_CONTEXT,
                     settings.gpu_memory_utilization or DEFAULT_UTILIZATION, settings.tensor_parallel_size,
                     settings.dtype, settings.kv_cache_dtype)


def preflight(shape: ModelShape, g: GPU | None, max_model_len: int, utilization: float = 0.9, tp: int = 1,
              dtype: str = "bfloat16", kv_dtype: str = "auto") -> Fit:
    """Will the weights and one max_model_len sequence of KV cache fit? Checked before launching."""
    if g is None:
        return Fit(True, "No GPU: no memory check applies (the CPU smoke model).", None)
    r = Roofline(shape, g, tp, weights_dtype(dtype), kv_dtype)
    space = r.kv_space(utilization, PREFLIGHT_OVERHEAD_GB)
    total = g.memory_gb * tp
    if space <= 0:
        return Fit(False, f"The weights ({r.weights / 1e9:.1f} GB) and overhead do not fit in {utilization:.0%} of "
                          f"{total:.1f} GB on {tp}× {g.name}.", 0)
    largest = math.floor(space / r.kv_per_token)
    need = max_model_len * r.kv_per_token
    if largest < max_model_len:
        return Fit(False, f"max_model_len {max_model_len:,} needs {need / 1e9:.1f} GB of KV cache, but only "
                          f"{space / 1e9:.1f} GB is left on {tp}× {g.name} after {r.weights / 1e9:.1f} GB of weights at "
                          f"gpu_memory_utilization {utilization}. The largest max_model_len that fits is {largest:,}.",
                   largest)
    return Fit(True, f"Fits: {need / 1e9:.1f} GB of KV cache for max_model_len {max_model_len:,} "
                     f"within {space / 1e9:.1f} GB free on {tp}× {g.name}.", largest)


# -- series for charts ---------------------------------------------------------------------------------------


def reference_series(conc: pd.DataFrame, length: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The judged article tables (from `article_tables`) with the benchmark's column names, for plotting."""
    ref = article()
    source = f"article (stated: {ref.stated_gpu}, {ref.stated_software.split(',')[0]})"
    conc = conc.rename(columns={"concurrency": "max_concurrency"}).assign(source=source)
    length = length.assign(source=source, max_concurrency=math.nan)
    return conc, length


def bound_label(r: Roofline, kind: str) -> str:
    """`kind` is what the bound is: "datasheet bound" (nothing can beat it) or "measured bound"
    (this device's own bandwidth and compute in the same formulas)."""
    return f"{kind}: {r.shape.name or 'model'} {r.dtype} on {r.tp}× {r.gpu.name}"


def efficiency(r: Roofline, output_throughput: float, concurrency: int | None, input_len: int, output_len: int) -> float:
    """Measured output tokens/s over the bound at that concurrency and mean context."""
    if not concurrency or not output_throughput or math.isnan(output_throughput):
        return math.nan
    return output_throughput / r.decode_tokens_per_s(int(concurrency), input_len + output_len / 2)


def bound_by_concurrency(r: Roofline, levels: list[int], input_len: int | None, output_len: int,
                         kind: str = "datasheet bound") -> pd.DataFrame:
    """The fastest output tokens/s and the TTFT floor at each concurrency, for one request shape."""
    context = (input_len or 0) + output_len / 2 if input_len else 0.0
    lo, hi = min(levels), max(levels)
    grid = sorted({*levels, *[2**i for i in range(12) if lo <= 2**i <= hi]})
    label = bound_label(r, kind)
    return pd.DataFrame({
        "max_concurrency": grid,
        "output_throughput": [r.decode_tokens_per_s(c, context) for c in grid],
        "mean_ttft_ms": [r.prefill_s(input_len) * 1000 if input_len else math.nan for _ in grid],
        "label": label,
    })


def bound_by_input(r: Roofline, lengths: list[int], output_len: int, concurrency: int | None,
                   kind: str = "datasheet bound") -> pd.DataFrame:
    """The fastest output tokens/s (as many sequences as fit, up to `concurrency`) and the TTFT floor by prompt length."""
    lo, hi = min(lengths), max(lengths)
    grid = sorted({*lengths, *[2**i for i in range(8, 19) if lo <= 2**i <= hi]})
    rows = []
    for n in grid:
        fit = r.seqs_that_fit(n + output_len)
        conc = min(fit, concurrency) if concurrency else fit
        rows.append({"input_len": n, "mean_ttft_ms": r.prefill_s(n) * 1000,
                     "output_throughput": r.decode_tokens_per_s(conc, n + output_len / 2) if conc else math.nan})
    return pd.DataFrame(rows).assign(label=bound_label(r, kind))
