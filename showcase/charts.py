"""Charts: one function per chart, pandas DataFrames in, an Altair chart out.

Measured series are solid lines with points; the article's reference numbers are hollow
diamonds, drawn red with their verdict in the tooltip when they exceed the physical limit; the
datasheet bound of the selected GPU is a dashed grey line, the measured bound of the served model
on this device a dotted green one. Log axes get no zero-based marks
(Vega would put zero in the domain). This module knows nothing about where the data came from.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

Chart = alt.TopLevelMixin  # what every function here returns: a chart, layered or not

W, H = 340, 230
TIMELINE_ROWS = 2000  # samples drawn of a run's timeline at most (one every 0.5 s: 16 minutes in full)
LIMIT_COLOR = "#555"
MEASURED_BOUND_COLOR = "#2ca02c"
EXCEEDS_COLOR = "#d62728"


def _empty(text: str) -> alt.Chart:
    return alt.Chart(pd.DataFrame({"t": [text]})).mark_text(size=13, color="#888").encode(text="t:N").properties(
        width=W, height=80)


def _panel(measured: pd.DataFrame, reference: pd.DataFrame, limit: pd.DataFrame, x: str, y: str, x_title: str,
           y_title: str, title: str, log_x: bool = False, detail: str = "") -> alt.LayerChart | alt.Chart:
    xs = alt.Scale(type="log") if log_x else alt.Scale(zero=False)
    ys = alt.Scale(type="log")
    # A log axis ticks at 1, 2, 5 of every decade: short labels, and those that would overlap dropped.
    x_axis = alt.Axis(format="~s", labelOverlap="greedy") if log_x else alt.Axis()
    ax, ay = alt.X(f"{x}:Q", title=x_title, scale=xs, axis=x_axis), alt.Y(f"{y}:Q", title=y_title, scale=ys)
    layers = []
    m = measured.dropna(subset=[x, y]) if not measured.empty and {x, y} <= set(measured.columns) else pd.DataFrame()
    m = m[m[y] > 0] if not m.empty else m
    if not m.empty:
        # One line per series and per value of the other dimension: points of a concurrency sweep
        # share one prompt length, and must not be joined into a vertical line on the length axis.
        m = m.assign(_line=m["series"].astype(str) + " · " + (m[detail].astype(str) if detail in m else ""))
        color = alt.Color("series:N", title="measured", legend=alt.Legend(orient="bottom", labelLimit=400))
        low, high = f"{y}_ci_low", f"{y}_ci_high"
        bars = {low, high} <= set(m.columns) and m[low].notna().any()
        tips = ["series:N", alt.Tooltip(f"{x}:Q", title=x_title), alt.Tooltip(f"{y}:Q", title=y_title, format=",.1f")]
        if bars:
            tips += [alt.Tooltip("repeats:Q"), alt.Tooltip(f"{low}:Q", title="95 % CI from", format=",.1f"),
                     alt.Tooltip(f"{high}:Q", title="95 % CI to", format=",.1f")]
        applied = [alt.Tooltip("mean_in_flight:Q", title="mean in flight", format=",.1f")] \
            if "mean_in_flight" in m.columns and m["mean_in_flight"].notna().any() else []
        layers.append(alt.Chart(m).mark_line(point=True).encode(
            x=ax, y=ay, detail="_line:N", color=color, tooltip=[*tips, *applied, alt.Tooltip("flags:N")]))
        if bars:  # the interval over repeats of each point (none with one repeat)
            # A log axis cannot draw an interval reaching zero or below: it is cut at 1 % of the mean
            # (the tooltip keeps the true bounds).
            e = m[m[low].notna()].assign(_low=lambda d: d[low].clip(lower=d[y] * 0.01))
            layers.append(alt.Chart(e).mark_rule(strokeWidth=2).encode(
                x=ax, y=alt.Y("_low:Q", scale=ys, title=y_title), y2=f"{high}:Q", color=color, tooltip=tips))
    r = reference.dropna(subset=[x, y]) if not reference.empty and {x, y} <= set(reference.columns) else pd.DataFrame()
    if not r.empty:
        layers.append(alt.Chart(r).mark_point(shape="diamond", size=110, filled=False, strokeWidth=2).encode(
            x=ax, y=ay,
            color=alt.condition(alt.datum.verdict == "plausible", alt.value("#1f77b4"), alt.value(EXCEEDS_COLOR)),
            tooltip=[alt.Tooltip("source:N", title="reference"), alt.Tooltip(f"{x}:Q", title=x_title),
                     alt.Tooltip(f"{y}:Q", title=y_title, format=",.1f"), alt.Tooltip("verdict:N"),
                     alt.Tooltip("factor:Q", title="times the limit", format=".1f")],
        ))
    lim = limit.dropna(subset=[x, y]) if not limit.empty and {x, y} <= set(limit.columns) else pd.DataFrame()
    lim = lim[lim[y] > 0] if not lim.empty else lim
    if not lim.empty:
        # The datasheet bound (beside the article's numbers) dashed grey; the measured bound of the
        # served model on this device (beside the measured points) dotted green.
        measured_bound = alt.expr.indexof(alt.datum.label, "measured") == 0
        layers.append(alt.Chart(lim).mark_line().encode(
            x=ax, y=ay,
            detail="label:N",
            color=alt.condition(measured_bound, alt.value(MEASURED_BOUND_COLOR), alt.value(LIMIT_COLOR)),
            strokeDash=alt.condition(measured_bound, alt.value([2, 2]), alt.value([6, 4])),
            tooltip=[alt.Tooltip("label:N", title="bound"), alt.Tooltip(f"{x}:Q", title=x_title),
                     alt.Tooltip(f"{y}:Q", title=y_title, format=",.1f")],
        ))
    if not layers:
        return _empty(f"{title}: no data yet").properties(title=title)
    return alt.layer(*layers).properties(width=W, height=H, title=title)


def _legend_note(reference: pd.DataFrame, limit: pd.DataFrame) -> list[str]:
    notes = []
    if not reference.empty:
        notes.append("◇ article's numbers (red: beyond the physical limit)")
    for label in limit["label"].unique() if not limit.empty else []:
        notes.append(f"{'· · ·' if label.startswith('measured') else '- - -'} {label}")
    return notes or [""]  # a line each: one long line would widen the chart past its panel


def concurrency_chart(measured: pd.DataFrame, reference: pd.DataFrame, limit: pd.DataFrame) -> alt.VConcatChart:
    """TTFT and output tokens/s against concurrency."""
    ttft = _panel(measured, reference, limit, "max_concurrency", "mean_ttft_ms", "concurrency",
                  "mean TTFT (ms)", "Time to first token", detail="input_len")
    tput = _panel(measured, reference, limit, "max_concurrency", "output_throughput", "concurrency",
                  "output tokens/s", "Output throughput", detail="input_len")
    return alt.vconcat(alt.hconcat(ttft, tput)).properties(
        title=alt.Title("By concurrency", subtitle=_legend_note(reference, limit)))


def input_length_chart(measured: pd.DataFrame, reference: pd.DataFrame, limit: pd.DataFrame) -> alt.VConcatChart:
    """TTFT and output tokens/s against prompt length."""
    ttft = _panel(measured, reference, limit, "input_len", "mean_ttft_ms", "prompt tokens", "mean TTFT (ms)",
                  "Time to first token", log_x=True, detail="max_concurrency")
    tput = _panel(measured, reference, limit, "input_len", "output_throughput", "prompt tokens",
                  "output tokens/s", "Output throughput", log_x=True, detail="max_concurrency")
    return alt.vconcat(alt.hconcat(ttft, tput)).properties(
        title=alt.Title("By prompt length", subtitle=_legend_note(reference, limit)))


def latency_distribution(requests: pd.DataFrame, summary: pd.DataFrame) -> alt.Chart:
    """The spread of TTFT and end-to-end latency over the requests of each point."""
    if requests.empty or "e2el_ms" not in requests.columns:
        return _empty("Latency distribution: no data yet")
    df = requests[(~requests["warmup"].astype(bool)) & requests["e2el_ms"].notna()].copy()
    if df.empty:
        return _empty("Latency distribution: no completed request")
    labels = {}
    repeated = "repeat" in summary and bool((summary["repeat"].fillna(0) > 0).any())
    for row in summary.to_dict("records"):
        rate = row.get("request_rate")
        load = f"{rate:g} req/s" if isinstance(rate, float) and rate != float("inf") else f"C={row['max_concurrency']}"
        arm, rep = row.get("arm"), row.get("repeat")
        which = (f"{arm} " if isinstance(arm, str) and arm else "") + (
            f"repeat {int(rep) + 1} " if repeated and isinstance(rep, (int, float)) and math.isfinite(rep) else "")
        labels[row["point"]] = f"{row['point'] + 1}: {which}{load}, in {row['input_len']:g}"
    df["point_label"] = df["point"].map(labels).fillna(df["point"].astype(str))
    long = df.melt(id_vars=["point_label"], value_vars=[c for c in ("ttft_ms", "e2el_ms") if c in df.columns],
                   var_name="metric", value_name="ms").dropna()
    long["metric"] = long["metric"].map({"ttft_ms": "TTFT", "e2el_ms": "end-to-end"})
    # The five numbers of each box, computed here: a run of many requests would otherwise put every
    # request into the chart's data (past Altair's row limit, and megabytes in the page).
    q = long.groupby(["point_label", "metric"], sort=False)["ms"]
    box = pd.DataFrame({"lo": q.min(), "q1": q.quantile(0.25), "median": q.median(), "q3": q.quantile(0.75),
                        "hi": q.max(), "requests": q.size()}).reset_index()
    x = alt.X("point_label:N", title="point", sort=None, axis=alt.Axis(labelAngle=-30))
    color, tips = alt.Color("metric:N", title=None), ["point_label", "metric", "requests",
                                                      *(alt.Tooltip(f"{c}:Q", format=",.1f") for c in
                                                        ("lo", "q1", "median", "q3", "hi"))]
    base = alt.Chart(box).encode(x=x, xOffset="metric:N", color=color, tooltip=tips)
    return alt.layer(
        base.mark_rule().encode(y=alt.Y("lo:Q", title="ms"), y2="hi:Q"),
        base.mark_bar(size=14).encode(y="q1:Q", y2="q3:Q"),
        base.mark_tick(color="white", size=14, thickness=2).encode(y="median:Q"),
    ).properties(width=2 * W, height=H, title="Latency per request, by point (box: quartiles, whiskers: min–max)")


def timeline_chart(timeline: pd.DataFrame) -> alt.VConcatChart | alt.Chart:
    """The server's view during the run: KV-cache use, and running and waiting requests."""
    if timeline.empty or "kv_cache_usage" not in timeline.columns:
        return _empty("Server timeline: no data yet (the server's /metrics during a run)")
    df = timeline.copy()
    if len(df) > TIMELINE_ROWS:  # a long run: every k-th sample, so the chart stays within Altair's row limit
        df = df.iloc[:: -(-len(df) // TIMELINE_ROWS)]
    df["kv_cache_pct"] = df["kv_cache_usage"] * 100
    kv = alt.Chart(df).mark_area(opacity=0.35, line=True).encode(
        x=alt.X("t_s:Q", title="seconds since the run started"), y=alt.Y("kv_cache_pct:Q", title="KV cache used (%)"),
        tooltip=[alt.Tooltip("t_s:Q", format=".1f"), alt.Tooltip("kv_cache_pct:Q", format=".1f"), "point:Q"],
    ).properties(width=2 * W, height=120, title="KV cache")
    queue_cols = [c for c in ("running", "waiting") if c in df.columns]
    queue = alt.Chart(df).transform_fold(queue_cols, as_=["queue", "requests"]).mark_line().encode(
        x=alt.X("t_s:Q", title="seconds since the run started"), y=alt.Y("requests:Q", title="requests"),
        color=alt.Color("queue:N", title=None),
    ).properties(width=2 * W, height=120, title="Running and waiting requests")
    if "prefix_cache_hit_rate" not in df.columns or df["prefix_cache_hit_rate"].isna().all():
        return alt.vconcat(kv, queue)
    df["prefix_cache_hit_pct"] = df["prefix_cache_hit_rate"] * 100
    hits = alt.Chart(df.dropna(subset=["prefix_cache_hit_pct"])).mark_line(point=True).encode(
        x=alt.X("t_s:Q", title="seconds since the run started"),
        y=alt.Y("prefix_cache_hit_pct:Q", title="hit rate (%)", scale=alt.Scale(domain=[0, 100])),
    ).properties(width=2 * W, height=120, title="Prefix cache: prompt tokens found in the cache, between samples")
    return alt.vconcat(kv, queue, hits)


def ttft_by_turn(requests: pd.DataFrame, summary: pd.DataFrame) -> alt.Chart:
    """Chat users: how TTFT moves as conversations grow (median and p90 per turn, a line per point)."""
    if requests.empty or "turn" not in requests.columns or requests["turn"].isna().all() \
            or "ttft_ms" not in requests.columns:
        return _empty("TTFT by turn: no chat-users run selected")
    df = requests[requests["turn"].notna() & requests["ttft_ms"].notna()].copy()
    users = dict(zip(summary.get("point", []), summary.get("max_concurrency", [])))
    df["users"] = df["point"].map(lambda p: f"{p + 1}: {users.get(p, '?')} users")
    order = list(dict.fromkeys(df.sort_values("point")["users"]))
    df["turn"] = df["turn"].astype(int) + 1
    stats = df.groupby(["users", "turn"])["ttft_ms"].agg(median="median", p90=lambda x: x.quantile(0.9)).reset_index()
    long = stats.melt(id_vars=["users", "turn"], value_vars=["median", "p90"], var_name="statistic", value_name="ms")
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("turn:O", title="turn of the conversation"), y=alt.Y("ms:Q", title="TTFT (ms)"),
        color=alt.Color("users:N", title="point", sort=order), strokeDash=alt.StrokeDash("statistic:N", title=None),
        tooltip=["users", "turn", "statistic", alt.Tooltip("ms:Q", format=".1f")],
    ).properties(width=2 * W, height=H, title="TTFT by turn: each turn resends the whole history")


def ttft_by_prompt(requests: pd.DataFrame) -> alt.Chart:
    """Each completed request's TTFT against its prompt's length (the server's count), a colour per
    point: with a prompts file or a trace the lengths vary, and prefill grows with them."""
    needed = {"prompt_tokens", "ttft_ms", "point"}
    if requests.empty or not needed <= set(requests.columns) or requests["ttft_ms"].isna().all():
        return _empty("TTFT by prompt length: no streamed request completed")
    df = requests[requests["ttft_ms"].notna() & ~requests.get("warmup", False).astype(bool)].copy()
    if df["prompt_tokens"].nunique() < 2:
        return _empty("TTFT by prompt length: every prompt had the same length (a prompts file or trace varies them)")
    df["point"] = (df["point"] + 1).astype(str)
    cols = ["point", "prompt_tokens", alt.Tooltip("ttft_ms:Q", format=".1f"), "output_tokens"]
    cols += ["row"] if "row" in df.columns and df["row"].notna().any() else []
    return alt.Chart(df).mark_circle(size=24, opacity=0.6).encode(
        x=alt.X("prompt_tokens:Q", title="prompt tokens (the server's count)"), y=alt.Y("ttft_ms:Q", title="TTFT (ms)"),
        color=alt.Color("point:N", title="point"), tooltip=cols,
    ).properties(width=2 * W, height=H, title="TTFT against prompt length, per request")


TIME_PARTS = [("server_mean_queue_ms", "queued (server)"), ("server_mean_prefill_ms", "prefill (server)"),
              ("server_mean_decode_ms", "decode (server)"), ("server_other_ms", "other (server)"),
              ("outside_ttft_ms", "outside the server (our TTFT − its)")]


def where_time_goes(summary: pd.DataFrame) -> alt.Chart:
    """Per point, a request's mean time split by the server's own histograms (queued, prefill,
    decode, the rest of its E2E) and what lies outside its clock (our mean TTFT − its)."""
    if summary.empty or "server_mean_e2el_ms" not in summary.columns or summary["server_mean_e2el_ms"].isna().all():
        return _empty("Where the time goes: the server exposed no latency histograms (another server, a router: "
                      "--metrics-url)")
    df = summary[summary["server_mean_e2el_ms"].notna()].copy()
    inside = df[["server_mean_queue_ms", "server_mean_prefill_ms", "server_mean_decode_ms"]].fillna(0).sum(axis=1)
    df["server_other_ms"] = (df["server_mean_e2el_ms"] - inside).clip(lower=0)
    df["label"] = [f"{p + 1}: {c:g} streams" if pd.notna(c) else f"{p + 1}" for p, c in
                   zip(df["point"], df.get("max_concurrency", pd.Series([math.nan] * len(df))))]
    long = df.melt(id_vars=["label", "mean_ttft_ms", "server_mean_ttft_ms", "mean_e2el_ms", "server_mean_e2el_ms"],
                   value_vars=[c for c, _ in TIME_PARTS], var_name="part", value_name="ms")
    long["part"] = long["part"].map(dict(TIME_PARTS))
    long = long[long["ms"].notna()]
    order = [name for _, name in TIME_PARTS]
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("label:N", title="point", sort=None), x=alt.X("ms:Q", title="mean ms a request", stack="zero"),
        color=alt.Color("part:N", title=None, sort=order, scale=alt.Scale(domain=order)),
        order=alt.Order("part_order:Q"),
        tooltip=["label", "part", alt.Tooltip("ms:Q", format=".1f"),
                 alt.Tooltip("mean_ttft_ms:Q", title="our mean TTFT ms", format=".1f"),
                 alt.Tooltip("server_mean_ttft_ms:Q", title="server's mean TTFT ms", format=".1f"),
                 alt.Tooltip("mean_e2el_ms:Q", title="our mean E2E ms", format=".1f"),
                 alt.Tooltip("server_mean_e2el_ms:Q", title="server's mean E2E ms", format=".1f")],
    ).transform_calculate(part_order=f"indexof({order!r}, datum.part)").properties(
        width=2 * W, height=max(80, 26 * len(df)),
        title=alt.Title("Where the time goes", subtitle="the server's own histograms (/metrics), and what lies outside "
                        "them: network, HTTP, the API server's work before the engine's clock, our client"))


