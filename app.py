"""The Gradio app: UI wiring only. Every callback is a thin adapter over an engine call.

Launch with `./run.sh app` (see `--help`). The UI is served at once; the vLLM server loads
behind it and the status panel follows it by itself.
"""

from __future__ import annotations

import argparse
import html
import os
import signal
import sys

import gradio as gr

import engine
import models


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
    return p.parse_args(argv)


def make_server(args: argparse.Namespace) -> engine.VLLMServer:
    """The server handle the app serves from; launched in the background, not waited for."""
    device = models.detect_device()
    if args.endpoint:
        server = engine.VLLMServer(device, endpoint=args.endpoint, api_key=args.api_key)
        server.start()
        return server
    source = models.resolve(args.model, args.weights, device)
    server = engine.VLLMServer(device, source)
    server.start(engine.default_settings(source, device))
    return server


STATE_BADGE = {
    engine.State.STARTING: "🟡 starting",
    engine.State.READY: "🟢 ready",
    engine.State.FAILED: "🔴 failed",
    engine.State.STOPPED: "⚪ stopped",
}


def status_markdown(status: engine.Status) -> str:
    lines = [f"**Server:** {STATE_BADGE[status.state]} — {html.escape(status.message)}",
             f"**Model:** `{status.model}` · **Device:** {status.device}"]
    if status.settings:
        s = status.settings
        lines.append(f"**Settings:** max_model_len {s.max_model_len or 'auto'}, max_num_seqs "
                     f"{s.max_num_seqs or 'auto'}, dtype {s.dtype}, load_format {s.load_format}")
    return "  \n".join(lines)


def warning_markdown(status: engine.Status) -> str:
    return f"⚠️ **{status.warning}**" if status.warning else ""


def log_text(status: engine.Status) -> str:
    if status.state is engine.State.READY:
        return ""
    return "\n".join(status.log_tail[-12:])


def build_demo(server: engine.VLLMServer) -> gr.Blocks:
    def refresh():
        st = server.status()
        return status_markdown(st), warning_markdown(st), gr.update(value=log_text(st), visible=bool(log_text(st)))

    with gr.Blocks(title="vLLM showcase") as demo:
        gr.Markdown("# vLLM showcase\nChat with the model, and measure honestly how fast it serves.")
        banner = gr.Markdown(elem_id="model-warning")
        status = gr.Markdown(elem_id="server-status")
        log = gr.Textbox(label="Last lines of the vLLM log", lines=8, max_lines=12, visible=False,
                         elem_id="server-log")
        timer = gr.Timer(1.0)
        timer.tick(refresh, outputs=[status, banner, log], show_progress="hidden", queue=False)
        demo.load(refresh, outputs=[status, banner, log], queue=False)
    return demo


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        server = make_server(args)
    except (models.ModelSourceError, engine.EngineError) as exc:
        raise SystemExit(f"error: {exc}")
    # SIGTERM (a service manager, `kill`) exits through atexit, which stops vLLM; SIGKILL is
    # covered by the server's parent-death signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo = build_demo(server)
    demo.queue(default_concurrency_limit=None).launch(
        server_name=args.host, server_port=args.port, share=args.share,
    )


if __name__ == "__main__":
    main()
