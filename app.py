"""The Gradio app: layout and wiring only.

Each callback is a module-level function of a few lines over `showcase` (its views, chat and
coordinator), bound to the app's `Context` when it is wired. A `UserError` becomes a message in
the UI in one place (`shown`). Launch with `./run.sh app` (see `--help`): the UI is served at
once; the vLLM server loads behind it and the status panel follows it by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import html
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from showcase import (
    RUNS_DIR,
    access,
    chat,
    coordinator,
    cores,
    forms,
    measure,
    prepare,
    presets,
    roofline,
    server,
    sources,
    views,
)
from showcase import report as html_report
from showcase.bench import traffic
from showcase.bench.folder import read_tables
from showcase.bench.workload import TRUSTED, VISITOR, Allowance
from showcase.coordinator import BenchmarkCoordinator
from showcase.errors import UserError

DEFAULT_PRESET = "article-concurrency-sweep"
# Table headers break between words, never inside one ("conc urre ncy").
CSS = "table th, table th * { word-break: normal !important; overflow-wrap: normal !important; hyphens: none; }"
STATUS_PERIOD_S = 1.0  # the status panel and the benchmark progress refresh this often
RUN_TIMEOUT_S = 24 * 3600  # /run_benchmark waits this long for the run it started


@dataclass(frozen=True)
class Context:
    """What the callbacks work on: the server, the benchmark slot, the presets, the admin password."""

    server: server.ServerHandle
    coord: BenchmarkCoordinator
    catalogue: dict[str, presets.Preset]
    admin_password: str | None
    served: views.ServedModel
    figures: measure.DeviceFigures | None  # this device measured in the background; None when attached

    @functools.cached_property
    def admin_guard(self) -> access.SecretGuard:
        return access.SecretGuard(self.admin_password or "", "admin password")

    def measured_roofline(self):
        result = self.figures.result if self.figures else None
        return views.measured_roofline(self.served, result, self.server.settings.dtype if self.server.settings else "auto")


def refusal(text: str) -> gr.Error:
    """What a user got wrong (or may not do), for the UI: a message, not an error of the app, so
    Gradio logs no traceback for it."""
    return gr.Error(text, print_exception=False)


@contextlib.contextmanager
def shown() -> Iterator[None]:
    """The one place a `UserError` becomes a message in the UI."""
    try:
        yield
    except UserError as exc:  # its text may carry a server's or a file's words: shown as text, not markup
        raise refusal(html.escape(str(exc), quote=False)) from exc


def require_admin(ctx: Context, password: str) -> Allowance:
    """Refuse a wrong admin password; the allowance a run started by this caller is held to (the
    engine's for the admin, the visitors' in an app without an admin password: anyone reaching it)."""
    if ctx.admin_password is not None and not ctx.admin_guard.check(password or ""):
        raise refusal("This needs the admin password: a shared link can chat but cannot start, stop or "
                       "restart anything.")
    return TRUSTED if ctx.admin_password is not None else VISITOR


def preset_of(ctx: Context, name: str) -> presets.Preset:
    if name not in ctx.catalogue:
        raise refusal(f"Unknown preset {name!r}; known: {', '.join(ctx.catalogue)}")
    return ctx.catalogue[name]


# -- callbacks: status and chat ---------------------------------------------------------------------------


def refresh_status(ctx: Context):
    st = ctx.server.status()
    log = views.log_text(st)
    measured = ctx.figures.line() if ctx.figures else ""
    return (views.status_markdown(st, ctx.server.device.note, measured), views.banner(st),
            gr.update(value=log, visible=bool(log)))


async def respond(ctx: Context, history: list[dict], system: str, temperature: float, top_p: float, max_tokens: int):
    try:
        base, sampling = ctx.server.require_ready(), chat.Sampling.of(temperature, top_p, max_tokens)
    except UserError as exc:
        yield chat.with_error(history, str(exc))
        return
    async for shown_history in chat.answer(history, base, ctx.server.api_key, ctx.server.served_model_name, system,
                                           sampling):
        yield shown_history


async def say(ctx: Context, message: str, history: list[dict], system: str, temperature: float, top_p: float,
              max_tokens: int):
    """The message added and answered in one event: one trip through Gradio's queue, not two
    (adding it in an event of its own cost a stakeholder a round trip before the request left)."""
    if not message.strip():
        yield gr.skip(), history
        return
    history = chat.add_user(history, message)
    yield "", history
    async for shown_history in respond(ctx, history, system, temperature, top_p, max_tokens):
        yield gr.skip(), shown_history


async def api_chat(ctx: Context, message: str, system_prompt: str = "", max_tokens: int = 256,
                   temperature: float = 0.7) -> AsyncIterator[str]:
    """One message in, the reply out (streamed)."""
    with shown():
        sampling = chat.Sampling.of(temperature, 0.9, max_tokens)
        base = ctx.server.require_ready()
        messages = chat.to_openai([{"role": "user", "content": chat.clean(message)}], system_prompt)
        async for text, _, _ in chat.stream_reply(base, ctx.server.api_key, ctx.server.served_model_name, messages,
                                               sampling):
            yield text


def typed_chat_api(ctx: Context):
    """`api_chat` bound to `ctx` with its own signature: gr.api reads the parameters' type hints."""

    async def chat(message: str, system_prompt: str = "", max_tokens: int = 256,
                   temperature: float = 0.7) -> AsyncIterator[str]:
        """One message in, the reply out (streamed)."""
        async for text in api_chat(ctx, message, system_prompt, max_tokens, temperature):
            yield text

    return chat


