"""The Gradio app: UI wiring only. Every callback is a thin adapter over an engine call.

Launch with `./run.sh app` (see `--help`). The UI is served at once; the vLLM server loads
behind it and the status panel follows it by itself. Engine errors become messages here, and
nowhere else.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import gradio as gr
import pandas as pd

import bench
import charts
import chat
import engine
import models
import presets
import roofline
import runs

CATALOGUE = presets.load_all()
DEFAULT_PRESET = "article-concurrency-sweep"


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
    p.add_argument("--share", action="store_true", help="a public link for stakeholders")
    p.add_argument("--auth", default=os.environ.get("SHOWCASE_AUTH"), help="USER:PASS to open the app")
    p.add_argument("--admin-password", default=os.environ.get("SHOWCASE_ADMIN_PASSWORD"),
                   help="needed to start or stop benchmarks and restart the server (random when shared)")
    return p.parse_args(argv)


def make_server(args: argparse.Namespace) -> engine.VLLMServer:
    """The server handle the app serves from; launched in the background, not waited for."""
    device = models.detect_device()
    if args.endpoint:
        server = engine.VLLMServer(device, endpoint=args.endpoint, api_key=args.api_key)
        server.start()
        return server
    source = models.resolve(args.model, args.weights, device)
    if source.warning:
        print(f"NOTE: {source.warning}", flush=True)
    server = engine.VLLMServer(device, source)
    server.start(engine.default_settings(source, device))
    return server


# -- status ------------------------------------------------------------------------------------------------

STATE_BADGE = {engine.State.STARTING: "🟡 starting", engine.State.READY: "🟢 ready",
               engine.State.FAILED: "🔴 failed", engine.State.STOPPED: "⚪ stopped"}


def status_markdown(status: engine.Status) -> str:
    lines = [f"**Server:** {STATE_BADGE[status.state]} — {html.escape(status.message)}",
             f"**Model:** `{status.model}` · **Device:** {status.device}"]
    if status.settings:
        s = status.settings
        lines.append(f"**Settings:** max_model_len {s.max_model_len or 'auto'}, max_num_seqs "
                     f"{s.max_num_seqs or 'auto'}, tensor_parallel_size {s.tensor_parallel_size}, dtype {s.dtype}, "
                     f"load_format {s.load_format}")
    return "  \n".join(lines)


def log_text(status: engine.Status) -> str:
    return "" if status.state is engine.State.READY else "\n".join(status.log_tail[-12:])


# -- chat ----------------------------------------------------------------------------------------------------


def note(text: str) -> dict:
    """A line under an answer (stats or an error); messages with metadata are never sent to the model."""
    return {"role": "assistant", "content": "", "metadata": {"title": text}}


def make_chat(server: engine.VLLMServer):
    async def respond(history: list[dict], system: str, temperature: float, top_p: float, max_tokens: int):
        history = list(history)
        try:
            base = server.require_ready()
        except engine.ServerNotReady as exc:
            yield history + [note(f"⚠️ {exc}")]
            return
        sampling = chat.Sampling(system, temperature, top_p, int(max_tokens))
        messages = chat.to_openai(history, system)
        history.append({"role": "assistant", "content": ""})
        try:
            async for text, stats in chat.stream_reply(base, server.api_key, server.served_model_name, messages,
                                                       sampling):
                history[-1] = {"role": "assistant", "content": text}
                if stats is not None:
                    history.append(note(f"⏱ {stats.line()}"))
                yield history
        except chat.ChatError as exc:
            if not history[-1]["content"]:
                history.pop()
            yield history + [note(f"⚠️ {exc}")]

    def add_user(message: str, history: list[dict]):
        if not message.strip():
            return gr.update(), history
        return "", list(history) + [{"role": "user", "content": message}]

    def last_user_index(history: list[dict]) -> int:
        return max((i for i, m in enumerate(history) if m["role"] == "user" and not m.get("metadata")), default=-1)

    def retry(history: list[dict]):
        i = last_user_index(history)
        return history[: i + 1] if i >= 0 else history

    def undo(history: list[dict]):
        i = last_user_index(history)
        if i < 0:
            return history, ""
        return history[:i], chat.text_of(history[i]["content"])

    async def api_chat(message: str, system_prompt: str = "", max_tokens: int = 256,
                       temperature: float = 0.7) -> AsyncIterator[str]:
        """One message in, the reply out (streamed)."""
        try:
            base = server.require_ready()
            messages = chat.to_openai([{"role": "user", "content": message}], system_prompt)
            async for text, _ in chat.stream_reply(base, server.api_key, server.served_model_name, messages,
                                                   chat.Sampling(system_prompt, temperature, 0.9, int(max_tokens))):
                yield text
        except (engine.ServerNotReady, chat.ChatError) as exc:
            raise gr.Error(str(exc)) from exc

    return respond, add_user, retry, undo, api_chat


# -- benchmark -------------------------------------------------------------------------------------------------


def parse_levels(text: str, field: str, kind=int) -> list:
    try:
        values = [kind(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise gr.Error(f"{field}: give numbers separated by commas, like 1, 4, 8") from None
    if not values:
        raise gr.Error(f"{field}: give at least one value")
    return values


def presets_table() -> pd.DataFrame:
    rows = []
    for p in CATALOGUE.values():
        s = p.server.model_dump(exclude_unset=True)
        w = p.workload
        rows.append({
            "preset": p.name, "concurrency": ", ".join(map(str, w.concurrency)),
            "prompt tokens": ", ".join(map(str, w.input_len)), "output tokens": w.output_len,
            "requests/point": w.num_requests, "streaming": w.stream,
            "server settings": ", ".join(f"{k}={v}" for k, v in s.items()),
            "SLOs (ms)": ", ".join(f"{k}≤{v:g}" for k, v in p.slos.model_dump(exclude_none=True).items()) or "—",
            "source": p.source,
        })
    return pd.DataFrame(rows)


def preset_markdown(p: presets.Preset, server: engine.VLLMServer) -> str:
    text = f"**{p.title}** — {p.description}  \n*Source:* {p.source}"
    if server.source is not None and server.source.is_smoke and p.cpu is not None:
        text += f"  \n⚠️ *{p.cpu.note}*"
    if server.endpoint:
        text += "  \n*Attached endpoint: the preset's server settings are not applied.*"
    return text


def reference_tables(conc: pd.DataFrame, length: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The judged article tables, with the columns shown in the app."""
    conc = conc[["concurrency", "mean_ttft_ms", "request_throughput", "output_throughput", "bound_output_throughput",
                 "verdict", "factor"]]
    length = length[["input_len", "mean_ttft_ms", "throughput", "bound_min_ttft_ms", "bound_output_throughput",
                     "bound_total_throughput", "verdict", "factor"]]
    return conc, length


