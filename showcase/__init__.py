"""The showcase's library: everything behind `app.py` (the web UI) and `engine.py` (the command line).

    server.py       the vLLM process: typed settings, command line, lifecycle, restarts
    sources.py      where weights come from (smoke model, dummy weights, folder, hub); the device
    cores.py        without a GPU: vLLM's cores and the load generator's
    processes.py    the watchdog, stopping a process group, why a process exited
    measure.py      this device measured: copy bandwidth and matmul throughput
    presets.py      presets: server settings, workload and SLOs, strictly validated
    prepare.py      a preset plus a person's edits into a run: settings, points, SLOs, metadata
    roofline.py     physical bounds, the article's numbers and their verdicts, pre-flight
    chat.py         one streamed chat reply, its timings, and the chat history's operations
    coordinator.py  the app's one benchmark slot, earlier runs and uploaded summaries
    views.py        what the app's panels, tables and charts show, as text and DataFrames
    forms.py        what is typed into the Benchmark tab (and its uploaded traffic) as workload edits
    charts.py       Altair charts from those DataFrames
    report.py       one self-contained HTML report per run
    errors.py       the one base class of what a user can get wrong
    bench/          a benchmark run: workload and points, prompts files and traces, the
                    prompts a point sends, load generator (and its worker processes), samplers,
                    metrics, the capacity search, run folder, the run in a process of its own,
                    and agreement with vLLM's own client

Nothing here imports Gradio, app.py or engine.py.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
PRESET_DIR = ROOT / "presets"
RUNS_DIR = ROOT / "runs"


def client_version() -> str:
    """This code's commit (from .git, without running git), for a run's metadata; "unknown" outside a checkout."""
    try:
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        ref = ROOT / ".git" / head[5:] if head.startswith("ref: ") else None
        if ref is not None and ref.exists():
            commit = ref.read_text().strip()
        elif ref is not None:  # a ref packed into .git/packed-refs
            lines = (ROOT / ".git" / "packed-refs").read_text().splitlines()
            commit = next((ln.split()[0] for ln in lines if ln.endswith(" " + head[5:])), "")
        else:
            commit = head
        return f"vllm-showcase {commit[:12]}" if len(commit) >= 12 else "vllm-showcase unknown"
    except OSError:
        return "vllm-showcase unknown"