# -- callbacks: benchmark ------------------------------------------------------------------------------------


def on_preset(ctx: Context, name: str):
    srv = ctx.server
    p = preset_of(ctx, name).for_cpu() if coordinator.is_smoke(srv) else preset_of(ctx, name)
    return (views.preset_markdown(p, coordinator.is_smoke(srv), srv.endpoint is not None), *forms.workload_fields(p))


def start(ctx: Context, name: str, conc: str, inlen: str, outlen: float, nreq: float, stream: bool, repeats, price,
          upload: str | None, password: str, search: bool = False):
    """Start the preset as edited (with the uploaded traffic, if any); `search`: as a capacity search
    (the preset's own, or by its kind of level)."""
    allowance = require_admin(ctx, password)
    p = preset_of(ctx, name)
    with shown():
        ctx.coord.start(p, forms.form_overrides(p, conc, inlen, outlen, nreq, stream, repeats, upload),
                        forms.search_for(p) if search else None, forms.price_from(price), allowance)
    return views.progress_markdown(ctx.coord.snapshot())


def find_capacity(ctx: Context, name: str, conc: str, inlen: str, outlen: float, nreq: float, stream: bool, repeats,
                  price, upload: str | None, percentile, failed_share, upper, ttft_ms, tpot_ms, e2el_ms, password: str):
    """The preset as a capacity search, with the search's fields and SLOs as given (empty: the preset's)."""
    allowance = require_admin(ctx, password)
    p = preset_of(ctx, name)
    with shown():
        ctx.coord.start(p, forms.form_overrides(p, conc, inlen, outlen, nreq, stream, repeats, upload),
                        forms.search_for(p, percentile, failed_share, upper), forms.price_from(price), allowance,
                        slos=forms.slos_from(ttft_ms, tpot_ms, e2el_ms))
    return views.progress_markdown(ctx.coord.snapshot())


def start_experiment(ctx: Context, choice: str, main_preset: str, conc: str, inlen: str, outlen: float, nreq: float,
                     stream: bool, upload: str | None, endpoint_a: str, endpoint_b: str, repeats, password: str):
    """An experiment preset as it is, or an A/A of the preset selected above, or two endpoints, on
    its workload as edited above."""
    allowance = require_admin(ctx, password)
    with shown():
        endpoints = forms.endpoints_from(endpoint_a, endpoint_b)
        aa = choice == forms.AA_CHOICE
        p = preset_of(ctx, main_preset if endpoints or aa else choice)
        edits = forms.form_overrides(p, conc, inlen, outlen, nreq, stream, upload=upload) if endpoints or aa else None
        ctx.coord.start_experiment(p, forms.repeats_from(repeats, 2), endpoints, aa and not endpoints, allowance,
                                   overrides=edits)
    return views.progress_markdown(ctx.coord.snapshot())