def progress_markdown(snap: runs.Snapshot) -> str:
    if snap.running:
        p = snap.progress
        head = f"⏳ **{snap.preset}** is running ({snap.phase})"
        if p is not None:
            total = f" of {p.total}" if p.total else ""
            rate = f" · {p.tokens_per_s:,.0f} output tokens/s so far" if not math.isnan(p.tokens_per_s) else ""
            fail = f" · {p.failed} failed" if p.failed else ""
            head += f": point {p.point} of {p.points}, {p.done}{total} requests done{rate}{fail}"
            if p.message:
                head += f" · {p.message}"
        return head
    if snap.status:
        icon = {"completed": "✅", "stopped": "⏹", "server_died": "💥", "failed": "❌"}.get(snap.status, "")
        return f"{icon} Last run: **{snap.preset}** — {snap.status}: {html.escape(snap.message)}"
    return snap.message


SHOWN_COLUMNS = {
    "point": "point", "max_concurrency": "concurrency", "request_rate": "rate (req/s)", "input_len": "prompt",
    "output_len": "output", "completed": "done", "failed": "failed", "output_throughput": "output tok/s",
    "request_throughput": "req/s", "mean_ttft_ms": "mean TTFT ms", "p99_ttft_ms": "p99 TTFT ms",
    "mean_tpot_ms": "mean TPOT ms", "p99_itl_ms": "p99 ITL ms", "mean_e2el_ms": "mean E2E ms", "goodput": "goodput",
    "flags": "flags",
}


