"""The roofline model against the known numbers of physics.md, verdicts, pre-flight, command line."""

from __future__ import annotations

import io

import pandas as pd
import pytest

import engine
from showcase import roofline as R


@pytest.fixture(scope="module")
def qwen() -> R.ModelShape:
    return R.ModelShape.load("Qwen/Qwen3-4B-Instruct-2507")


@pytest.fixture(scope="module")
def a10g(qwen) -> R.Roofline:
    return R.Roofline(qwen, R.gpu("A10G"))


def test_qwen3_4b_size_weights_and_kv(qwen, a10g):
    assert qwen.params == 4_022_468_096  # 4.02 B
    assert a10g.weights == pytest.approx(8.04e9, rel=1e-3)  # bf16
    assert a10g.kv_per_token == 147_456  # 36 layers × 8 KV heads × 128 × K,V × 2 bytes


def test_a10g_bounds_a_single_stream_at_about_75_tokens_per_s(a10g):
    assert a10g.decode_tokens_per_s(1) == pytest.approx(74.6, abs=0.1)
    assert a10g.decode_tokens_per_s(32, 384) == pytest.approx(1948, abs=2)  # KV reads count
    assert a10g.requests_per_s(1, 0, 512) == pytest.approx(0.146, abs=0.001)


def test_a_256k_context_needs_about_46_7_gb(a10g):
    assert (a10g.weights + 262_144 * a10g.kv_per_token) / 1e9 == pytest.approx(46.7, abs=0.05)


def test_prefill_floors(a10g):
    # physics.md's (c) table counts the tied LM head (389M params) on every prompt token: 0.068,
    # 4.64 and 179 s. A prefill computes the logits of the last position only, so the floor is
    # 2·(P − V·d)·N + 2·V·d + attention: lower, as a floor must be.
    assert a10g.prefill_s(1024) == pytest.approx(0.0620, abs=0.0005)
    assert a10g.prefill_s(32768) == pytest.approx(4.44, abs=0.01)
    assert a10g.prefill_s(262144) == pytest.approx(177.4, abs=0.5)


def test_kv_capacity_best_case_and_at_0_9(a10g):
    assert a10g.kv_space() / 1e9 == pytest.approx(15.6, abs=0.05)
    assert a10g.kv_tokens(0.9, 1.5) == pytest.approx(83_000, rel=0.01)


def test_article_concurrency_table_verdicts_agree_with_physics():
    conc, _ = R.article_tables()
    assert list(conc["verdict"]) == ["exceeds_bound"] * 5
    assert list(conc["factor"]) == pytest.approx([17.8, 15.3, 13.0, 7.9, 4.1], abs=0.06)


def test_article_input_length_table_verdicts_agree_with_physics():
    _, length = R.article_tables()
    assert list(length["verdict"]) == ["exceeds_bound"] * 3 + ["does_not_fit"] * 2
    assert list(length["bound_output_throughput"].round(0)[:3]) == [1954, 313, 80]
    assert list(length["factor"][:3].round(1)) == [2.4, 13.4, 39.0]
    assert list(length["bound_total_throughput"][:3].round(-1)) == [5860, 5320, 5170]


def test_a_plausible_row_stays_plausible(qwen):
    h100 = R.Roofline(qwen, R.gpu("H100 SXM"))
    v = R.judge(h100, 1, 150.0, mean_ttft_ms=50, input_len=1024, output_len=512)
    assert v.verdict == "plausible" and v.factor < 1
    assert R.judge(h100, 1, 500.0).verdict == "exceeds_bound"


def test_tensor_parallel_multiplies_bandwidth_and_memory(qwen):
    one, two = R.Roofline(qwen, R.gpu("L4")), R.Roofline(qwen, R.gpu("L4"), tp=2)
    assert two.decode_tokens_per_s(1) == pytest.approx(2 * one.decode_tokens_per_s(1))
    assert two.kv_tokens() > 2 * one.kv_tokens()


