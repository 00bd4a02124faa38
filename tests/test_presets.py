"""Presets: every shipped file validates; bad files are refused naming the file and the field."""

from __future__ import annotations

import pytest

from showcase import ROOT, presets, server, sources
from showcase.bench import traffic
from showcase.settings import ServerSettings


def write(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


GOOD = """
name: tiny
title: Tiny
description: d
source: s
server: {max_num_seqs: 4}
workload: {concurrency: [1, 2], input_len: [100], output_len: 10, num_requests: 4}
"""


def test_all_shipped_presets_load_and_cover_the_article():
    catalogue = presets.load_all()
    assert {"low-latency-chatbot", "batch-generation", "long-documents", "article-concurrency-sweep",
            "article-input-lengths"} <= set(catalogue)
    sweep = catalogue["article-concurrency-sweep"].workload
    assert sweep.concurrency == [1, 4, 8, 16, 32] and sweep.output_len == 512
    lengths = catalogue["article-input-lengths"].workload
    assert lengths.input_len == [1024, 8192, 32768, 131072, 262144]
    assert catalogue["low-latency-chatbot"].workload.stream and max(catalogue["low-latency-chatbot"].workload.concurrency) <= 8
    assert catalogue["batch-generation"].server["tensor_parallel_size"] == "all" and not catalogue["batch-generation"].workload.stream
    assert catalogue["long-documents"].server["enable_chunked_prefill"] and max(catalogue["long-documents"].workload.concurrency) <= 4
    for p in catalogue.values():
        cpu = p.for_cpu()
        w, context = cpu.workload, cpu.server.get("max_model_len") or 4096  # the smoke model's context, as scaled
        if w.trace:  # a sample trace's every request fits
            assert max(r.input_len + r.output_len for r in traffic.read_trace(ROOT / w.trace).rows) <= context, p.name
        elif w.dataset:
            assert len(traffic.read_dataset(ROOT / w.dataset).rows) >= 200, p.name
        else:
            assert max(w.input_len) + w.output_len <= context, p.name


@pytest.mark.parametrize("text, field", [
    (GOOD.replace("output_len: 10", "output_len: 10, colour: red"), "workload.colour"),
    (GOOD.replace("concurrency: [1, 2]", "concurrency: [0]"), "concurrency"),
    (GOOD.replace("output_len: 10", "output_len: ten"), "workload.output_len"),
    (GOOD.replace("max_num_seqs: 4", "max_num_seqs: 4, flags: '--evil'"), "server.flags"),
    (GOOD.replace("max_num_seqs: 4", "dtype: int3"), "server.dtype"),
    (GOOD.replace("source: s\n", ""), "source"),
    (GOOD.replace("name: tiny", "name: other"), "name"),
    (GOOD.replace("num_requests: 4", "num_requests: 4, duration_s: 10"), "num_requests and duration_s"),
])
def test_bad_presets_are_refused_naming_file_and_field(tmp_path, text, field):
    path = write(tmp_path, "tiny", text)
    with pytest.raises(presets.PresetError) as err:
        presets.load(path)
    assert "tiny.yaml" in str(err.value) and field in str(err.value)


def test_workload_edits_are_validated_like_the_file(tmp_path):
    p = presets.load(write(tmp_path, "tiny", GOOD))
    assert p.with_workload(concurrency=[3]).workload.concurrency == [3]
    with pytest.raises(presets.PresetError, match="concurrency"):
        p.with_workload(concurrency=[1_000_000])  # beyond even the engine's limit
    with pytest.raises(presets.PresetError, match="output_len"):
        p.with_workload(output_len=-5)


def test_cpu_scaling_changes_only_what_it_names():
    p = presets.load_all()["low-latency-chatbot"]
    cpu = p.for_cpu()
    assert cpu.server["max_model_len"] == 4096 and cpu.server["max_num_seqs"] == 8
    assert "dtype" not in cpu.server  # launch defaults stay
    device = sources.Device("cpu", "cpu")
    base = ServerSettings(model="/m", served_model_name="m", dtype="bfloat16", enforce_eager=True)
    settings = server.settings_for(cpu.server, base, device)
    assert settings.enforce_eager and settings.dtype == "bfloat16" and settings.max_num_seqs == 8


def test_tensor_parallel_all_means_every_gpu():
    p = presets.load_all()["batch-generation"]
    base = ServerSettings(model="m/x", served_model_name="x")
    assert server.settings_for(p.server, base, sources.Device("cuda", "NVIDIA H100 80GB HBM3", 4)).tensor_parallel_size == 4