def shown_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's key columns, rounded, with short headers; the CSV download has all of them."""
    if summary.empty:
        return pd.DataFrame(columns=list(SHOWN_COLUMNS.values()))
    cols = [c for c in SHOWN_COLUMNS if c in summary.columns]
    out = summary[cols].rename(columns=SHOWN_COLUMNS).round(1)
    out["point"] = out["point"] + 1
    return out


def load_views(folders: list[Path], uploads: list[str] | None, g: roofline.GPU, shape: roofline.ModelShape,
               ref_conc: pd.DataFrame, ref_len: pd.DataFrame):
    """Charts, the summary table and downloads for the selected runs (the first is the main one).

    `shape` is the model whose physical limit is drawn; `ref_*` the article's judged rows as series.
    """
    measured, main = [], (pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    for i, folder in enumerate(folders):
        summary, requests, timeline = bench.read_tables(folder)
        if i == 0:
            main = (summary, requests, timeline)
        if not summary.empty:
            measured.append(summary.assign(series=folder.name))
    for path in uploads or []:
        try:
            measured.append(runs.load_summary(Path(path), f"uploaded: {Path(path).name}"))
        except engine.EngineError as exc:
            gr.Warning(str(exc))
    measured_df = pd.concat(measured, ignore_index=True) if measured else pd.DataFrame()
    r = roofline.Roofline(shape, g)
    summary = main[0]
    one_len = int(summary["input_len"].iloc[0]) if not summary.empty and summary["input_len"].nunique() == 1 else 1024
    out_len = int(summary["output_len"].iloc[0]) if not summary.empty else 512
    levels = sorted({1, 32, *(measured_df["max_concurrency"].dropna().astype(int) if not measured_df.empty else [])})
    lengths = sorted({1024, 262144, *(measured_df["input_len"].dropna().astype(int) if not measured_df.empty else [])})
    conc_chart = charts.concurrency_chart(measured_df, ref_conc, roofline.limit_by_concurrency(r, levels, one_len, out_len))
    len_chart = charts.input_length_chart(measured_df, ref_len, roofline.limit_by_input(r, lengths, out_len, None))
    files = [str(folders[0] / n) for n in ("summary.csv", "requests.csv", "run.json") if folders and (folders[0] / n).exists()]
    return (conc_chart, len_chart, charts.latency_distribution(main[1], summary), charts.timeline_chart(main[2]),
            shown_summary(summary), files or None)


# -- the app ---------------------------------------------------------------------------------------------------


def build_demo(server: engine.VLLMServer, coord: runs.BenchmarkCoordinator, admin_password: str | None = None) -> gr.Blocks:
    respond, add_user, retry, undo, api_chat = make_chat(server)
    chat_limit = (server.settings.max_num_seqs if server.settings and server.settings.max_num_seqs else 64)
    gpu_names = list(roofline.known_gpus())
    own_gpu = runs.gpu_of(server.device)
    default_gpu = own_gpu.name if own_gpu else roofline.article()["stated_gpu"]
    article_shape = roofline.ModelShape.load(roofline.article()["model"])
    limit_shape = runs.limit_shape(server)

    def require_admin(password: str) -> None:
        if admin_password is not None and not secrets.compare_digest(password or "", admin_password):
            raise gr.Error("This needs the admin password: a shared link can chat but cannot start, stop or "
                           "restart anything.")

    def refresh_status():
        st = server.status()
        banner = f"⚠️ **{st.warning}**" if st.warning else ""
        log = log_text(st)
        return status_markdown(st), banner, gr.update(value=log, visible=bool(log))

    def on_preset(name: str):
        p = runs.effective_preset(CATALOGUE[name], server)
        w = p.workload
        return (preset_markdown(p, server), ", ".join(map(str, w.concurrency)), ", ".join(map(str, w.input_len)),
                w.output_len, w.num_requests or 0, w.stream)

    def overrides_from(conc: str, inlen: str, outlen: float, nreq: float, stream: bool) -> dict:
        return {"concurrency": parse_levels(conc, "Concurrency levels"),
                "input_len": parse_levels(inlen, "Prompt lengths"), "output_len": int(outlen or 0),
                "num_requests": int(nreq or 0), "stream": bool(stream)}

    def start(name: str, conc: str, inlen: str, outlen: float, nreq: float, stream: bool, password: str):
        require_admin(password)
        if name not in CATALOGUE:
            raise gr.Error(f"Unknown preset {name!r}.")
        try:
            coord.start(CATALOGUE[name], overrides_from(conc, inlen, outlen, nreq, stream))
        except (presets.PresetError, engine.EngineError) as exc:
            raise gr.Error(str(exc)) from exc
        return progress_markdown(coord.snapshot())

    def stop(password: str):
        require_admin(password)
        coord.stop()
        return "⏹ Stopping after the requests in flight…"

    def tick(seen: str):
        snap = coord.snapshot()
        folder = snap.progress.folder if snap.progress and snap.progress.folder else snap.folder
        key = f"{folder}|{snap.progress.point if snap.progress else ''}|{snap.running}|{snap.status}"
        if key == seen or folder is None:
            return progress_markdown(snap), seen, gr.skip()
        choices = run_choices()
        if str(folder) not in {value for _, value in choices}:  # listed once its first point is written
            return progress_markdown(snap), seen, gr.skip()
        return progress_markdown(snap), key, gr.update(value=[str(folder)], choices=choices)

    def run_choices() -> list[tuple[str, str]]:
        return [(r.label, str(r.folder)) for r in runs.list_runs(coord.runs_dir)]

    def show(selected: list[str] | None, uploads: list[str] | None, gpu_name: str):
        g = roofline.gpu(gpu_name)
        # The article's numbers are judged for the article's model, once; the limit line is the served model's.
        judged = roofline.article_tables(article_shape, g)
        views = load_views([Path(f) for f in (selected or [])], uploads, g, limit_shape,
                           *roofline.reference_series(*judged))
        return (*views, *reference_tables(*judged))

    def api_run_benchmark(preset: str, overrides: str, admin: str):
        require_admin(admin)
        try:
            changes = json.loads(overrides or "{}")
        except ValueError as exc:
            raise gr.Error(f"overrides must be a JSON object: {exc}") from exc
        if preset not in CATALOGUE:
            raise gr.Error(f"Unknown preset {preset!r}; known: {', '.join(CATALOGUE)}")
        try:
            coord.start(CATALOGUE[preset], changes)  # merged into the preset's workload and validated there
        except (presets.PresetError, engine.EngineError) as exc:
            raise gr.Error(str(exc)) from exc
        snap = runs.wait_idle(coord, 24 * 3600)
        if snap.folder is None or not (snap.folder / "summary.csv").exists():
            raise gr.Error(f"The benchmark ended without results: {snap.message}")
        return pd.read_csv(snap.folder / "summary.csv"), str(snap.folder / "summary.csv")

    with gr.Blocks(title="vLLM showcase") as demo:
        gr.Markdown("# vLLM showcase\nChat with the model, and measure honestly how fast it serves.")
        banner = gr.Markdown(elem_id="model-warning")
        status = gr.Markdown(elem_id="server-status")
        log = gr.Textbox(label="Last lines of the vLLM log", lines=8, max_lines=12, visible=False, elem_id="server-log")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
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
            with gr.Tab("Benchmark", id="benchmark"):
                with gr.Row():
                    preset_dd = gr.Dropdown([(p.title, n) for n, p in CATALOGUE.items()], value=DEFAULT_PRESET,
                                            label="Preset", scale=2, elem_id="preset")
                    gpu_dd = gr.Dropdown(gpu_names, value=default_gpu, label="Physical limit for GPU", scale=1)
                preset_info = gr.Markdown()
                with gr.Row():
                    conc = gr.Textbox(label="Concurrency levels", elem_id="w-concurrency")
                    inlen = gr.Textbox(label="Prompt lengths (tokens)", elem_id="w-input-len")
                    outlen = gr.Number(label="Output tokens", precision=0, elem_id="w-output-len")
                    nreq = gr.Number(label="Requests per point", precision=0, elem_id="w-num-requests")
                    stream = gr.Checkbox(label="Streaming")
                with gr.Row():
                    admin = gr.Textbox(label="Admin password", type="password", visible=admin_password is not None,
                                       scale=2)
                    start_btn = gr.Button("Start benchmark", variant="primary", scale=1, elem_id="start")
                    stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="stop")
                progress = gr.Markdown(elem_id="bench-progress")
                with gr.Row():
                    runs_dd = gr.Dropdown(run_choices(), multiselect=True, label="Runs shown (the first is the main "
                                          "one; add earlier runs to compare)", scale=3, elem_id="runs")
                    uploads = gr.File(label="Compare with summary.csv files", file_count="multiple",
                                      file_types=[".csv"], scale=1)
                conc_plot = gr.Plot(label="By concurrency", show_label=False, elem_id="plot-concurrency")
                len_plot = gr.Plot(label="By prompt length", show_label=False, elem_id="plot-input-length")
                dist_plot = gr.Plot(label="Latency distribution", show_label=False)
                timeline_plot = gr.Plot(label="Server timeline", show_label=False)
                summary_df = gr.Dataframe(shown_summary(pd.DataFrame()), label="Summary of the main run (one row "
                                          "per point; all columns in summary.csv; definitions below)", wrap=True,
                                          elem_id="summary")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
                with gr.Accordion("The article's numbers beside the physical limit", open=False):
                    ref = roofline.article()
                    gr.Markdown(f"*Source:* {ref['source']}. *Stated:* {ref['stated_gpu']}, {ref['stated_software']}, "
                                f"{ref['stated_dtype']}.  \n" + "  \n".join(f"- {c}" for c in ref["caveats"]) +
                                "  \nBounds are for the GPU chosen above; unknown lengths are taken at their most "
                                "generous. `factor`: times over the physical limit.")
                    ref_conc = gr.Dataframe(label="Concurrency table (512 output tokens)")
                    ref_len = gr.Dataframe(label="Input-length table (512 output tokens)")
                with gr.Accordion("All presets", open=False):
                    gr.Dataframe(presets_table(), wrap=True)
                with gr.Accordion("Definitions", open=False):
                    gr.Markdown(DEFINITIONS)
        with gr.Column(visible=False):  # the /run_benchmark API: stable names for gradio_client
            api_preset, api_overrides, api_admin = gr.Textbox(), gr.Textbox(), gr.Textbox()
            api_summary, api_file = gr.Dataframe(), gr.File()
            api_btn = gr.Button()
        seen = gr.State("")

        status_timer = gr.Timer(1.0)
        status_timer.tick(refresh_status, outputs=[status, banner, log], show_progress="hidden", queue=False,
                          api_visibility="private")
        bench_timer = gr.Timer(1.0)
        bench_timer.tick(tick, inputs=seen, outputs=[progress, seen, runs_dd], show_progress="hidden",
                         api_visibility="private")
        demo.load(refresh_status, outputs=[status, banner, log], queue=False, api_visibility="private")
        demo.load(on_preset, preset_dd, [preset_info, conc, inlen, outlen, nreq, stream], api_visibility="private")
        views = [conc_plot, len_plot, dist_plot, timeline_plot, summary_df, downloads, ref_conc, ref_len]
        demo.load(show, [runs_dd, uploads, gpu_dd], views, api_visibility="private")

        chat_inputs = [chatbot, system, temperature, top_p, max_tokens]
        submitted = msg.submit(add_user, [msg, chatbot], [msg, chatbot], queue=False, api_visibility="private").then(
            respond, chat_inputs, chatbot, concurrency_limit=chat_limit, api_visibility="private")
        clicked = send.click(add_user, [msg, chatbot], [msg, chatbot], queue=False, api_visibility="private").then(
            respond, chat_inputs, chatbot, concurrency_limit=chat_limit, api_visibility="private")
        halt.click(None, cancels=[submitted, clicked])
        chatbot.retry(retry, chatbot, chatbot, queue=False, api_visibility="private").then(
            respond, chat_inputs, chatbot, concurrency_limit=chat_limit, api_visibility="private")
        chatbot.undo(undo, chatbot, [chatbot, msg], queue=False, api_visibility="private")
        gr.api(api_chat, api_name="chat", concurrency_limit=chat_limit)

        preset_dd.change(on_preset, preset_dd, [preset_info, conc, inlen, outlen, nreq, stream],
                         api_visibility="private")
        start_btn.click(start, [preset_dd, conc, inlen, outlen, nreq, stream, admin], progress,
                        concurrency_id="benchmark", api_visibility="private")
        stop_btn.click(stop, admin, progress, api_visibility="private")
        for trigger in (runs_dd.change, uploads.change, gpu_dd.change):
            trigger(show, [runs_dd, uploads, gpu_dd], views, api_visibility="private")
        api_btn.click(api_run_benchmark, [api_preset, api_overrides, api_admin], [api_summary, api_file],
                      api_name="run_benchmark", concurrency_limit=None)
    return demo


