"""The interactive charts of report.html, drawn as inline SVG (no chart library, nothing fetched), and the
data they show (embedded in the page as JSON, so tests and readers can check it against the CSVs).

Every marker carries a tooltip (`data-tip`: the point's numbers and verdicts) and links to its point
record; kvbench/report_assets/report.js shows the tooltips. Pure: returns strings and plain data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from kvbench.analysis import Analysis
from kvbench.deltas import is_true
from kvbench.naming import Ordering
from kvbench.plots import Style
from kvbench.stats import cell_stats

# (data key, table column, axis label, number format)
LINE_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("throughput", "output_tok_s_successful", "Output throughput (tok/s, successful requests)", "{:,.1f}"),
    ("ttft", "ttft_ms_mean", "Mean TTFT (ms)", "{:,.1f}"),
    ("tpot", "tpot_ms_mean", "Mean TPOT (ms)", "{:,.2f}"),
)
WIDTH, HEIGHT = 780, 400
MARGIN = {"left": 78, "right": 190, "top": 40, "bottom": 52}

# Links of one cell: (run, model, scenario, concurrency) -> the point records' hrefs, by repetition.
Links = Callable[[str, str, str, int], list[str]]


def _num(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def _verdicts(rows: pd.DataFrame) -> dict[str, int]:
    if "verdict" not in rows.columns:
        return {}
    counts = rows["verdict"].dropna().astype(str).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


def line_data(result: Analysis, links: Links) -> dict[str, list[dict[str, Any]]]:
    """Per metric: one record per (run, model, scenario, level) of the rows the analysis used: the mean over
    repetitions, its t interval, n, the verdicts of its points and the links to their records."""
    data: dict[str, list[dict[str, Any]]] = {}
    used = result.used
    for key, column, _, _ in LINE_METRICS:
        records: list[dict[str, Any]] = []
        rows = used[used[column].notna()] if not used.empty else used
        cells = cell_stats(rows, metric=column, confidence=result.options.confidence)
        for cell in cells.to_dict("records"):
            mine = rows[
                (rows["run"] == cell["run"])
                & (rows["model"] == cell["model"])
                & (rows["scenario"] == cell["scenario"])
                & (rows["concurrency"] == cell["concurrency"])
            ]
            run, model, scenario = str(cell["run"]), str(cell["model"]), str(cell["scenario"])
            concurrency = int(cell["concurrency"])
            records.append(
                {
                    "run": run,
                    "model": model,
                    "scenario": scenario,
                    "concurrency": concurrency,
                    "mean": _num(cell["mean"]),
                    "ci_low": _num(cell["ci_low"]),
                    "ci_high": _num(cell["ci_high"]),
                    "n": int(cell["n"]),
                    "verdicts": _verdicts(mine),
                    "points": links(run, model, scenario, concurrency),
                }
            )
        data[key] = records
    return data


def heatmap_data(result: Analysis, links: Links) -> list[dict[str, Any]]:
    """Per (run, model, scenario other than the baseline): the peak's change against the baseline."""
    records = []
    for row in result.peaks.to_dict("records"):
        if row["scenario"] == result.baseline:
            continue
        tested = _num(row.get("p_adjusted")) is not None
        concurrency = int(row["optimal_concurrency"])
        records.append(
            {
                "run": str(row["run"]),
                "model": str(row["model"]),
                "scenario": str(row["scenario"]),
                "delta_pct": _num(row.get("delta_vs_baseline_pct")),
                "ci_low_pct": _num(row.get("delta_ci_low_pct")),
                "ci_high_pct": _num(row.get("delta_ci_high_pct")),
                "p_adjusted": _num(row.get("p_adjusted")),
                "significant": bool(is_true(row.get("significant"))) if tested else None,
                "peak_output_tok_s": _num(row.get("peak_output_tok_s")),
                "optimal_concurrency": concurrency,
                "points": links(str(row["run"]), str(row["model"]), str(row["scenario"]), concurrency),
            }
        )
    return records


@dataclass(frozen=True)
class _Scale:
    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return self.start + (value - self.low) / span * (self.end - self.start)


def _ticks(low: float, high: float) -> list[float]:
    return [float(t) for t in MaxNLocator(nbins=6).tick_values(low, high) if low - 1e-9 <= t <= high + 1e-9]


def _tip(lines: Sequence[str]) -> str:
    return escape("\n".join(lines), quote=True)


def _marker(x: float, y: float, colour: str, tip: str, href: str | None, big: bool = False) -> str:
    circle = (
        f'<circle class="marker" cx="{x:.1f}" cy="{y:.1f}" r="{7 if big else 5}" fill="{colour}" '
        f'stroke="{"#000" if big else "#fff"}" stroke-width="{1.5 if big else 1}" data-tip="{tip}"/>'
    )
    return f'<a href="{escape(href, quote=True)}">{circle}</a>' if href else circle