def capacity_chart(cap) -> alt.HConcatChart | alt.Chart:
    """Each probed level's measured percentile against each SLO's line (a panel per SLO): green
    passed, red failed; the answer marked. `cap`: a `capacity.Capacity`."""
    if cap is None or not cap.probes:
        return _empty("Capacity: no search in the main run")
    from showcase.bench.capacity import NOUNS, SLO_NAMES

    verdicts = alt.Scale(domain=["meets all targets", "misses a target"], range=["#2ca02c", "#d62728"])
    panels = []
    for key, limit in cap.slos.model_dump().items():
        if limit is None:
            continue
        name = f"p{cap.plan.percentile:g} {SLO_NAMES[key]} (ms)"
        df = pd.DataFrame([{"load": pr.load, "ms": pr.values_ms.get(key), "failed share": pr.failed_share,
                            "verdict": "meets all targets" if pr.passed else "misses a target"} for pr in cap.probes])
        x = alt.X("load:Q", title=NOUNS[cap.plan.by])
        layers = [alt.Chart(df).mark_point(filled=True, size=90).encode(
            x=x, y=alt.Y("ms:Q", title=name), color=alt.Color("verdict:N", title=None, scale=verdicts),
            tooltip=["load", alt.Tooltip("ms:Q", format=".1f"), alt.Tooltip("failed share:Q", format=".1%"), "verdict"]),
            alt.Chart(pd.DataFrame([{"ms": limit, "what": f"target {limit:g} ms"}])).mark_rule(
                strokeDash=[6, 4], color=LIMIT_COLOR).encode(y="ms:Q", tooltip=["what"])]
        if cap.max_passing is not None:
            layers.append(alt.Chart(pd.DataFrame([{"load": cap.max_passing, "what": "the answer"}])).mark_rule(
                color="#2ca02c").encode(x="load:Q", tooltip=["what", "load"]))
        panels.append(alt.layer(*layers).properties(width=W, height=H, title=name))
    return alt.hconcat(*panels).properties(title=alt.Title("Capacity search", subtitle=[cap.sentence]))