def _overrides(text: str) -> dict:
    """Workload overrides from the API: a JSON object of workload fields."""
    try:
        changes = json.loads(text or "{}")
    except ValueError as exc:
        raise refusal(f"overrides must be a JSON object: {exc}") from exc
    except RecursionError:
        raise refusal("overrides are nested too deeply: give a flat JSON object of workload fields") from None
    if not isinstance(changes, dict):
        raise refusal(f"overrides must be a JSON object of workload fields, like {{\"concurrency\": [1, 2]}}, "
                       f"not a {type(changes).__name__}")
    return changes


def api_run_experiment(ctx: Context, preset: str, overrides: str, repeats: float, admin: str):
    """Run an experiment preset (or "aa:NAME", an A/A of any preset, with workload overrides as a JSON
    object), wait for it, return experiment.json."""
    allowance = require_admin(ctx, admin)
    aa = preset.startswith("aa:")
    changes = _overrides(overrides)
    if changes and not aa:
        raise refusal("an experiment preset runs as it is; workload overrides apply to an A/A (aa:NAME)")
    with shown():
        ctx.coord.start_experiment(preset_of(ctx, preset[3:] if aa else preset), forms.repeats_from(repeats, 2),
                                   aa=aa, allowance=allowance, overrides=changes or None)
    snap = ctx.coord.wait(RUN_TIMEOUT_S)
    path = snap.folder / "experiment.json" if snap.folder is not None else None
    if path is None or not path.exists():
        raise refusal(f"The experiment ended without results: {snap.message}")
    return json.loads(path.read_text()), str(path)


def report(ctx: Context, selected: list[str] | None, gpu_name: str):
    """The main run's report.html, written now, to download."""
    if not selected:
        raise refusal("Select a run first: its report is made from its folder.")
    folder = run_folders(ctx, selected[:1])[0]
    with shown():
        return str(html_report.write(folder, roofline.gpu(gpu_name)))


def stop(ctx: Context, password: str):
    require_admin(ctx, password)
    ctx.coord.stop()
    return "⏹ Stopping after the requests in flight…"


def restart_server(ctx: Context, password: str):
    """An admin starts the server again (with its current settings), say after it gave up restarting."""
    require_admin(ctx, password)
    if ctx.coord.snapshot().running:
        raise refusal("A benchmark is running: stop it first, then restart the server.")
    ctx.server.start(ctx.server.settings)
    return "🔄 Restarting the model server; the status above follows it."


def run_choices(ctx: Context) -> list[tuple[str, str]]:
    """The runs picker's choices: each run by its folder's name (the page never carries our paths)."""
    return [(r.label, r.folder.name) for r in coordinator.list_runs(ctx.coord.runs_dir)]


def run_folders(ctx: Context, selected: list[str] | None) -> list[Path]:
    """The runs picked, as folders of the runs folder; a name that is not one of its runs is refused."""
    with shown():
        return [coordinator.run_folder(ctx.coord.runs_dir, name) for name in selected or []]


def tick(ctx: Context, seen: str):
    """The progress line; the run selector follows the run when the run itself says it wrote a
    point (`Progress.written`) or ended: the runs folder is listed then, once, never polled."""
    snap = ctx.coord.snapshot()
    p = snap.progress
    folder = p.folder if p is not None and p.folder else snap.folder
    written = p.written if p is not None else 0
    key = f"{folder}|{written}|{snap.running}|{snap.status}"
    if key == seen or folder is None or (snap.running and written == 0):
        return views.progress_markdown(snap), seen, gr.skip()
    choices = run_choices(ctx)
    if folder.name not in {value for _, value in choices}:  # a run that ended before any point: said once
        return views.progress_markdown(snap), key, gr.skip()
    return views.progress_markdown(snap), key, gr.update(value=[folder.name], choices=choices)


