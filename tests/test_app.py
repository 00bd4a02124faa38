"""The app through gradio_client, against the launched app and the real vLLM (CPU) server."""

from __future__ import annotations

import json
import time

import openai
import pandas as pd
import pytest
from conftest import ADMIN, server_metric
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from showcase.settings import ServerSettings

SMALL = json.dumps({"concurrency": [1, 2], "input_len": [64], "output_len": 8, "num_requests": 3,
                    "warmup_requests": 0})


# gradio_client's default read timeout is 5 s. While vLLM generates, it takes both cores of a CI
# machine, and the app and these clients share one process (and its GIL), so a request can wait
# longer than that without anything being wrong. The tests' own deadlines are the checks.
HTTP = {"timeout": 60}


def connect(url: str, **kw) -> Client:
    return Client(url, verbose=False, httpx_kwargs=HTTP, **kw)


@pytest.fixture
def client(app_url):
    c = connect(app_url)
    yield c
    c.close()


def test_chat_streams_a_reply(client):
    job = client.submit("Hello there", "", 24, 0.7, api_name="/chat")
    partials = list(job)
    assert len(partials) > 1 and len(partials[-1]) > len(partials[0])  # it grew in steps
    assert job.outputs()[-1] == partials[-1] and partials[-1].strip()


def test_stop_ends_the_request_on_the_server(client, vllm_server):
    # A 3000-token reply takes the CPU smoke model about a minute; after stop, the server must stop
    # generating at once. (This vLLM build does not count client disconnects as finished_reason=abort.)
    job = client.submit("Tell me a long story", "", 3000, 0.7, api_name="/chat")
    for _ in job:  # wait until tokens flow, then stop
        break
    assert server_metric(vllm_server.base_url, "vllm:num_requests_running") == 1
    job.cancel()
    deadline = time.monotonic() + 10
    while server_metric(vllm_server.base_url, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the server kept generating after stop"
        time.sleep(0.2)
    assert server_metric(vllm_server.base_url, "vllm:num_requests_waiting") == 0  # nor queued again
    # One more request of one token, after it: the server's count grows by that token alone.
    generated = server_metric(vllm_server.base_url, "vllm:generation_tokens_total")
    openai.OpenAI(base_url=vllm_server.base_url + "/v1", api_key=vllm_server.api_key).completions.create(
        model=vllm_server.served_model_name, prompt="Hi", max_tokens=1)
    while server_metric(vllm_server.base_url, "vllm:generation_tokens_total") < generated + 1:
        assert time.monotonic() < deadline + 30, "the server never counted the one-token request"
        time.sleep(0.1)
    assert server_metric(vllm_server.base_url, "vllm:generation_tokens_total") == generated + 1


def test_a_small_preset_run_returns_its_csv(client):
    summary, csv_path = client.predict("article-concurrency-sweep", SMALL, ADMIN, api_name="/run_benchmark")
    table = pd.read_csv(csv_path)
    assert list(table["max_concurrency"]) == [1, 2] and (table["completed"] == 3).all()
    assert (table["mean_output_tokens"] == 8).all() and table["mean_ttft_ms"].gt(0).all()
    assert summary["data"] and len(summary["data"]) == 2


def test_an_aa_experiment_through_the_api_returns_its_experiment_json(client):
    one = json.dumps({"concurrency": [2], "input_len": [64], "output_len": 8, "num_requests": 4})
    exp, path = client.predict("aa:article-concurrency-sweep", one, 2, ADMIN, api_name="/run_experiment")
    assert exp["aa"] and exp["done"] and exp["repeats"] == 2 and sorted(exp["order"]) == ["A1", "A1", "A2", "A2"]
    assert path.endswith("experiment.json")
    assert exp["metrics"]["mean_ttft_ms"]["n_a"] == 2 and "A/A experiment" in exp["note"]
    with pytest.raises(Exception, match="at least 2"):
        client.predict("aa:article-concurrency-sweep", one, 1, ADMIN, api_name="/run_experiment")
    with pytest.raises(Exception, match="runs as it is"):
        client.predict("exp-output-cap", one, 2, ADMIN, api_name="/run_experiment")


def test_a_second_benchmark_while_one_runs_is_refused(client, app_url, vllm_server):
    long_run = json.dumps({"concurrency": [1], "input_len": [64], "output_len": 64, "num_requests": 40})  # ~45 s
    first = client.submit("article-concurrency-sweep", long_run, ADMIN, api_name="/run_benchmark")
    deadline = time.monotonic() + 120
    while server_metric(vllm_server.base_url, "vllm:num_requests_running") < 1:  # its requests flow
        assert time.monotonic() < deadline and not first.done(), "the first benchmark never started"
        time.sleep(0.2)
    other = connect(app_url)
    with pytest.raises(Exception, match="already running"):
        other.predict("article-concurrency-sweep", SMALL, ADMIN, api_name="/run_benchmark")
    assert other.predict("Still there?", "", 8, 0.7, api_name="/chat").strip()  # the chat stays usable
    assert not first.done()
    other.close()
    first.result(timeout=300)


def test_admin_actions_need_the_admin_password(client):
    with pytest.raises(Exception, match="admin password"):
        client.predict("article-concurrency-sweep", SMALL, "wrong", api_name="/run_benchmark")
    with pytest.raises(Exception, match="admin password"):
        client.predict("article-concurrency-sweep", SMALL, "", api_name="/run_benchmark")


def test_bad_workload_edits_come_back_as_clear_errors(client):
    with pytest.raises(Exception, match="concurrency"):
        client.predict("article-concurrency-sweep", json.dumps({"concurrency": [0]}), ADMIN, api_name="/run_benchmark")
    with pytest.raises(Exception, match="exceeds the server's max_model_len"):
        client.predict("article-concurrency-sweep", json.dumps({"input_len": [4090], "num_requests": 1}), ADMIN,
                       api_name="/run_benchmark")


@pytest.mark.parametrize("overrides", ["[1, 2]", "5", '"text"', "null"])
def test_overrides_that_are_not_an_object_are_refused_with_the_reason(client, overrides):
    with pytest.raises(Exception, match="overrides must be a JSON object of workload fields"):
        client.predict("article-concurrency-sweep", overrides, ADMIN, api_name="/run_benchmark")


@pytest.mark.parametrize("max_tokens, temperature, says", [
    # JSON has no NaN or infinity: a client sends them as text, or as out-of-range numbers.
    (16, "NaN", "temperature must be between 0 and 2"), (16, 9.0, "temperature must be between 0 and 2"),
    ("Infinity", 0.7, "max_tokens must be a whole number"), (0, 0.7, "max_tokens must be a whole number"),
    (16, "warm", "must be numbers"),
])
def test_chat_parameters_out_of_range_are_refused_with_the_reason(client, max_tokens, temperature, says):
    with pytest.raises(Exception, match=says):
        client.predict("hi", "", max_tokens, temperature, api_name="/chat")


def test_a_prompt_longer_than_the_context_is_a_clear_message(client):
    with pytest.raises(Exception, match="maximum context length|max_model_len|too long"):
        client.predict("word " * 5000, "", 16, 0.7, api_name="/chat")


def test_auth_protects_the_whole_app(vllm_server, tmp_path):
    import app as app_module
    from showcase import coordinator, presets, server

    demo = app_module.build_demo(vllm_server, coordinator.BenchmarkCoordinator(vllm_server, runs_dir=tmp_path),
                                 presets.load_all())
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=server.free_port(), auth=("ann", "pw"), quiet=True)
    try:
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            connect(url)
        with pytest.raises(ValueError, match="Could not login"):
            connect(url, auth=("ann", "wrong"))
        ok = connect(url, auth=("ann", "pw"))
        assert "/chat" in ok.view_api(return_format="dict")["named_endpoints"]
        ok.close()
    finally:
        demo.close()