DEFINITIONS = """
- **TTFT**: from sending a request to the first chunk carrying content (a role-only chunk does not count).
- **E2E latency**: from sending to the last content chunk (the whole response without streaming).
- **TPOT**: (E2E − TTFT) / (output tokens − 1). **ITL**: gaps between content chunks, spread over the tokens each carried.
- **Tokens**: from the server's usage, never assumed. **Throughputs**: completed requests and tokens over the point's wall time.
- **Goodput**: requests per second meeting every SLO of the preset.
- **Failed**: only requests the server failed (an HTTP error, an error in the stream, a stream it broke, a time-out). A request lost on an idle connection the server had already closed, before any byte of its answer, is sent once more on a new connection and counted in `retried`.
- **Flags**: `client_bound` (our client used 90 % of a core or more: it, not the server, may have set the pace), `client_starved` (other processes kept our client off the CPU for 5 % of the point or more: its timestamps are late), `short_output`, `input_len_mismatch`, `failures`, `all_failed`, `server_died`, `stopped`.
- **Cores**: without a GPU, vLLM runs on cores of its own and the load generator on the others, so neither takes the other's CPU.
- **Physical limit**: a roofline upper bound from peak memory bandwidth and FLOPS; nothing can be faster. On the CPU smoke model the measured numbers are CPU numbers of a tiny model: compare their shape, not their size.
"""


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        server = make_server(args)
    except (models.ModelSourceError, engine.EngineError) as exc:
        raise SystemExit(f"error: {exc}") from None
    admin = args.admin_password
    if admin is None and (args.share or args.host not in ("127.0.0.1", "localhost")):
        admin = secrets.token_urlsafe(9)
        print(f"Admin password for benchmarks and restarts (set --admin-password to choose one): {admin}", flush=True)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    # SIGTERM (a service manager, `kill`) exits through atexit, which stops vLLM; after SIGKILL
    # the server's watchdog process does it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo = build_demo(server, runs.BenchmarkCoordinator(server), admin)
    demo.queue(default_concurrency_limit=None).launch(
        server_name=args.host, server_port=args.port, share=args.share, auth=auth,
        allowed_paths=[str(bench.RUNS_DIR)], footer_links=["api", "gradio"],
    )


if __name__ == "__main__":
    main()
