"""One self-contained HTML report per run: `report.html` in the run's folder, to send.

This module owns the report's layout: the answer (a capacity search's sentence, or the headline
figures), the app's own charts (interactive; Vega's scripts inlined, so the file opens offline
and from an e-mail attachment and asks nothing of the network), the summary table, the
article's numbers with their verdicts beside the physical limit, the definitions, and the run's
metadata. What is shown is `views`' decision, as in the app; this module knows nothing about Gradio.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from markdown_it import MarkdownIt

from showcase import roofline, views
from showcase.bench.folder import RunFolderError, read_tables
from showcase.bench.run import RunMeta, read_capacity, read_experiment, read_meta
from showcase.errors import UserError

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 6px; text-align: right; }}
th {{ background: #f5f5f5; }}
.answer {{ font-size: 1.25em; background: #eef7ee; border-left: 4px solid #2ca02c; padding: 0.6em 1em; }}
.chart {{ margin: 1em 0 2em; }}
.meta td {{ text-align: left; }}
</style>
<script type="text/javascript">
// vega-embed with Vega and Vega-Lite, inlined (vl-convert's bundle): nothing is fetched.
{bundle}
</script></head><body>
{body}
<script type="text/javascript">
const specs = {specs};
for (const [id, spec] of Object.entries(specs)) {{
  vegaEmbed("#" + id, spec, {{"actions": false}}).catch(console.error);
}}
</script>
</body></html>
"""


class ReportError(UserError):
    """A folder that is not a run folder."""


def _bundle() -> str:
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    # Its stub asks for a snippet; without one it bundles the libraries alone, which is what is wanted.
    bundle = vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert())  # type: ignore[call-arg]
    return bundle.replace("</script", "<\\/script")


def _headline(summary: pd.DataFrame) -> str:
    """Without a capacity search: the point of highest output throughput, and its latencies."""
    done = summary[summary["completed"] > 0] if not summary.empty else summary
    if done.empty:
        return "No point of this run completed a request."
    best = done.loc[done["output_throughput"].idxmax()]
    load = f"{best['users']:g} chat users" if pd.notna(best.get("users", math.nan)) else (
        f"{best['request_rate']:g} req/s" if math.isfinite(best["request_rate"]) else f"{best['max_concurrency']:g} streams")
    text = (f"Highest output throughput: {best['output_throughput']:,.0f} tokens/s at {load} "
            f"(prompts of {best['input_len']:g} tokens), with mean TTFT {best['mean_ttft_ms']:,.1f} ms and mean TPOT "
            f"{best['mean_tpot_ms']:,.1f} ms")
    cost = best.get("usd_per_m_output_tokens", math.nan)
    return text + (f", at ${cost:,.2f} per million output tokens." if pd.notna(cost) else ".")


def _experiment_headline(exp) -> str:
    """An experiment's answer: the article's claim and what was measured, or the arms compared."""
    arms = " vs ".join(a.name for a in exp.arms)
    if exp.claim is not None:
        return f"Experiment {arms}: the article's advice ({exp.claim.section}) is {exp.claim_verdict} on this machine."
    return f"Experiment {arms}" + (" (A/A: the noise of this server)." if exp.aa else ".")


def _metadata(meta: RunMeta) -> str:
    rows = {"run": meta.preset, "status": f"{meta.status.value} {meta.message}".strip(), "model": meta.model,
            "device": meta.device, "endpoint": meta.endpoint, "vLLM": meta.vllm_version or "unknown",
            "client": meta.client_version or "unknown", "started": meta.started, "finished": meta.finished,
            "server settings": json.dumps(asdict(meta.server_settings)) if meta.server_settings else "not ours to know (attached)",
            "workload": meta.workload.model_dump_json(exclude_none=True) if meta.workload else "",
            "SLOs (ms)": meta.slos.model_dump_json(exclude_none=True),
            "traffic": (f"{meta.traffic.kind} {Path(meta.traffic.path).name}: {meta.traffic.format}, {meta.traffic.rows:,} "
                        f"rows, sha256 {meta.traffic.sha256[:12]}…" if meta.traffic else "synthetic prompts of exact lengths"),
            "price": f"${meta.price.usd_per_gpu_hour:g} per GPU-hour × {meta.price.gpus} GPU" if meta.price else "none given"}
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f'<table class="meta">{cells}</table>'


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="—", float_format=lambda x: f"{x:,.2f}", border=0)