def show(ctx: Context, selected: list[str] | None, uploads: list[str] | None, gpu_name: str):
    with shown():
        v, refused = views.load_views(run_folders(ctx, selected), [Path(u) for u in uploads or []],
                                      roofline.gpu(gpu_name), ctx.served, ctx.measured_roofline(), ctx.coord.runs_dir,
                                      known=ctx.coord.handed_back())
    for reason in refused:
        gr.Warning(html.escape(reason, quote=False))
    return (v.answer, v.capacity, v.experiment, v.forest, v.uncertainty, v.by_concurrency, v.by_input_length,
            v.by_turn, v.by_prompt, v.time_parts, v.latency, v.timeline, v.summary, v.aggregate, v.comparison_note, v.comparison, v.files,
            v.reference_concurrency, v.reference_length)


def api_run_benchmark(ctx: Context, preset: str, overrides: str, admin: str):
    """Start a preset with workload overrides (a JSON object), wait for it, return its summary. The
    object may also hold "slos" (ms) and "capacity" (the search's fields, `{}` for the preset's own or
    its kind of level): a capacity search."""
    allowance = require_admin(ctx, admin)
    changes = _overrides(overrides)
    slos, search = changes.pop("slos", None), changes.pop("capacity", None)
    if not isinstance(slos, (dict, type(None))) or not isinstance(search, (dict, type(None))):
        raise refusal('"slos" and "capacity" must be JSON objects, like {"slos": {"ttft_ms": 500}, "capacity": {}}')
    with shown():
        p = preset_of(ctx, preset)
        ctx.coord.start(p, changes, (forms.search_for(p) | search) if search is not None else None, allowance=allowance,
                        slos=slos)
    snap = ctx.coord.wait(RUN_TIMEOUT_S)
    handed = ctx.coord.handed_back().get(snap.folder.resolve()) if snap.folder is not None else None
    summary = (handed or read_tables(snap.folder))[0] if snap.folder is not None else None
    if snap.folder is None or summary is None or summary.empty:
        raise refusal(f"The benchmark ended without results: {snap.message}")
    return summary, str(snap.folder / "summary.csv")


# -- layout --------------------------------------------------------------------------------------------------


def chat_tab() -> dict:
    chatbot = gr.Chatbot(height=460, buttons=["copy", "copy_all"], elem_id="chatbot",
                         placeholder="Ask the model anything. Under each answer: time to first token, "
                                     "tokens and tokens/s, as measured for that answer.")
    with gr.Row():
        msg = gr.Textbox(placeholder="Type a message…", show_label=False, scale=8, elem_id="chat-input")
        send = gr.Button("Send", variant="primary", scale=1, min_width=80)
        halt = gr.Button("Stop", variant="stop", scale=1, min_width=80)
    with gr.Accordion("Sampling and system prompt", open=False):
        system = gr.Textbox(label="System prompt", value="You are a helpful assistant.", lines=2)
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="temperature")
            top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="top_p")
            max_tokens = gr.Slider(16, 4096, value=512, step=16, label="max_tokens")
    return dict(chatbot=chatbot, msg=msg, send=send, halt=halt, system=system, temperature=temperature,
                top_p=top_p, max_tokens=max_tokens)