def test_gpu_names_from_nvidia_smi_are_known():
    assert R.gpu("NVIDIA A100-SXM4-80GB").name == "A100-80GB"
    assert R.gpu("NVIDIA GeForce RTX 4090").name == "RTX-4090"
    assert R.gpu("Tesla T4").name == "T4"
    with pytest.raises(R.RooflineError, match="known: A10G, A10, L4"):
        R.gpu("Voodoo 3")


def test_preflight_refuses_256k_on_an_a10g_with_the_largest_that_fits(qwen):
    fit = R.preflight(qwen, R.gpu("A10G"), 262_656)
    assert not fit.fits and "largest max_model_len that fits is 82," in fit.message
    assert fit.largest_max_model_len == pytest.approx(82_700, rel=0.01)
    assert R.preflight(qwen, R.gpu("A10G"), 32_768).fits
    assert R.preflight(qwen, R.gpu("H200"), 262_656).fits
    assert "no memory check applies" in R.preflight(qwen, None, 262_656).message


def test_preflight_refuses_weights_that_cannot_fit(qwen):
    fit = R.preflight(qwen, R.gpu("T4"), 4096, utilization=0.5, dtype="float32")
    assert not fit.fits and "do not fit" in fit.message


def test_generic_config_without_head_dim_or_tied_embeddings():
    shape = R.ModelShape.from_config({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                                      "intermediate_size": 128, "vocab_size": 100})
    assert shape.head_dim == 16 and shape.kv_heads == 4 and not shape.tied
    assert shape.params == 2 * 100 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64
    with pytest.raises(R.RooflineError, match="intermediate_size"):
        R.ModelShape.from_config({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 1})


def test_cli_prints_bounds(capsys):
    assert engine.main(["roofline", "--model-config", "Qwen/Qwen3-4B-Instruct-2507", "--gpu", "a10g"]) == 0
    out = capsys.readouterr().out
    assert "4.02 B parameters" in out and "74.6" in out


def test_cli_check_adds_bounds_and_verdicts_to_a_csv(tmp_path, capsys):
    src = tmp_path / "in.csv"
    pd.DataFrame({"concurrency": [1, 8], "output_throughput": [1330, 300], "input_len": [1024, 1024],
                  "output_len": [512, 512]}).to_csv(src, index=False)
    assert engine.main(["roofline", "--model-config", "Qwen/Qwen3-4B-Instruct-2507", "--gpu", "A10G",
                     "--check", str(src)]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(out["verdict"]) == ["exceeds_bound", "plausible"]
    assert {"bound_output_throughput", "verdict", "concurrency", "output_throughput"} <= set(out.columns)


def test_cli_check_accepts_the_benchmarks_own_summary(tmp_path, capsys):
    src = tmp_path / "summary.csv"
    pd.DataFrame({"max_concurrency": [4], "output_throughput": [100.0], "mean_ttft_ms": [300.0],
                  "input_len": [1024], "output_len": [512]}).to_csv(src, index=False)
    assert engine.main(["roofline", "--model-config", "Qwen/Qwen3-4B-Instruct-2507", "--gpu", "A10G",
                     "--check", str(src)]) == 0
    assert "plausible" in capsys.readouterr().out


def test_cli_errors_name_what_is_known_or_needed(tmp_path, capsys):
    assert engine.main(["roofline", "--model-config", "Qwen/Qwen3-4B-Instruct-2507", "--gpu", "B300"]) == 2
    assert "known: A10G" in capsys.readouterr().err
    src = tmp_path / "bad.csv"
    pd.DataFrame({"tokens": [1]}).to_csv(src, index=False)
    assert engine.main(["roofline", "--model-config", "Qwen/Qwen3-4B-Instruct-2507", "--gpu", "A10G",
                     "--check", str(src)]) == 2
    err = capsys.readouterr().err
    assert "lacks concurrency, output_throughput" in err and "it has: tokens" in err
