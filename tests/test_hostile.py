"""Servers that misbehave, signals and a full disk: a run neither hangs nor crashes, and keeps what it measured."""

from __future__ import annotations

import errno
import json
import math
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import engine
from showcase import ROOT, api, coordinator, server
from showcase.bench import folder as folder_io
from showcase.bench import run as bench
from showcase.bench.loadgen import Target
from showcase.bench.workload import Workload


def small(**changes) -> bench.RunMeta:
    w = Workload(**({"concurrency": [1], "input_len": [16], "output_len": 4, "num_requests": 6, "warmup_requests": 0}
                    | changes))
    return bench.run_meta("hostile", w)


@pytest.mark.parametrize("event", [
    "42", "null", "[1, 2]", '"text"', '{"choices": {"a": 1}}', '{"choices": "x"}', '{"choices": [null]}',
    '{"choices": [{"delta": {"content": 7}}]}', '{"choices": [{"delta": [1]}]}', '{"choices": [], "usage": "lots"}',
    '{"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]}',
])
def test_a_malformed_stream_event_fails_that_request_with_the_reason_and_the_run_goes_on(hostile, tmp_path, event):
    result = bench.run_sync(small(), Target(hostile(f"event:{event}"), "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert result.status is bench.RunStatus.COMPLETED
    assert row["completed"] == 3 and row["failed"] == 3, row["errors"]
    assert "malformed answer" in row["errors"]


@pytest.mark.parametrize("count, says", [
    ("Infinity", "unparseable stream event"), ("-7", "Expected `int` >= 0 - at `$.usage.completion_tokens`"),
    ("1e30", "got `float` - at `$.usage.completion_tokens`"),
    ('"7"', "Expected `int | null`, got `str` - at `$.usage.completion_tokens`"),
    ("9", "9 output tokens where 4 were asked"),
])
def test_absurd_usage_fails_the_request_instead_of_becoming_a_number(hostile, tmp_path, count, says):
    result = bench.run_sync(small(), Target(hostile(f"usage:{count}"), "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert row["failed"] == 3 and says in row["errors"], row["errors"]
    assert math.isfinite(row["output_throughput"]) and row["output_throughput"] > 0


@pytest.mark.parametrize("fault, stream, says", [
    ("http500-binary", True, "HTTP 500"),
    ("body:not json at all", False, "not JSON"),
    ("body:[1, 2, 3]", False, "Expected `object`, got `array`"),
    ('body:{"choices": "x"}', False, "got `str` - at `$.choices`"),
    ('body:{"choices": [{"message": {"content": "x"}}], "usage": {"completion_tokens": -1}}', False,
     "Expected `int` >= 0 - at `$.usage.completion_tokens`"),
])
def test_a_broken_response_fails_that_request_with_the_reason(hostile, tmp_path, fault, stream, says):
    result = bench.run_sync(small(stream=stream), Target(hostile(fault), "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert row["completed"] == 3 and row["failed"] == 3 and says in row["errors"], row["errors"]


def test_a_tokenizer_that_never_answers_fails_the_run_naming_the_route_and_the_wait(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "TOKENIZE_TIMEOUT_S", 1.0)
    started = time.monotonic()
    result = bench.run_sync(small(), Target(hostile("tokenize-hang"), "stub"), out_root=tmp_path)
    assert time.monotonic() - started < 15
    assert result.status is bench.RunStatus.FAILED and "/tokenize did not answer within 1 s" in result.message


def test_a_stop_ends_a_run_hung_on_its_server_within_seconds(hostile, tmp_path):
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    result = bench.run_sync(small(), Target(hostile("tokenize-hang"), "stub"), out_root=tmp_path, stop=stop)
    assert time.monotonic() - started < 10
    assert result.status is bench.RunStatus.STOPPED
    assert json.loads((result.folder / "run.json").read_text())["status"] == "stopped"


@pytest.mark.parametrize("answer, says", [
    ("[1, 2]", "no list of models"), ('{"data": ["a", "b"]}', "no list of models"), ('{"data": null}', "no list"),
    ('{"data": [{"id": "stub", "max_model_len": "lots"}]}', "not a length"),
])
def test_side_answers_of_the_wrong_shape_are_one_line_and_exit_2(hostile, tmp_path, capsys, answer, says):
    code = engine.main(["bench", "--endpoint", hostile(f"models:{answer}"), "--model", "stub", "--concurrency", "1",
                        "--input-len", "16", "--output-len", "4", "--num-requests", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_first_ctrl_c_or_sigterm_stops_keeps_the_point_in_progress_and_says_stopped(stub, tmp_path, sig):
    url = stub(ttft_ms=20, itl_ms=40)  # a request takes about 0.3 s
    proc = subprocess.Popen([sys.executable, "engine.py", "bench", "--endpoint", url, "--model", "stub",
                             "--concurrency", "2", "--input-len", "16", "--output-len", "8", "--num-requests", "400",
                             "--warmup", "0", "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(json.loads(urllib.request.urlopen(url + "/stub/served").read())) < 4:  # some requests done
        assert time.monotonic() < deadline and proc.poll() is None, "no request finished"
        time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10 and proc.returncode == 1, err
    folder = next(tmp_path.glob("*-ad-hoc"))
    assert json.loads((folder / "run.json").read_text())["status"] == "stopped"
    summary = pd.read_csv(folder / "summary.csv")
    assert len(summary) == 1 and summary["completed"].iloc[0] >= 4 and "stopped" in summary["flags"].iloc[0]
    assert summary["failed"].iloc[0] == 0  # the requests a stop abandoned are no failures of the server
    assert len(pd.read_csv(folder / "requests.csv")) == summary["completed"].iloc[0]
    assert "Traceback" not in err


def test_a_full_disk_fails_the_run_in_one_line_and_leaves_a_consistent_folder(stub, tmp_path, monkeypatch):
    url = stub(ttft_ms=5, itl_ms=2)
    real = Path.write_text
    state = {"csv": 0}

    def full_after_a_point(self, text, *args, **kwargs):
        if self.name.endswith(".csv.tmp"):
            state["csv"] += 1
            if state["csv"] > 4:  # the first point's four tables fit; nothing after
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_after_a_point)
    w = Workload(concurrency=[1, 2, 3], input_len=[16], output_len=4, num_requests=3, warmup_requests=0)
    with pytest.raises(folder_io.StorageError, match="No space left on device"):
        bench.run_sync(bench.run_meta("disk", w), Target(url, "stub"), out_root=tmp_path / "runs")
    (folder,) = (tmp_path / "runs").iterdir()
    assert not list(folder.glob(".*.tmp"))
    summary, requests = pd.read_csv(folder / "summary.csv"), pd.read_csv(folder / "requests.csv")
    assert list(summary["point"]) == [0] and set(requests["point"]) == {0}
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "failed" and "No space left on device" in meta["message"]


@pytest.mark.parametrize("text", ['"hello"', "[1, 2, 3]", "{broken", ""])
def test_a_run_folder_whose_run_json_is_broken_is_listed_and_says_so(tmp_path, text):
    folder = tmp_path / "20260101-000000-x"
    folder.mkdir()
    (folder / "summary.csv").write_text("point\n0\n")
    (folder / "run.json").write_text(text)
    (info,) = coordinator.list_runs(tmp_path)
    assert "run.json unreadable" in info.label


def test_a_capacity_search_whose_level_has_no_value_fails_it_with_the_reason(stub, tmp_path, capsys):
    code = engine.main(["capacity", "--endpoint", stub(ttft_ms=5, itl_ms=2), "--input-len", "16", "--output-len", "4",
                        "--num-requests", "2", "--no-stream", "--slo-ttft-ms", "100", "--upper", "4",
                        "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "does not meet p90 TTFT ≤ 100 ms even at 1 concurrent stream" in out and "has no value" in out
    folder = next(tmp_path.glob("*-ad-hoc"))
    cap = bench.read_capacity(folder)
    assert cap is not None and cap.max_passing is None and cap.probes[0].values_ms["ttft_ms"] is None
    assert "NaN" not in (folder / "capacity.json").read_text()


def _folder(tmp_path: Path, summary: bytes | str | None = None) -> Path:
    folder = tmp_path / "20260101-000000-run"
    folder.mkdir()
    meta = bench.run_meta("run", Workload(concurrency=[1], input_len=[16], output_len=4))
    (folder / "run.json").write_text(meta.model_dump_json())
    if summary is not None:
        (folder / "summary.csv").write_bytes(summary.encode() if isinstance(summary, str) else summary)
    return folder


ROW = "point,input_len,output_len,max_concurrency,request_rate,completed,output_throughput,mean_ttft_ms\n"


@pytest.mark.parametrize("summary, says", [
    (b"\x00\x01\xff\xfe binary", "cannot be read as CSV"),
    (ROW + "0,16,4,1,inf,three,10,5\n", "column completed holds 'three'"),
    (ROW + "0,16,4,1,inf,3,1e308,5\n", "beyond anything measured"),
])
def test_a_damaged_summary_is_refused_naming_the_file_and_what_is_wrong(tmp_path, capsys, summary, says):
    folder = _folder(tmp_path, summary)
    code = engine.main(["report", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "summary.csv" in err and says in err and "Traceback" not in err, err


def test_a_folder_or_a_link_as_summary_and_a_damaged_capacity_json_are_refused(tmp_path, capsys):
    folder = _folder(tmp_path)
    (folder / "summary.csv").mkdir()
    assert engine.main(["report", str(folder)]) == 2 and "not a plain file" in capsys.readouterr().err
    (folder / "summary.csv").rmdir()
    (folder / "summary.csv").symlink_to("/dev/zero")
    assert engine.main(["report", str(folder)]) == 2 and "not a plain file" in capsys.readouterr().err
    (folder / "summary.csv").unlink()
    (folder / "summary.csv").write_text(ROW + "0,16,4,1,inf,3,10,5\n")
    (folder / "capacity.json").write_text('{"plan": 3}')
    code = engine.main(["report", str(folder)])
    assert code == 2 and "capacity.json: damaged" in capsys.readouterr().err


def test_a_summary_missing_optional_columns_still_makes_a_report(tmp_path):
    from showcase import report

    folder = _folder(tmp_path, ROW + "0,16,4,1,inf,3,10,5\n")
    assert report.write(folder).exists()


def test_a_report_into_a_read_only_folder_says_so(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path, ROW + "0,16,4,1,inf,3,10,5\n")
    real = Path.write_text

    def read_only(self, *args, **kwargs):
        if self.name == ".report.html.tmp":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", read_only)
    assert engine.main(["report", str(folder)]) == 2 and "Permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("content, says", [
    ("max_concurrency,input_len,mean_ttft_ms,output_throughput\ninf,16,5,10\n", "positive whole number"),
    ("max_concurrency,input_len,mean_ttft_ms,output_throughput\nnan,16,5,10\n", "positive whole number"),
    ("max_concurrency,input_len,mean_ttft_ms,output_throughput\n", "no rows"),
    (b"max_concurrency\x00\x00", "binary"),
])
def test_an_upload_that_cannot_be_drawn_is_refused_with_the_reason(tmp_path, content, says):
    path = tmp_path / "up.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(coordinator.UploadError, match=says):
        coordinator.load_summary(path, "up")


def test_a_utf16_upload_is_read(tmp_path):
    path = tmp_path / "up.csv"
    path.write_text("max_concurrency,input_len,mean_ttft_ms,output_throughput\n4,16,5,10\n", encoding="utf-16")
    assert coordinator.load_summary(path, "up")["max_concurrency"].tolist() == [4]


def test_visitors_get_no_more_workers_than_cores():
    from showcase.bench.workload import TRUSTED, VISITOR, WorkloadError

    w = Workload(concurrency=[1], input_len=[16], output_len=4, workers=256)
    with pytest.raises(WorkloadError, match="workers: at most"):
        VISITOR.check(w)
    TRUSTED.check(w)


def test_the_endpoint_watcher_survives_any_models_answer(hostile):
    from showcase import sources

    srv = server.VLLMServer(sources.Device("cpu", "cpu"), endpoint=hostile("models:[1, 2]"))
    probes: list[bool] = []
    probe = srv._probe

    def counted(base_url: str, expect_model: str | None) -> bool:
        probes.append(probe(base_url, expect_model))
        return probes[-1]

    srv._probe = counted  # type: ignore[method-assign]
    srv.start()
    deadline = time.monotonic() + 30
    while len(probes) < 2:  # it asked twice, and was answered no list of models each time
        assert time.monotonic() < deadline, "the watcher stopped asking"
        time.sleep(0.05)
    assert not any(probes)
    assert srv.status().state is server.State.STARTING  # not ready, and still watching
    assert any(t.name == "vllm-supervisor" and t.is_alive() for t in threading.enumerate())
    srv.stop()


def test_chat_text_that_is_not_text_or_not_valid_unicode_is_handled():
    from showcase import chat

    assert chat.clean("a\ud800b") == "a?b"
    with pytest.raises(chat.ChatError, match="must be text"):
        chat.clean(["a list"])
    with pytest.raises(chat.ChatError, match="max_tokens must be a whole number from 1"):
        chat.Sampling.of(0.7, 0.9, 10**18)


def test_a_redirect_to_another_port_is_an_answer_not_followed(hostile, tmp_path):
    result = bench.run_sync(small(), Target(hostile("redirect"), "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert row["completed"] == 3 and row["failed"] == 3 and "HTTP 307" in row["errors"], row["errors"]


def test_one_bad_preset_costs_that_preset_only_and_every_bad_one_is_named(tmp_path):
    from showcase import presets

    good = (ROOT / "presets" / "low-latency-chatbot.yaml").read_text()
    (tmp_path / "low-latency-chatbot.yaml").write_text(good)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01")
    (tmp_path / "other.yml").write_text("name: other\n")
    catalogue, broken = presets.load_catalogue(tmp_path)
    assert list(catalogue) == ["low-latency-chatbot"] and set(broken) == {"binary", "other"}
    assert "cannot be read as YAML text" in broken["binary"] and "other.yml" in broken["other"]
    with pytest.raises(presets.PresetError, match="binary.yaml.*other.yml"):
        presets.load_all(tmp_path)


def test_true_is_no_number_of_streams():
    from showcase.bench.workload import WorkloadError, validated

    with pytest.raises(WorkloadError, match="concurrency: \\[True\\] is not a number"):
        validated(Workload, {"concurrency": [True], "input_len": [16], "output_len": 4}, "overrides")


def test_wrong_passwords_are_answered_one_at_a_time_and_logged_in_one_line_each(caplog):
    from concurrent.futures import ThreadPoolExecutor

    from showcase import access

    guard = access.SecretGuard("s3cret", "admin password", wait_s=0.2)
    started = time.monotonic()
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(guard.check, ["a", "b", "c", "d", "e"]))
    assert results == [False] * 5 and time.monotonic() - started >= 0.95  # not 5 guesses in 0.2 s
    quick = time.monotonic()
    assert guard.check("s3cret") and time.monotonic() - quick < 0.1  # the right one never waits
    lines = [r for r in caplog.records if r.name == "showcase.access"]
    assert len(lines) == 5 and all("\n" not in r.getMessage() for r in lines)
    login = access.login_check(("ann", "pw"), wait_s=0)
    assert login("ann", "pw") and not login("ann", "wrong") and not login("ann\0pw", "")


def test_a_server_paused_for_longer_than_the_old_deadline_is_waited_for_and_the_run_goes_on(stub, tmp_path,
                                                                                             monkeypatch):
    url = stub(ttft_ms=5, itl_ms=5)
    proc = stub.procs[-1]
    w = Workload(concurrency=[1], input_len=[16], output_len=20, num_requests=30, warmup_requests=0)
    # The watcher's own rule on a quicker clock: the same checks, each a fraction of the time.
    monkeypatch.setattr(api, "HEALTH_TIMEOUT_S", 0.5)
    monkeypatch.setattr(bench, "HEALTH_EVERY_S", 0.2)
    answers: list[bool | str | None] = []
    health = api.ServerAPI.health

    async def watched(self: api.ServerAPI) -> bool | str | None:
        answers.append(await health(self))
        return answers[-1]

    monkeypatch.setattr(api.ServerAPI, "health", watched)

    def silent_in_a_row() -> int:
        return len(answers) - max((i + 1 for i, a in enumerate(answers) if a != "silent"), default=0)

    def pause() -> None:
        while len(json.loads(urllib.request.urlopen(url + "/stub/served").read())) < 3:  # mid-point
            time.sleep(0.05)
        proc.send_signal(signal.SIGSTOP)
        # The old rule called a server dead after HEALTH_MISSES checks in a row without an answer.
        while silent_in_a_row() <= bench.HEALTH_MISSES:
            time.sleep(0.05)
        proc.send_signal(signal.SIGCONT)

    pauser = threading.Thread(target=pause, daemon=True)
    pauser.start()
    result = bench.run_sync(bench.run_meta("paused", w), Target(url, "stub"), out_root=tmp_path)
    row = result.summary.iloc[0]
    assert result.status is bench.RunStatus.COMPLETED, result.message
    assert row["completed"] == 30 and "server_died" not in str(row["flags"])
    assert not pauser.is_alive() and answers.count("silent") > bench.HEALTH_MISSES  # the pause did outlast it


def test_the_runs_picker_names_runs_by_folder_and_refuses_any_other_path(tmp_path):
    folder = _folder(tmp_path, ROW + "0,16,4,1,inf,3,10,5\n")
    assert coordinator.run_folder(tmp_path, folder.name) == folder
    for name in ("/etc", "../x", "..", "", str(folder), "gone"):
        with pytest.raises(coordinator.RunNotFound):
            coordinator.run_folder(tmp_path, name)


def test_a_run_of_100000_requests_and_a_long_timeline_still_draw(tmp_path):
    import numpy as np

    from showcase import charts

    n = 100_000
    requests = pd.DataFrame({"point": np.arange(n) % 4, "warmup": False, "ttft_ms": np.linspace(1, 100, n),
                             "e2el_ms": np.linspace(10, 1000, n)})
    summary = pd.DataFrame({"point": range(4), "max_concurrency": [1, 2, 4, 8], "input_len": 16,
                            "request_rate": math.inf})
    spec = charts.latency_distribution(requests, summary).to_dict()
    assert len(json.dumps(spec)) < 200_000  # five numbers a box, not a row a request
    timeline = pd.DataFrame({"t_s": np.arange(20_000) * 0.5, "point": 0, "kv_cache_usage": 0.5, "running": 1,
                             "waiting": 0})
    charts.timeline_chart(timeline).to_dict()  # within Altair's row limit


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_ends_a_run_whose_requests_never_answer_on_one_worker_or_several(hostile, tmp_path, workers):
    stop = threading.Event()
    threading.Timer(2.0, stop.set).start()
    started = time.monotonic()
    result = bench.run_sync(small(concurrency=[4], num_requests=8, workers=workers),
                            Target(hostile("chat-hang"), "stub"), out_root=tmp_path, stop=stop)
    assert time.monotonic() - started < 20
    assert result.status is bench.RunStatus.STOPPED
    row = result.summary.iloc[0]
    assert row["failed"] == 0 and "stopped" in row["flags"]  # abandoned, not failed by the server