def bench_controls(ctx: Context) -> dict:
    own_gpu = prepare.gpu_of(ctx.server.device)
    with gr.Row():
        preset = gr.Dropdown([(p.title, n) for n, p in ctx.catalogue.items()], value=DEFAULT_PRESET, label="Preset",
                             scale=2, elem_id="preset")
        gpu = gr.Dropdown(list(roofline.known_gpus()), value=own_gpu.name if own_gpu else roofline.article().stated_gpu,
                          label="Physical limit for GPU", scale=1, info=ctx.served.note)
    info = gr.Markdown()
    with gr.Row():
        conc = gr.Textbox(label="Concurrency levels (chat presets: users)", elem_id="w-concurrency")
        inlen = gr.Textbox(label="Prompt lengths (tokens)", elem_id="w-input-len",
                           info="a prompts file or trace sets its own")
        outlen = gr.Number(label="Output tokens", precision=0, elem_id="w-output-len")
        nreq = gr.Number(label="Requests per point", precision=0, elem_id="w-num-requests",
                         info="a trace: empty sends all its requests")
        stream = gr.Checkbox(label="Streaming")
        repeats = gr.Number(label="Repeats", value=1, precision=0, minimum=1, elem_id="w-repeats",
                            info="each point this many times, interleaved; 2+ gives intervals")
        price = gr.Number(label="Price per GPU-hour ($)", value=None, info=forms.price_hint(own_gpu), elem_id="w-price")
    traffic_file = gr.File(
        label=f"Your traffic instead of the preset's prompts (admin): a prompts file (JSONL, JSON or CSV with a prompt "
              f"field; chat messages; ShareGPT) or a trace (Mooncake JSONL, Azure CSV); at most "
              f"{traffic.UPLOAD_MAX_BYTES >> 20} MB and {traffic.UPLOAD_MAX_ROWS:,} rows",
        file_types=[".jsonl", ".json", ".csv"], elem_id="traffic-file", height=120)
    with gr.Row():
        admin = gr.Textbox(label="Admin password", type="password", visible=ctx.admin_password is not None, scale=2)
        start_btn = gr.Button("Start benchmark", variant="primary", scale=1, elem_id="start")
        search_btn = gr.Button("Find capacity", variant="primary", scale=1, elem_id="capacity")
        stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="stop")
        restart_btn = gr.Button("Restart server", scale=1, elem_id="restart")
    with gr.Accordion("Capacity search settings (Find capacity; empty: the preset's)", open=False,
                      elem_id="capacity-settings"), gr.Row():
        percentile = gr.Number(label="Percentile judged", value=None, elem_id="c-percentile")
        slo_ttft = gr.Number(label="TTFT target (ms)", value=None, elem_id="c-slo-ttft")
        slo_tpot = gr.Number(label="TPOT target (ms)", value=None, elem_id="c-slo-tpot")
        slo_e2el = gr.Number(label="E2E target (ms)", value=None, elem_id="c-slo-e2el")
        failed_share = gr.Number(label="Failed share allowed (0–1)", value=None, elem_id="c-failed")
        upper = gr.Number(label="Highest level probed", value=None, precision=0, elem_id="c-upper")
    with gr.Accordion("Experiment: is B better than A? (restarts the server for each arm)", open=False,
                      elem_id="experiment-panel"):
        gr.Markdown("Two or more arms on one workload, run in ABBA order, each run a repeat of its arm; for each "
                    "metric B relative to A with its 95 % interval over repeats, and a verdict. An A/A experiment "
                    "(the same arm twice) shows this server's noise: it should say no difference.")
        with gr.Row():
            exp_choice = gr.Dropdown(forms.experiment_choices(ctx.catalogue), value=forms.AA_CHOICE,
                                     label="Experiment (the article's advice as its preset runs it, or an A/A of "
                                           "the workload above, as edited)", scale=2,
                                     elem_id="experiment-choice")
            exp_repeats = gr.Number(label="Repeats of each arm", value=3, precision=0, minimum=2, scale=1,
                                    elem_id="experiment-repeats")
        with gr.Row():
            endpoint_a = gr.Textbox(label="or endpoint A (two deployments; the workload above, as edited)",
                                    placeholder="http://host-a:8000", elem_id="endpoint-a")
            endpoint_b = gr.Textbox(label="endpoint B", placeholder="http://host-b:8000", elem_id="endpoint-b")
            exp_btn = gr.Button("Start experiment", variant="primary", elem_id="start-experiment")
    return dict(preset=preset, gpu=gpu, info=info, conc=conc, inlen=inlen, outlen=outlen, nreq=nreq, stream=stream,
                repeats=repeats, price=price, traffic=traffic_file, admin=admin, start=start_btn, search=search_btn, stop=stop_btn,
                restart=restart_btn, percentile=percentile, failed_share=failed_share, upper=upper, slo_ttft=slo_ttft,
                slo_tpot=slo_tpot, slo_e2el=slo_e2el, exp_choice=exp_choice, exp_repeats=exp_repeats, endpoint_a=endpoint_a,
                endpoint_b=endpoint_b, experiment=exp_btn, progress=gr.Markdown(elem_id="bench-progress"))


