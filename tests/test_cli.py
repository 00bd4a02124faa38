"""The command line as a careless user meets it: a wrong request is one line and exit status 2."""

from __future__ import annotations

import pytest

import engine

BENCH = ["bench", "--endpoint", "http://127.0.0.1:9", "--model", "m", "--input-len", "64", "--output-len", "8"]
ROOF = ["roofline", "--model-config", "Qwen/Qwen3-4B-Instruct-2507", "--gpu", "A10G"]


def run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = engine.main(argv)
    except SystemExit as exc:  # argparse's own refusals (a letter where a number belongs)
        code = exc.code if isinstance(exc.code, int) else 2
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra", [
    ["--concurrency", "0"], ["--concurrency", "-4"], ["--concurrency", "100000"], ["--concurrency", ","],
    ["--concurrency", "1", "--input-len", "0"], ["--concurrency", "1", "--output-len", "0"],
    ["--concurrency", "1", "--output-len", "9000"], ["--concurrency", "1", "--num-requests", "0"],
    ["--concurrency", "1", "--rate", "0"], ["--concurrency", "1", "--rate", "-1"], ["--concurrency", "1", "--rate", "nan"],
    ["--concurrency", "1", "--rate", "1e-9"], ["--concurrency", "1", "--timeout", "0"],
    ["--concurrency", "1", "--timeout", "nan"], ["--concurrency", "1", "--burstiness", "0"],
    ["--concurrency", "1", "--duration", "0"], ["--concurrency", "1", "--warmup", "-1"],
    ["--concurrency", "1", "--slo-ttft-ms", "-5"], ["--concurrency", ",".join(map(str, range(1, 100)))],
    ["--concurrency", "abc"],
])
def test_a_wrong_workload_is_one_line_and_exit_2_before_anything_runs(capsys, extra):
    code, err = run(capsys, BENCH + extra)
    assert code == 2 and "Traceback" not in err and "error" in err, err


