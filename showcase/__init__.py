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
    charts.py       Altair charts from those DataFrames
    errors.py       the one base class of what a user can get wrong
    bench/          a benchmark run: workload and points, load generator, metrics, run folder,
                    the run in a process of its own, and agreement with vLLM's own client

Nothing here imports Gradio, app.py or engine.py.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
PRESET_DIR = ROOT / "presets"
RUNS_DIR = ROOT / "runs"