def test_find_capacity_starts_the_presets_search_with_the_price_given(tmp_path):
    # The button's callback over a recording coordinator: the chat preset's levels become users,
    # its search is by users, and the price field reaches the run.
    from types import SimpleNamespace

    import app as app_module
    from showcase import coordinator, presets, views

    started = []
    coord = SimpleNamespace(start=lambda *a: started.append(a),
                            snapshot=lambda: coordinator.Snapshot(True, "chat-users", coordinator.Phase.RUNNING, None,
                                                                  "", None, None))
    ctx = app_module.Context(None, coord, presets.load_all(), None, views.ServedModel(None, ""), None)  # type: ignore[arg-type]
    app_module.start(ctx, "chat-users", "1, 2", "32", 16, 0, True, 1, 2.5, None, "", search=True)
    app_module.start(ctx, "low-latency-chatbot", "1", "32", 16, 4, True, 3, None, None, "")
    trace = tmp_path / "mine.jsonl"  # an uploaded trace replaces the preset's prompts, at its own pace
    trace.write_text('{"timestamp": 0, "input_length": 50, "output_length": 5}\n')
    app_module.start(ctx, "low-latency-chatbot", "", "32", None, 0, True, 1, None, str(trace), "")
    (p1, overrides1, search1, price1, limits1), (p2, overrides2, search2, price2, _), (_, overrides3, *_) = started
    assert limits1.who == "visitors of the app"  # no admin password: whoever reaches the app
    assert p1.name == "chat-users" and overrides1["users"] == [1, 2] and search1 == {"by": "users"} and price1 == 2.5
    assert overrides2["concurrency"] == [1] and search2 is None and price2 is None and overrides2["repeats"] == 3
    assert overrides3["trace"] == str(trace) and overrides3["input_len"] is None and overrides3["concurrency"] is None
    assert p2.with_workload(**overrides3).workload.points()[0].trace == str(trace)
    nonsense = tmp_path / "notes.csv"
    nonsense.write_text("when,what\nmonday,lunch\n")
    with pytest.raises(Exception, match="no prompt field; it has when, what"):  # gr.Error, before anything starts
        app_module.start(ctx, "low-latency-chatbot", "1", "32", 16, 4, True, 1, None, str(nonsense), "")