def bench_results(ctx: Context) -> dict:
    with gr.Row():
        runs = gr.Dropdown(run_choices(ctx), multiselect=True, label="Runs shown (the first is the main one; add "
                           "earlier runs to compare)", scale=3, elem_id="runs")
        uploads = gr.File(label=f"Compare with summary.csv files (each at most {coordinator.UPLOAD_MAX_MB} MB and "
                          f"{coordinator.UPLOAD_MAX_ROWS:,} rows)", file_count="multiple", file_types=[".csv"], scale=1)
    views_out = [gr.Markdown(elem_id="capacity-answer"),
                 gr.Plot(label="Capacity search", show_label=False, elem_id="plot-capacity"),
                 gr.Markdown(elem_id="experiment-result"),
                 gr.Plot(label="Experiment", show_label=False, elem_id="plot-forest"),
                 gr.Markdown(elem_id="uncertainty"),
                 gr.Plot(label="By concurrency", show_label=False, elem_id="plot-concurrency"),
                 gr.Plot(label="By prompt length", show_label=False, elem_id="plot-input-length"),
                 gr.Plot(label="TTFT by turn", show_label=False, elem_id="plot-turns"),
                 gr.Plot(label="TTFT by prompt length", show_label=False, elem_id="plot-prompt-length"),
                 gr.Plot(label="Where the time goes", show_label=False, elem_id="plot-time-parts"),
                 gr.Plot(label="Latency distribution", show_label=False),
                 gr.Plot(label="Server timeline", show_label=False),
                 gr.Dataframe(views.shown_summary(pd.DataFrame()), label="Summary of the main run (one row per "
                              "point; all columns in summary.csv; definitions below)", wrap=True, elem_id="summary"),
                 gr.Dataframe(label="Over repeats: each setting's mean and 95 % interval (aggregate.csv)", wrap=True,
                              elem_id="aggregate"),
                 gr.Markdown(elem_id="comparison-note"),
                 gr.Dataframe(label="The main run against the others shown", wrap=True, elem_id="comparison"),
                 gr.File(label="Downloads", file_count="multiple", interactive=False)]
    with gr.Row():
        report_btn = gr.Button("Make the report (one HTML file to send)", scale=1, elem_id="make-report")
        report_file = gr.File(label="Report", interactive=False, scale=2, elem_id="report-file")
    with gr.Accordion("The article's numbers beside the physical limit", open=False):
        gr.Markdown(views.reference_markdown())
        views_out += [gr.Dataframe(label="Concurrency table (512 output tokens)"),
                      gr.Dataframe(label="Input-length table (512 output tokens)")]
    with gr.Accordion("All presets", open=False):
        gr.Dataframe(views.presets_table(ctx.catalogue), wrap=True)
    with gr.Accordion("Definitions", open=False):
        gr.Markdown(views.DEFINITIONS)
    return dict(runs=runs, uploads=uploads, views=views_out, report=report_btn, report_file=report_file)


# -- wiring ----------------------------------------------------------------------------------------------------


def wire_chat(ctx: Context, c: dict, chat_limit: int) -> None:
    settings = [c["system"], c["temperature"], c["top_p"], c["max_tokens"]]
    answer = dict(fn=partial(respond, ctx), inputs=[c["chatbot"], *settings], outputs=c["chatbot"],
                  concurrency_limit=chat_limit, api_visibility="private")
    said = dict(fn=partial(say, ctx), inputs=[c["msg"], c["chatbot"], *settings], outputs=[c["msg"], c["chatbot"]],
                concurrency_limit=chat_limit, api_visibility="private")
    private = dict(queue=False, api_visibility="private")
    submitted = c["msg"].submit(**said)
    clicked = c["send"].click(**said)
    c["halt"].click(None, cancels=[submitted, clicked])
    c["chatbot"].retry(chat.retry, c["chatbot"], c["chatbot"], **private).then(**answer)
    c["chatbot"].undo(chat.undo, c["chatbot"], [c["chatbot"], c["msg"]], **private)
    gr.api(typed_chat_api(ctx), api_name="chat", concurrency_limit=chat_limit)