def line_chart(
    records: Sequence[Mapping[str, Any]],
    scenarios: Sequence[str],
    style: Style,
    title: str,
    y_label: str,
    fmt: str,
    chart_id: str,
) -> str:
    """Means against concurrency, one line per scenario, interval whiskers, hoverable linked markers."""
    left, right = MARGIN["left"], WIDTH - MARGIN["right"]
    top, bottom = MARGIN["top"], HEIGHT - MARGIN["bottom"]
    levels = sorted({int(r["concurrency"]) for r in records})
    tops = [v for r in records for v in (r["mean"], r["ci_high"]) if v is not None]
    y_top = max(tops, default=1.0) * 1.1 or 1.0
    x_high = float(max(levels, default=1))
    x = _Scale(-0.02 * x_high, x_high * 1.02, left, right)
    y = _Scale(0.0, y_top, bottom, top)
    parts = [
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(title, quote=True)}">',
        f'<text class="title" x="{left}" y="22">{escape(title)}</text>',
    ]
    for tick in _ticks(0.0, y_top):
        ty = y(tick)
        parts.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick:,.6g}</text>'
        )
    for level in levels:
        tx = x(level)
        parts.append(f'<line class="xtick" x1="{tx:.1f}" x2="{tx:.1f}" y1="{bottom}" y2="{bottom + 5}"/>')
        parts.append(f'<text class="tick" x="{tx:.1f}" y="{bottom + 18}" text-anchor="middle">{level}</text>')
    parts += [
        f'<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>',
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{bottom}"/>',
        f'<text class="label" x="{(left + right) / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
        "Concurrency (concurrent request streams)</text>",
        f'<text class="label" transform="translate(16 {(top + bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for index, scenario in enumerate(scenarios):
        mine = sorted((r for r in records if r["scenario"] == scenario), key=lambda r: r["concurrency"])
        colour = style.colours.get(scenario, "#333")
        points = [(x(r["concurrency"]), y(r["mean"])) for r in mine if r["mean"] is not None]
        group = [f'<g class="series" data-scenario="{escape(scenario, quote=True)}">']
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            group.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for r in mine:
            if r["mean"] is None:
                continue
            px = x(r["concurrency"])
            if r["ci_low"] is not None and r["ci_high"] is not None:
                lo, hi = y(r["ci_low"]), y(r["ci_high"])
                group.append(
                    f'<path class="whisker" d="M{px:.1f},{lo:.1f}V{hi:.1f}M{px - 4:.1f},{lo:.1f}H{px + 4:.1f}'
                    f'M{px - 4:.1f},{hi:.1f}H{px + 4:.1f}" stroke="{colour}"/>'
                )
            interval = (
                f"95 % interval [{_fmt(r['ci_low'], fmt)}, {_fmt(r['ci_high'], fmt)}]"
                if r["ci_low"] is not None
                else "no interval (one repetition or no variation)"
            )
            verdicts = ", ".join(f"{k}: {v}" for k, v in r["verdicts"].items()) or "n/a"
            tip = _tip(
                [
                    f"{scenario} at concurrency {r['concurrency']}",
                    f"mean {_fmt(r['mean'], fmt)} over {r['n']} repetition(s)",
                    interval,
                    f"verdicts: {verdicts}",
                    "click: the point's record",
                ]
            )
            links = r["points"]
            group.append(_marker(px, y(r["mean"]), colour, tip, links[0] if links else None))
        group.append("</g>")
        parts += group
        ly = top + 8 + index * 20
        lx = right + 16
        parts.append(
            f'<line x1="{lx}" x2="{lx + 22}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"/>'
        )
        parts.append(f'<text class="legend" x="{lx + 28}" y="{ly + 4}">{escape(scenario)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _heat_colour(value: float, limit: float) -> str:
    cmap = matplotlib.colormaps["RdYlGn"]
    return matplotlib.colors.to_hex(cmap((np.clip(value, -limit, limit) + limit) / (2 * limit)))


def heatmap_chart(
    records: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    scenarios: Sequence[str],
    baseline: str,
    chart_id: str,
) -> str:
    """Models x scenarios: the peak's % change against the baseline; not significant cells hatched."""
    if not scenarios or not models:
        return f'<p class="note">No scenario besides {escape(baseline)} to compare.</p>'
    cell_w, cell_h, left, top = 130, 56, 150, 40
    width = max(left + cell_w * len(scenarios) + 30, left + 730, 560 + 7 * len(baseline))
    height = top + cell_h * len(models) + 110
    values = [abs(r["delta_pct"]) for r in records if r["delta_pct"] is not None]
    limit = max(5.0, math.ceil(max(values, default=0.0) / 5.0) * 5.0)
    parts = [
        f'<svg class="chart heatmap" id="{chart_id}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="change against {escape(baseline, quote=True)}">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff" fill-opacity="0.55"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#8c8c8c" stroke-width="1.2"/></pattern></defs>',
        f'<text class="title" x="{left}" y="22">Peak output throughput: change vs {escape(baseline)} '
        "(%, 95 % interval)</text>",
    ]
    by_cell = {(r["model"], r["scenario"]): r for r in records}
    for i, model in enumerate(models):
        cy = top + i * cell_h
        parts.append(
            f'<text class="tick" x="{left - 8}" y="{cy + cell_h / 2 + 4}" text-anchor="end">'
            f"{escape(model)}</text>"
        )
        for j, scenario in enumerate(scenarios):
            cx = left + j * cell_w
            r = by_cell.get((model, scenario))
            value = r["delta_pct"] if r else None
            fill = "#d9d9d9" if value is None else _heat_colour(value, limit)
            cell = [
                f'<rect x="{cx}" y="{cy}" width="{cell_w}" height="{cell_h}" fill="{fill}" stroke="#fff"/>'
            ]
            label = ["n/a"]
            tip = [f"{model} / {scenario}: no data"]
            if r is not None and value is not None:
                significant = r["significant"]
                if significant is not True:
                    cell.append(
                        f'<rect x="{cx}" y="{cy}" width="{cell_w}" height="{cell_h}" fill="url(#hatch)"/>'
                    )
                interval = (
                    f"[{r['ci_low_pct']:+.1f}, {r['ci_high_pct']:+.1f}]"
                    if r["ci_low_pct"] is not None and r["ci_high_pct"] is not None
                    else None
                )
                mark = (
                    "significant"
                    if significant
                    else ("not significant" if significant is False else "no interval")
                )
                label = [
                    f"{value:+.1f}%",
                    *([interval] if interval else []),
                    mark if significant is not True else "",
                ]
                p = "n/a" if r["p_adjusted"] is None else f"{r['p_adjusted']:.3g}"
                tip = [
                    f"{model} / {scenario}: {value:+.1f}% vs {baseline}",
                    f"95 % interval {interval or 'none'}; adjusted p {p}; {mark}",
                    f"peak {_fmt(r['peak_output_tok_s'], '{:,.1f}')} tok/s "
                    f"at concurrency {r['optimal_concurrency']}",
                    "click: the peak level's point record",
                ]
            text = "".join(
                f'<tspan x="{cx + cell_w / 2}" dy="{0 if k == 0 else 14}">{escape(line)}</tspan>'
                for k, line in enumerate(line for line in label if line)
            )
            cell.append(
                f'<text class="cell" x="{cx + cell_w / 2}" y="{cy + cell_h / 2 - 4}" '
                f'text-anchor="middle">{text}</text>'
            )
            group = f'<g class="heat-cell" data-tip="{_tip(tip)}">{"".join(cell)}</g>'
            links = r["points"] if r else []
            parts.append(f'<a href="{escape(links[0], quote=True)}">{group}</a>' if links else group)
    for j, scenario in enumerate(scenarios):
        cx = left + j * cell_w + cell_w / 2
        y0 = top + len(models) * cell_h + 16
        parts.append(f'<text class="tick" x="{cx}" y="{y0}" text-anchor="middle">{escape(scenario)}</text>')
    legend_y = top + len(models) * cell_h + 44
    legend = (
        ("#1a9850", "significantly faster"),
        ("#d73027", "significantly slower"),
        ("url(#hatch)", "not significant / no interval"),
        ("#d9d9d9", "no data"),
    )
    lx = left
    for fill, text in legend:
        parts.append(f'<rect x="{lx}" y="{legend_y}" width="14" height="14" fill="{fill}" stroke="#8c8c8c"/>')
        parts.append(f'<text class="legend" x="{lx + 20}" y="{legend_y + 12}">{escape(text)}</text>')
        lx += 20 + 7 * len(text) + 24
    parts.append("</svg>")
    return "\n".join(parts)


def run_charts(
    data: Mapping[str, Any], run: str, result: Analysis, ordering: Ordering, style: Style, tag: str
) -> dict[str, str]:
    """The SVG of each chart of one run: `throughput` and `latency` (per model) and `heatmap`."""
    charts: dict[str, str] = {"throughput": "", "latency": "", "heatmap": ""}
    mine = {key: [r for r in data[key] if r["run"] == run] for key, *_ in LINE_METRICS}
    models = ordering.models(pd.Series([r["model"] for r in mine["throughput"]], dtype=object))
    for m_index, model in enumerate(models):
        for key, _, label, fmt in LINE_METRICS:
            records = [r for r in mine[key] if r["model"] == model]
            if not records:
                continue
            scenarios = ordering.scenarios_of([r["scenario"] for r in records])
            name = {"throughput": "output throughput", "ttft": "mean TTFT", "tpot": "mean TPOT"}[key]
            title = f"{model}: {name} vs concurrency (mean of repetitions, whiskers: 95 % interval)"
            chart = line_chart(records, scenarios, style, title, label, fmt, f"chart-{key}{tag}-{m_index}")
            charts["throughput" if key == "throughput" else "latency"] += (
                f'<figure class="chart-box">{chart}</figure>\n'
            )
    heat = [r for r in data["heatmap"] if r["run"] == run]
    peaks = result.peaks[result.peaks["run"] == run]
    if not peaks.empty:
        scenarios = [s for s in ordering.scenarios_of(peaks["scenario"]) if s != result.baseline]
        heat_models = ordering.models(peaks["model"])
        chart = heatmap_chart(heat, heat_models, scenarios, result.baseline, f"chart-heatmap{tag}")
        charts["heatmap"] = f'<figure class="chart-box">{chart}</figure>\n'
    return charts