def _served(meta: RunMeta) -> tuple[views.ServedModel, roofline.Roofline | None]:
    """The bounds as the app draws them: the served model's measured bound when the run has one."""
    if meta.bound is None:
        return views.ServedModel(None, "No measured bound: this device was not measured for this run, or the endpoint "
                                 "was attached; the datasheet bound is the article's model on the GPU named."), None
    r = meta.bound
    return views.ServedModel(meta.bound.shape, "The measured bound is the served model on this device's measured "
                                         "bandwidth and compute; the datasheet bound is the article's model on the "
                                         "GPU named."), r


def render(folder: Path, gpu: roofline.GPU | None = None) -> str:
    """The report of the run in `folder` as one HTML page; the physical limit drawn for `gpu`
    (default: the run's own GPU when it names a known one, else the article's stated GPU)."""
    try:
        meta = read_meta(folder)
    except RunFolderError as exc:
        raise ReportError(f"{folder}: not a run folder with a readable run.json ({exc})") from exc
    g = gpu or _gpu_of(meta)
    served, measured_r = _served(meta)
    v, _ = views.load_views([Path(folder)], [], g, served, measured_r)
    charts: dict[str, Any] = {"capacity": v.capacity, "forest": v.forest, "concurrency": v.by_concurrency, "turns": v.by_turn, "length": v.by_input_length,
              "prompt": v.by_prompt, "time": v.time_parts, "latency": v.latency, "timeline": v.timeline}
    cap = read_capacity(folder)
    if cap is None:
        charts.pop("capacity")
    if not v.experiment:
        charts.pop("forest")
    if meta.workload is None or meta.workload.users is None:
        charts.pop("turns")
    if meta.traffic is None:  # synthetic prompts have one length a point: nothing to draw against
        charts.pop("prompt")
    specs = {f"chart-{k}": c.to_dict() for k, c in charts.items()}
    exp = read_experiment(folder)
    answer = views.answer_text(cap) or (_experiment_headline(exp) if exp else _headline(read_tables(folder)[0]))
    md = MarkdownIt()
    body = "".join([
        f"<h1>{html.escape(meta.preset)}: how fast it served</h1>",
        f'<p class="answer">{html.escape(answer)}</p>',
        md.render(v.experiment) if v.experiment else "",
        md.render(v.uncertainty) if v.uncertainty else "",
        f"<p>{html.escape(served.note)} Physical limits are drawn for the {html.escape(g.name)}.</p>",
        *(f'<div class="chart" id="chart-{k}"></div>' for k in charts),
        "<h2>Summary (a row per point)</h2>", _table(v.summary),
        *(["<h2>Over repeats: each setting's mean and 95 % interval</h2>", _table(v.aggregate)]
          if not v.aggregate.empty else []),
        "<h2>The article's numbers beside the physical limit</h2>", md.render(views.reference_markdown()),
        _table(v.reference_concurrency), _table(v.reference_length),
        "<h2>Definitions</h2>", md.render(views.DEFINITIONS),
        "<h2>The run</h2>", _metadata(meta),
    ])
    return PAGE.format(title=html.escape(f"{meta.preset} — vLLM showcase report"), bundle=_bundle(), body=body,
                       specs=json.dumps(specs).replace("</", "<\\/"))


def _gpu_of(meta: RunMeta) -> roofline.GPU:
    try:
        return roofline.gpu(meta.device)
    except roofline.RooflineError:
        return roofline.gpu(roofline.article().stated_gpu)


def write(folder: Path, gpu: roofline.GPU | None = None) -> Path:
    """Write `report.html` into the run folder; its path."""
    path = Path(folder) / "report.html"
    text = render(Path(folder), gpu)
    tmp = path.with_name(".report.html.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
