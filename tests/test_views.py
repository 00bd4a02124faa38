"""What the app shows, without Gradio: status, progress, tables, the limit drawn, the charts' data."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from showcase import coordinator, forms, presets, roofline, server, sources, views
from showcase.bench.run import Progress, RunStatus
from showcase.bench.workload import WorkloadError
from showcase.settings import ServerSettings


def snapshot(**kw: Any) -> coordinator.Snapshot:
    base: dict[str, Any] = dict(running=False, preset="p", phase=coordinator.Phase.IDLE, progress=None, message="No run yet.",
                folder=None, status=None)
    return coordinator.Snapshot(**(base | kw))


def test_progress_says_where_a_run_is_and_how_it_ended():
    p = Progress(point=2, points=5, done=3, total=8, failed=1, tokens_per_s=None, message="building prompts")
    text = views.progress_markdown(snapshot(running=True, phase=coordinator.Phase.RUNNING, progress=p))
    assert "point 2 of 5, 3 of 8 requests done · 1 failed · building prompts" in text and "tokens/s" not in text
    p = p.model_copy(update={"tokens_per_s": 1234.0, "message": ""})
    assert "1,234 output tokens/s so far" in views.progress_markdown(snapshot(running=True, progress=p))
    ended = views.progress_markdown(snapshot(status=RunStatus.SERVER_DIED, message="<gone>"))
    assert ended.startswith("💥") and "server_died" in ended and "&lt;gone&gt;" in ended
    assert views.progress_markdown(snapshot()) == "No run yet."


def test_status_panel_names_state_model_device_and_why_cpu():
    st = server.Status(server.State.READY, "serving m", "m", "cpu",
                       settings=ServerSettings(model="/m", served_model_name="m", max_num_seqs=8))
    text = views.status_markdown(st, "taken as CPU-only: nvidia-smi is installed but failed (boom)")
    assert "🟢 ready" in text and "max_num_seqs 8" in text and "nvidia-smi is installed but failed" in text
    assert views.log_text(st) == ""
    failed = server.Status(server.State.FAILED, "exited", "m", "cpu", log_tail=tuple(f"l{i}" for i in range(30)))
    assert views.log_text(failed).splitlines() == [f"l{i}" for i in range(18, 30)]


def test_the_summary_table_shows_the_headline_columns_with_short_headers():
    summary = pd.DataFrame([{"point": 0, "max_concurrency": 4, "mean_ttft_ms": 12.345, "flags": "client_starved",
                             "errors": "", "client_runq_share": 0.2}])
    shown = views.shown_summary(summary)
    assert list(shown.columns) == ["point", "concurrency", "mean TTFT ms", "flags"]
    assert shown.iloc[0]["point"] == 1 and shown.iloc[0]["mean TTFT ms"] == 12.3
    assert list(views.shown_summary(pd.DataFrame()).columns)[0] == "point"
    small = views.shown_summary(summary.assign(efficiency=0.0062))  # a CPU's share of its bound
    assert small.iloc[0]["efficiency"] == 0.006  # not shown as 0


def test_workload_fields_are_parsed_or_refused_with_the_field_named():
    assert forms.overrides_from("1, 4,8", "256", 64, 16, True) == {
        "concurrency": [1, 4, 8], "input_len": [256], "output_len": 64, "num_requests": 16, "stream": True,
        "repeats": 1}
    assert forms.overrides_from("1", "256", 64, 16, True, repeats=3)["repeats"] == 3
    with pytest.raises(WorkloadError, match="Repeats: give a whole number of at least 1"):
        forms.overrides_from("1", "256", 64, 16, True, repeats=0)
    with pytest.raises(WorkloadError, match="at least 2"):
        forms.repeats_from(1, least=2)
    with pytest.raises(WorkloadError, match="both endpoints"):
        forms.endpoints_from("http://a:1", "")
    with pytest.raises(WorkloadError, match="Concurrency levels: give numbers"):
        forms.overrides_from("one", "256", 64, 16, True)
    with pytest.raises(WorkloadError, match="Prompt lengths: give at least one value"):
        forms.overrides_from("1", " , ", 64, 16, True)


def fake_server(device: sources.Device, settings: ServerSettings | None) -> SimpleNamespace:
    return SimpleNamespace(device=device, settings=settings)


def test_the_served_model_of_the_measured_bound_is_said_never_silently_swapped(tmp_path):
    attached = views.served_model_for(fake_server(sources.Device("cpu", "cpu"), None))
    assert attached.shape is None and "no measured bound is drawn" in attached.note
    gpu = sources.Device("cuda", "NVIDIA A10G", 1)
    unreadable = views.served_model_for(fake_server(gpu, ServerSettings(model=str(tmp_path / "none"),
                                                                          served_model_name="x")))
    assert unreadable.shape is None and "cannot be read" in unreadable.note
    served = views.served_model_for(fake_server(gpu, ServerSettings(model=str(sources.ASSETS / "smoke-qwen3"),
                                                                     served_model_name="smoke")))
    assert served.shape.layers == 2 and "smoke on this device's measured bandwidth" in served.note
    assert views.measured_roofline(served, None, "auto") is None  # not measured (yet): no line, no guess


def test_views_of_a_run_folder_and_uploads(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame([{"point": 0, "input_len": 256, "output_len": 64, "max_concurrency": 1, "output_throughput": 80.0,
                   "mean_ttft_ms": 25.0, "flags": ""}]).to_csv(run / "summary.csv", index=False)
    good, bad = tmp_path / "other.csv", tmp_path / "bad.csv"
    good.write_text("concurrency,output_throughput,mean_ttft_ms,input_len\n8,300,90,256\n")
    bad.write_text("a,b\n1,2\n")
    served = views.served_model_for(fake_server(sources.Device("cpu", "cpu"), None))
    v, refused = views.load_views([run], [good, bad], roofline.gpu("A10G"), served)
    assert refused == ["bad.csv is not a benchmark summary: it lacks input_len, max_concurrency, "
                       "mean_ttft_ms, output_throughput"]
    assert v.summary.iloc[0]["output tok/s"] == 80.0 and v.files == [str(run / "summary.csv")]
    assert len(v.reference_concurrency) == 5 and set(v.reference_concurrency["verdict"]) == {"exceeds_bound"}
    rows = [row for data in v.by_concurrency.to_dict()["datasets"].values() for row in data]
    assert {"run", "uploaded: other.csv"} <= {row.get("series") for row in rows}  # both measured series drawn
    assert any(str(row.get("label", "")).startswith("datasheet bound: Qwen/Qwen3-4B") for row in rows)


def test_the_presets_table_lists_every_preset():
    catalogue = presets.load_all()
    table = views.presets_table(catalogue)
    assert list(table["preset"]) == list(catalogue) and table["SLOs (ms)"].str.len().gt(0).all()
    assert "low-latency-chatbot" in set(table["preset"]) and Path(presets.PRESET_DIR).is_dir()


def test_a_chat_preset_takes_its_levels_as_users_and_no_request_count():
    assert forms.overrides_from("1, 8", "64", 128, 99, True, users=True) == {
        "users": [1, 8], "input_len": [64], "output_len": 128, "repeats": 1}
    with pytest.raises(WorkloadError, match="Chat users: give numbers"):
        forms.overrides_from("many", "64", 128, 0, True, users=True)
    chat = presets.load_all()["chat-users"]
    assert forms.workload_fields(chat) == ("1, 8, 32, 64", "64", 256, 64 * 4, True)
    assert forms.search_for(chat) == {"by": "users"}
    assert forms.search_for(presets.load_all()["chat-capacity"]) == {}  # its own plan
    assert forms.search_for(presets.load_all()["low-latency-chatbot"]) == {"by": "concurrency"}


@pytest.mark.parametrize("text, value", [("", None), (None, None), (0, None), (2.49, 2.49), ("3", 3.0)])
def test_a_price_is_dollars_or_nothing(text, value):
    assert forms.price_from(text) == value


@pytest.mark.parametrize("text", ["-1", "free", -0.5])
def test_a_price_that_is_no_price_is_refused(text):
    with pytest.raises(WorkloadError, match="Price per GPU-hour"):
        forms.price_from(text)


def test_a_price_hint_is_a_suggestion_with_its_source_never_a_value():
    from showcase import roofline

    assert "Suggestion: H100-SXM" in forms.price_hint(roofline.gpu("H100-SXM"))
    assert "$2.49/h" in forms.price_hint(roofline.gpu("H100-SXM"))
    assert "Suggestion" not in forms.price_hint(roofline.gpu("T4")) and "Suggestion" not in forms.price_hint(None)


def test_a_capacity_answer_is_said_in_one_line_and_nothing_for_other_runs():
    from showcase.bench.capacity import Capacity, CapacityPlan
    from showcase.bench.workload import SLOs

    assert views.answer_markdown(None) == ""
    cap = Capacity(plan=CapacityPlan(), slos=SLOs(ttft_ms=500), max_passing=12, sentence="serves up to 12 x", done=True)
    assert views.answer_markdown(cap) == "### 🎯 This deployment serves up to 12 x."


def _run_folder(root: Path, name: str, ttfts: list[float]) -> Path:
    folder = root / name
    folder.mkdir()
    pd.DataFrame([{"point": i, "repeat": i, "arm": math.nan, "input_len": 64, "output_len": 8, "max_concurrency": 4,
                   "request_rate": math.inf, "users": math.nan, "mean_ttft_ms": t, "output_throughput": 1000 / t,
                   "mean_tpot_ms": 10.0 + i % 2, "p99_itl_ms": 12.0, "flags": math.nan}
                  for i, t in enumerate(ttfts)]).to_csv(folder / "summary.csv", index=False)
    return folder


def test_runs_side_by_side_say_whether_their_difference_exceeds_their_repeats(tmp_path):
    fast = _run_folder(tmp_path, "fast", [50.0, 51.0, 49.0])
    slow = _run_folder(tmp_path, "slow", [80.0, 82.0, 81.0])
    measured, _, _ = views.measured_series([fast, slow], [])
    table, note = views.compare_runs(measured)
    ttft = table[table["metric"] == "mean TTFT"].iloc[0]
    assert ttft["verdict"].startswith("worse") and ttft["main run"] == 50.0 and ttft["its value"] == 81.0
    assert table[table["metric"] == "p99 ITL"].iloc[0]["verdict"].startswith("no difference")
    assert "Main run: fast" in note and "cannot" not in note
    one_a, one_b = _run_folder(tmp_path, "one-a", [50.0]), _run_folder(tmp_path, "one-b", [80.0])
    table, note = views.compare_runs(views.measured_series([one_a, one_b], [])[0], "An A/A experiment found ±6 %.")
    assert set(table["verdict"]) == {"one repeat: cannot tell"}
    assert "one run is one sample" in note and "An A/A experiment found ±6 %." in note
    assert "No A/A experiment" in views.compare_runs(views.measured_series([one_a, one_b], [])[0])[1]


def test_the_uncertainty_line_says_when_a_run_cannot_state_one(tmp_path):
    one = pd.read_csv(_run_folder(tmp_path, "one", [50.0]) / "summary.csv")
    three = pd.read_csv(_run_folder(tmp_path, "three", [50.0, 51.0, 52.0]) / "summary.csv")
    assert "cannot state an uncertainty" in views.uncertainty_markdown(one)
    assert views.shown_aggregate(one).empty
    assert "measured 3 times" in views.uncertainty_markdown(three)
    shown = views.shown_aggregate(three)
    assert shown["mean TTFT ms (95 % CI)"].iloc[0].startswith("51.0 (")