def test_an_out_folder_that_cannot_be_written_is_refused_at_once(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    code, err = run(capsys, BENCH + ["--concurrency", "1", "--out", str(a_file)])
    assert code == 2 and "cannot write run folders there" in err


@pytest.mark.parametrize("extra, says", [
    (["--tp", "0"], "at least 1"), (["--tp", "-2"], "at least 1"), (["--dtype", "int3"], "dtype must be one of"),
])
def test_a_wrong_roofline_request_is_one_line_and_exit_2(capsys, extra, says):
    code, err = run(capsys, ROOF + extra)
    assert code == 2 and says in err and "Traceback" not in err


@pytest.mark.parametrize("content, says", [
    (b"", "cannot read"), (bytes(range(256)) * 4, "cannot read"),
    (b"concurrency,output_throughput\n1,abc\n", "output_throughput must be a number above 0, not 'abc'"),
    (b"concurrency,output_throughput\n1,\n", "not a blank"),
    (b"concurrency,output_throughput\n0,5\n", "concurrency must be a number above 0"),
    (b"concurrency,output_throughput\n-1,5\n", "concurrency must be a number above 0"),
    (b"concurrency,output_throughput,input_len\n1,5,-100\n", "input_len must be a number above 0"),
    (b"concurrency\n1\n", "lacks output_throughput"),
])
def test_a_bad_table_to_check_is_named_not_a_traceback(capsys, tmp_path, content, says):
    table = tmp_path / "t.csv"
    table.write_bytes(content)
    code, err = run(capsys, ROOF + ["--check", str(table)])
    assert code == 2 and says in err, err


def test_a_config_that_is_not_an_object_is_refused(capsys, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text("[1, 2]")
    code, err = run(capsys, ["roofline", "--model-config", str(cfg), "--gpu", "A10G"])
    assert code == 2 and "not a list" in err


def test_an_endpoint_written_as_a_base_url_and_no_model_name_are_understood(stub, tmp_path, capsys):
    url = stub(ttft_ms=5, itl_ms=2)
    code = engine.main(["bench", "--endpoint", url + "/v1/", "--concurrency", "1", "--input-len", "32",
                        "--output-len", "4", "--num-requests", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "completed: all points ran" in out  # the stub serves one model, "stub"


def test_a_run_whose_every_request_failed_says_so(stub, tmp_path, capsys):
    url = stub(ttft_ms=5, itl_ms=2, break_after=1)
    code = engine.main(["bench", "--endpoint", url, "--model", "stub", "--concurrency", "1", "--input-len", "32",
                        "--output-len", "4", "--num-requests", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "all points ran" not in out and "no request completed" in out


def test_sigterm_stops_a_run_and_its_files_say_stopped(stub, tmp_path):
    import json
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from showcase import ROOT

    url = stub(ttft_ms=5, itl_ms=5)
    proc = subprocess.Popen([sys.executable, "engine.py", "bench", "--endpoint", url, "--model", "stub",
                             "--concurrency", "1", "--input-len", "32", "--output-len", "8", "--num-requests", "2000",
                             "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("*/run.json")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "no run"
        time.sleep(0.1)
    while len(json.loads(urllib.request.urlopen(url + "/stub/served").read())) < 5:  # some requests done
        assert time.monotonic() < deadline and proc.poll() is None, "no request was served"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    info = json.loads(next(tmp_path.glob("*/run.json")).read_text())
    assert info["status"] == "stopped" and "stopped" in out and "Traceback" not in err


@pytest.mark.parametrize("extra, says", [
    (["--concurrency", "1"], "at least one SLO"),
    (["--concurrency", "1", "--slo-ttft-ms", "100", "--by", "users"], "search by users"),
    (["--concurrency", "1", "--slo-ttft-ms", "100", "--percentile", "0"], "percentile"),
    (["--concurrency", "1", "--slo-ttft-ms", "100", "--upper", "0"], "upper"),
    (["--concurrency", "1", "--slo-ttft-ms", "100", "--max-failed-share", "1.5"], "max_failed_share"),
    (["--users", "1", "--slo-ttft-ms", "100", "--by", "users", "--num-requests", "5"], "leave --num-requests out"),
    (["--users", "1", "--slo-ttft-ms", "100", "--by", "users", "--turns", "0"], "turns"),
    (["--users", "1", "--slo-ttft-ms", "100", "--by", "users", "--rate", "2"], "chat users set their own pace"),
    (["--concurrency", "1", "--slo-ttft-ms", "100", "--price-per-gpu-hour", "-2"], "price"),
])
def test_a_wrong_capacity_search_is_one_line_and_exit_2(capsys, extra, says):
    code, err = run(capsys, ["capacity"] + BENCH[1:] + extra)
    assert code == 2 and says in err and "Traceback" not in err, err


def test_capacity_from_the_command_line_prints_the_answer_and_writes_the_report(stub, tmp_path, capsys):
    url = stub(ttft_ms=10, itl_ms=5, itl_per_stream_ms=6)  # p90 TPOT ≤ 32 ms up to 5 streams (29 ms; 35 at 6)
    code = engine.main(["capacity", "--endpoint", url, "--input-len", "32", "--output-len", "16",
                        "--num-requests", "8", "--warmup", "0", "--slo-tpot-ms", "32", "--upper", "32",
                        "--price-per-gpu-hour", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "serves up to 5 concurrent streams with p90 TPOT ≤ 32 ms; at 6" in out
    assert "per million output tokens" in out
    folder = next(tmp_path.glob("*-ad-hoc"))
    assert engine.main(["report", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "report.html")
    page = (folder / "report.html").read_text()
    assert "serves up to 5 concurrent streams" in page and "vegaEmbed" in page


def test_a_report_of_a_folder_that_is_no_run_is_refused(capsys, tmp_path):
    code, err = run(capsys, ["report", str(tmp_path)])
    assert code == 2 and "not a run folder" in err