def wire_bench(ctx: Context, b: dict, r: dict) -> None:
    private = dict(api_visibility="private")
    fields = [b["info"], b["conc"], b["inlen"], b["outlen"], b["nreq"], b["stream"]]
    b["preset"].change(partial(on_preset, ctx), b["preset"], fields, **private)
    workload = [b["preset"], b["conc"], b["inlen"], b["outlen"], b["nreq"], b["stream"], b["repeats"], b["price"],
                b["traffic"], b["admin"]]
    b["start"].click(partial(start, ctx), workload, b["progress"], concurrency_id="benchmark", **private)
    capacity = [*workload[:-1], b["percentile"], b["failed_share"], b["upper"], b["slo_ttft"], b["slo_tpot"],
                b["slo_e2el"], b["admin"]]
    b["search"].click(partial(find_capacity, ctx), capacity, b["progress"], concurrency_id="benchmark", **private)
    b["experiment"].click(partial(start_experiment, ctx), [b["exp_choice"], b["preset"], b["conc"], b["inlen"],
                                                            b["outlen"], b["nreq"], b["stream"], b["traffic"],
                                                            b["endpoint_a"],
                                                            b["endpoint_b"], b["exp_repeats"], b["admin"]],
                          b["progress"], concurrency_id="benchmark", **private)
    r["report"].click(partial(report, ctx), [r["runs"], b["gpu"]], r["report_file"], **private)
    b["stop"].click(partial(stop, ctx), b["admin"], b["progress"], **private)
    b["restart"].click(partial(restart_server, ctx), b["admin"], b["progress"], **private)
    seen = gr.State("")
    gr.Timer(STATUS_PERIOD_S).tick(partial(tick, ctx), seen, [b["progress"], seen, r["runs"]],
                                   show_progress="hidden", **private)
    for trigger in (r["runs"].change, r["uploads"].change, b["gpu"].change):
        trigger(partial(show, ctx), [r["runs"], r["uploads"], b["gpu"]], r["views"], **private)
    with gr.Column(visible=False):  # the /run_benchmark API: stable names for gradio_client
        api_in = [gr.Textbox(), gr.Textbox(), gr.Textbox()]
        api_out = [gr.Dataframe(), gr.File()]
        gr.Button().click(partial(api_run_benchmark, ctx), api_in, api_out, api_name="run_benchmark",
                          concurrency_limit=None)
        gr.Button().click(partial(api_run_experiment, ctx), [gr.Textbox(), gr.Textbox(), gr.Number(), gr.Textbox()],
                          [gr.JSON(), gr.File()], api_name="run_experiment", concurrency_limit=None)