def test_find_capacity_takes_its_percentile_targets_failed_share_and_upper_from_the_tab():
    from types import SimpleNamespace

    import app as app_module
    from showcase import coordinator, forms, presets, views
    from showcase.bench.workload import WorkloadError

    started = []
    coord = SimpleNamespace(start=lambda *a, **k: started.append((a, k)),
                            snapshot=lambda: coordinator.Snapshot(True, "x", coordinator.Phase.RUNNING, None,
                                                                  "", None, None))
    ctx = app_module.Context(None, coord, presets.load_all(), None, views.ServedModel(None, ""), None)  # type: ignore[arg-type]
    app_module.find_capacity(ctx, "low-latency-chatbot", "1", "32", 16, 4, True, 2, None, None, 99, 0.05, 64, 400,
                             None, None, "")
    (p, overrides, search, _price, _), kwargs = started[0]
    assert search == {"by": "concurrency", "percentile": 99.0, "max_failed_share": 0.05, "upper": 64}
    assert kwargs["slos"] == {"ttft_ms": 400.0, "tpot_ms": None, "e2el_ms": None} and overrides["repeats"] == 2
    with pytest.raises(WorkloadError, match="Highest level probed: give a whole number"):
        forms.search_for(p, None, None, 2.5)


def test_a_wrong_admin_password_is_one_line_in_the_log_not_a_traceback(stub, tmp_path, capfd, caplog):
    from test_coordinator import FakeServer

    import app as app_module
    from showcase import coordinator, presets, server, sources

    base = ServerSettings(model="/m", served_model_name="stub", max_model_len=4096)
    srv = FakeServer(stub(), sources.Device("cpu", "cpu"), base, tmp_path / "logs")
    demo = app_module.build_demo(srv, coordinator.BenchmarkCoordinator(srv, runs_dir=tmp_path), presets.load_all(),
                                 admin_password="right")
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=server.free_port(), quiet=True)
    try:
        client = Client(url, verbose=False)
        for _ in range(2):
            with pytest.raises(Exception, match="needs the admin password"):
                client.predict("low-latency-chatbot", "{}", "wrong", api_name="/run_benchmark")
    finally:
        demo.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    assert [r.getMessage() for r in caplog.records if r.name == "showcase.access"] == [
        "wrong admin password (1 so far)", "wrong admin password (2 so far)"]


def test_the_run_selector_follows_the_runs_own_messages_and_lists_the_runs_once_for_each(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import app as app_module
    from showcase import coordinator, views
    from showcase.bench.run import Progress, RunStatus

    folder = tmp_path / "20261201-000000-p"
    listed: list[int] = []

    def run_choices(ctx: object) -> list[tuple[str, str]]:
        listed.append(1)
        return [("p", folder.name)]

    monkeypatch.setattr(app_module, "run_choices", run_choices)

    def snap(written: int, running: bool = True) -> coordinator.Snapshot:
        progress = Progress(point=written + 1, points=3, done=1, total=4, failed=0, tokens_per_s=None, folder=folder,
                            written=written)
        return coordinator.Snapshot(running, "p", coordinator.Phase.RUNNING, progress, "", folder,
                                    None if running else RunStatus.COMPLETED)

    states = [snap(0), snap(0), snap(1), snap(1), snap(1), snap(2), snap(2, running=False), snap(2, running=False)]
    now = [states[0]]
    ctx = app_module.Context(None, SimpleNamespace(snapshot=lambda: now[0]), {}, None,  # type: ignore[arg-type]
                             views.ServedModel(None, ""), None)
    seen, followed = "", []
    for state in states:
        now[0] = state
        _, seen, update = app_module.tick(ctx, seen)
        followed.append(isinstance(update, dict) and update.get("value") == [folder.name])
    # Listed when a point was written (1, 2) and when the run ended; nothing before its first point.
    assert followed == [False, False, True, False, False, True, True, False] and len(listed) == 3