VERDICT_COLORS = alt.Scale(domain=["better", "worse", "no_difference", "not_measured"],
                           range=["#2ca02c", "#d62728", "#7f7f7f", "#c7c7c7"])


def forest_plot(exp) -> alt.LayerChart | alt.Chart:
    """An experiment's B against A, a row per metric: the relative difference with its interval,
    a zero line, coloured by verdict. `exp`: a `compare.Experiment`."""
    if exp is None or not exp.comparisons:
        return _empty("Experiment: none in the main run" if exp is None else f"Experiment: {exp.note or 'no result'}")
    from showcase.bench.compare import NAMES

    rows = []
    for pair in exp.comparisons:
        for metric, r in pair.metrics.items():
            if r.rel is None or None in r.rel_ci:
                continue
            better = "lower is better" if r.lower_is_better else "higher is better"
            rows.append({"metric": f"{NAMES.get(metric, metric)} ({better})", "arm": f"{pair.b} vs {pair.a}",
                         "rel": r.rel * 100, "low": r.rel_ci[0] * 100, "high": r.rel_ci[1] * 100,
                         "verdict": r.verdict})
    if not rows:
        return _empty("Experiment: no metric measured in both arms with 2 or more repeats")
    df = pd.DataFrame(rows)
    y = alt.Y("metric:N", title=None, sort=None)
    color = alt.Color("verdict:N", scale=VERDICT_COLORS, title="verdict")
    tips = ["arm", "metric", alt.Tooltip("rel:Q", title="difference %", format="+.1f"),
            alt.Tooltip("low:Q", title="95 % CI from %", format="+.1f"),
            alt.Tooltip("high:Q", title="95 % CI to %", format="+.1f"), "verdict"]
    yo = alt.YOffset("arm:N") if df["arm"].nunique() > 1 else alt.Undefined
    bars = alt.Chart(df).mark_rule(strokeWidth=3).encode(
        x=alt.X("low:Q", title=(df["arm"].iloc[0].replace(" vs ", " relative to ") if df["arm"].nunique() == 1
                                else "each arm relative to the first") + " (%), with its 95 % interval over repeats"),
        x2="high:Q", y=y,
        yOffset=yo, color=color, tooltip=tips)
    dots = alt.Chart(df).mark_point(filled=True, size=80).encode(x="rel:Q", y=y, yOffset=yo, color=color,
                                                                tooltip=tips)
    zero = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(color=LIMIT_COLOR, strokeDash=[4, 3]).encode(x="x:Q")
    title = alt.Title("Experiment: " + " vs ".join(a.name for a in exp.arms) + (" (A/A: noise only)" if exp.aa else ""),
                      subtitle=[f"{exp.repeats} repeats an arm, order {' '.join(exp.order)}"])
    return alt.layer(zero, bars, dots).properties(width=2 * W, height=max(120, 28 * len(df)), title=title)