def build_demo(srv: server.ServerHandle, coord: BenchmarkCoordinator, catalogue: dict[str, presets.Preset],
               admin_password: str | None = None) -> gr.Blocks:
    ctx = Context(srv, coord, catalogue, admin_password, views.served_model_for(srv), coord.figures)
    chat_limit = srv.settings.max_num_seqs if srv.settings and srv.settings.max_num_seqs else 64
    with gr.Blocks(title="vLLM showcase") as demo:
        gr.Markdown("# vLLM showcase\nChat with the model, and measure honestly how fast it serves.")
        status = [gr.Markdown(elem_id="server-status"), gr.Markdown(elem_id="model-warning"),
                  gr.Textbox(label="Last lines of the vLLM log", lines=8, max_lines=12, visible=False,
                             elem_id="server-log")]
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                c = chat_tab()
            with gr.Tab("Benchmark", id="benchmark"):
                b, r = bench_controls(ctx), bench_results(ctx)
        gr.Timer(STATUS_PERIOD_S).tick(partial(refresh_status, ctx), outputs=status, show_progress="hidden",
                                       queue=False, api_visibility="private")
        demo.load(partial(refresh_status, ctx), outputs=status, queue=False, api_visibility="private")
        demo.load(partial(on_preset, ctx), b["preset"], [b["info"], b["conc"], b["inlen"], b["outlen"], b["nreq"],
                                                         b["stream"]], api_visibility="private")
        demo.load(partial(show, ctx), [r["runs"], r["uploads"], b["gpu"]], r["views"], api_visibility="private")
        wire_chat(ctx, c, chat_limit)
        wire_bench(ctx, b, r)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Chat with and benchmark an LLM served by vLLM.")
    p.add_argument("--model", help="hub id or local folder (default: Qwen/Qwen3-4B-Instruct-2507 on a GPU, "
                   "the CPU smoke model without one)")
    p.add_argument("--weights", choices=("real", "dummy"), default="real",
                   help="dummy: the model's architecture with random weights, nothing downloaded")
    p.add_argument("--endpoint", help="attach to a running OpenAI-compatible server at this URL; launch nothing")
    p.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"), help="API key for --endpoint")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--reasoning-parser", help="launch with vLLM's reasoning parser for a thinking model (e.g. qwen3): "
                   "the chat folds its reasoning into a thinking block")
    p.add_argument("--share", action="store_true", help="a public link for stakeholders")
    p.add_argument("--auth", default=os.environ.get("SHOWCASE_AUTH"), help="USER:PASS to open the app")
    p.add_argument("--admin-password", default=os.environ.get("SHOWCASE_ADMIN_PASSWORD"),
                   help="needed to start or stop benchmarks and restart the server (random when shared)")
    return p.parse_args(argv)


def make_server(args: argparse.Namespace) -> server.VLLMServer:
    """The server the app serves from; launched in the background, not waited for."""
    device = sources.detect_device()
    if device.note:
        print(f"NOTE: {device.note}", flush=True)
    if args.endpoint:
        srv = server.VLLMServer(device, endpoint=args.endpoint, api_key=args.api_key)
        srv.start()
        return srv
    source = sources.resolve(args.model, args.weights, device)
    if source.warning:
        print(f"NOTE: {source.warning}", flush=True)
    srv = server.VLLMServer(device, source)
    settings = server.default_settings(source, device)
    srv.start(dataclasses.replace(settings, reasoning_parser=args.reasoning_parser) if args.reasoning_parser else settings)
    return srv


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if server.port_is_taken(args.port, "127.0.0.1" if args.host == "localhost" else args.host):  # before vLLM starts
        raise SystemExit(f"error: port {args.port} is already in use by another program; choose one with --port.")
    try:
        catalogue, broken = presets.load_catalogue()
        for reason in broken.values():  # the app starts with the others; each bad file is named
            print(f"note: preset skipped: {reason}", flush=True)
        srv = make_server(args)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    if srv.endpoint is None:  # the UI's own work (charts, polling) stays off vLLM-CPU's cores, with the load generator
        print(f"note: the app and its {cores.pin_load_generator(srv.device)}", flush=True)
    admin = args.admin_password
    if admin is None and (args.share or args.host not in ("127.0.0.1", "localhost")):
        admin = secrets.token_urlsafe(9)
        print(f"Admin password for benchmarks and restarts (set --admin-password to choose one): {admin}", flush=True)
    auth = access.login_check(tuple(args.auth.split(":", 1))) if args.auth else None
    # SIGTERM (a service manager, `kill`) exits through atexit, which stops vLLM; after SIGKILL
    # the server's watchdog process does it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    figures = measure.DeviceFigures(srv.device).start() if srv.endpoint is None else None
    demo = build_demo(srv, BenchmarkCoordinator(srv, figures=figures), catalogue, admin)
    demo.queue(default_concurrency_limit=None).launch(
        server_name=args.host, server_port=args.port, share=args.share, auth=auth,
        allowed_paths=[str(RUNS_DIR)], footer_links=["api", "gradio"], css=CSS, max_file_size=f"{max(coordinator.UPLOAD_MAX_MB, traffic.UPLOAD_MAX_BYTES >> 20)}mb",
    )


if __name__ == "__main__":
    main()
