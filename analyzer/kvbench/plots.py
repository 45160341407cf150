"""The evaluation's four figures, drawn with matplotlib's Agg canvas (no display needed), per run.

Every figure uses the same colour and marker for a scenario, labelled axes with units and a legend. With
several runs each run gets its own set of figures, the run's name in their file names; runs are never drawn
into one panel. The PNG files are written through kvbench.render.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from kvbench.deltas import is_true
from kvbench.heatmap import delta_grid
from kvbench.naming import SCENARIO_ORDER, Ordering, safe_filename
from kvbench.peaks import THROUGHPUT
from kvbench.render import write_atomically
from kvbench.table import ok_rows, runs_in

DPI = 150
# One fixed colour per known scenario (colour-blind-aware Okabe-Ito hues plus greys/browns).
KNOWN_COLOURS: dict[str, str] = {
    "no-offload": "#4d4d4d",
    "native-offload": "#e69f00",
    "lmcache-local": "#56b4e9",
    "lmcache-redis": "#d55e00",
    "lmcache-valkey": "#009e73",
    "llm-d-redis": "#cc79a7",
    "llm-d-valkey": "#0072b2",
    "llm-d-inmem": "#8c564b",
}
EXTRA_COLOURS: tuple[str, ...] = (
    "#bcbd22",
    "#17becf",
    "#9467bd",
    "#7f7f7f",
    "#f0e442",
    "#aec7e8",
    "#ff9896",
    "#98df8a",
    "#c5b0d5",
    "#c49c94",
)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")

PEAK_FIGURE = "peak_throughput_all_scenarios.png"
LATENCY_FIGURE = "latency_comparison_all.png"
HEATMAP_FIGURE = "performance_delta_heatmap_all.png"


def tagged(name: str, tag: str) -> str:
    """A figure's file name for one run: `tag` is "" when the analysis has a single run."""
    return name.removesuffix(".png") + f"{tag}.png"


def run_tag(run: str, runs: Sequence[str]) -> str:
    """The suffix of a run's figure names: none with one run, else the run's name."""
    return "" if len(runs) <= 1 else f"_{safe_filename(run or 'no-run')}"


def curve_figure_name(model: str, tag: str = "") -> str:
    return tagged(f"throughput_curve_{safe_filename(model)}_all.png", tag)


def save_png(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    write_atomically(path, buffer.getvalue())
    return path


class Style:
    """Colour and marker per scenario, fixed for one analysis."""

    def __init__(self, scenarios: Sequence[str], ordering: Ordering) -> None:
        self.colours: dict[str, str] = {}
        self.markers: dict[str, str] = {}
        extra = 0
        for scenario in ordering.scenarios_of(scenarios):
            if scenario in KNOWN_COLOURS:
                colour = KNOWN_COLOURS[scenario]
                marker = MARKERS[SCENARIO_ORDER.index(scenario) % len(MARKERS)]
            else:
                colour = EXTRA_COLOURS[extra % len(EXTRA_COLOURS)]
                marker = MARKERS[(len(SCENARIO_ORDER) + extra) % len(MARKERS)]
                extra += 1
            self.colours[scenario] = colour
            self.markers[scenario] = marker

    def legend_handles(self, scenarios: Sequence[str], kind: str = "patch") -> list[object]:
        if kind == "line":
            return [
                Line2D([], [], color=self.colours[s], marker=self.markers[s], linewidth=2, label=s)
                for s in scenarios
            ]
        return [
            Patch(facecolor=self.colours[s], edgecolor="black", linewidth=0.5, label=s) for s in scenarios
        ]


def _grid(count: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(count, max_cols))
    return math.ceil(count / cols), cols


def _axes(fig: Figure, rows: int, cols: int) -> list[Axes]:
    grid = fig.subplots(rows, cols, squeeze=False)
    return [ax for row in grid for ax in row]


def _bar_panel(
    ax: Axes,
    scenarios: Sequence[str],
    values: Sequence[float],
    style: Style,
    labels: Sequence[str],
    ylabel: str | None,
    title: str,
) -> None:
    xs = np.arange(len(scenarios))
    heights = [0.0 if math.isnan(v) else v for v in values]
    bars = ax.bar(
        xs,
        heights,
        color=[style.colours[s] for s in scenarios],
        edgecolor="black",
        linewidth=0.5,
        zorder=2,
    )
    top = max([h for h in heights if h > 0], default=1.0)
    for bar, label, value in zip(bars, labels, values, strict=True):
        text = "n/a" if math.isnan(value) else label
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            zorder=4,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )
    ax.set_ylim(0, top * 1.22)
    ax.set_xticks(xs)
    ax.set_xticklabels(scenarios, rotation=40, ha="right", fontsize=8)
    ax.set_title(title, fontsize=11, fontweight="bold")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


class _Layout:
    """Margins in inches for a grid of equal panels, so no extra layout pass is needed when saving."""

    def __init__(
        self,
        rows: int,
        cols: int,
        panel: tuple[float, float],
        left: float,
        right: float,
        top: float,
        bottom: float,
        gap: tuple[float, float],
    ) -> None:
        width = left + right + cols * panel[0] + (cols - 1) * gap[0]
        height = top + bottom + rows * panel[1] + (rows - 1) * gap[1]
        self.size = (width, height)
        self.adjust = {
            "left": left / width,
            "right": 1 - right / width,
            "top": 1 - top / height,
            "bottom": bottom / height,
            "wspace": gap[0] / panel[0],
            "hspace": gap[1] / panel[1],
        }

    def figure(self) -> Figure:
        fig = Figure(figsize=self.size)
        fig.subplots_adjust(**self.adjust)
        return fig


def _tick_band(names: Sequence[str], rotation: float = 40.0) -> float:
    """Inches taken below an axes by rotated tick labels of these names (fontsize 8)."""
    longest = max((len(n) for n in names), default=4)
    return 0.15 + 0.06 * longest * math.sin(math.radians(rotation))


def _legend_rows(count: int, per_row: int) -> int:
    return max(1, math.ceil(count / per_row))


def peak_throughput(
    peaks: pd.DataFrame, style: Style, out: Path, baseline: str, ordering: Ordering, tag: str = ""
) -> Path:
    """Peak output throughput of every scenario, one panel per model (own y scale)."""
    models = ordering.models(peaks["model"])
    scenarios_all = ordering.scenarios_of(peaks["scenario"])
    rows, cols = _grid(len(models))
    band = _tick_band(scenarios_all)
    handles = style.legend_handles(scenarios_all)
    handles.append(Line2D([], [], color="black", linestyle="--", linewidth=0.8, label=f"{baseline} peak"))
    per_row = 5
    layout = _Layout(
        rows,
        cols,
        panel=(max(3.6, 0.5 * len(scenarios_all) + 0.6), 3.0),
        left=0.8,
        right=0.25,
        top=1.0,
        bottom=band + 0.3 + 0.28 * _legend_rows(len(handles), per_row),
        gap=(0.7, band + 0.55),
    )
    fig = layout.figure()
    axes = _axes(fig, rows, cols)
    for index, (ax, model) in enumerate(zip(axes, models, strict=False)):
        sub = peaks[peaks["model"] == model].set_index("scenario")
        scenarios = [s for s in scenarios_all if s in sub.index]
        values = [float(sub.at[s, "peak_output_tok_s"]) for s in scenarios]
        labels = []
        for s in scenarios:
            delta = sub.at[s, "delta_vs_baseline_pct"]
            text = f"{sub.at[s, 'peak_output_tok_s']:.1f}\n@{sub.at[s, 'optimal_concurrency']}"
            if s != baseline and not pd.isna(delta):
                marked = "significant" in sub.columns and is_true(sub.at[s, "significant"])
                text += f"\n{delta:+.1f}%" + ("*" if marked else "")
            labels.append(text)
        _bar_panel(
            ax,
            scenarios,
            values,
            style,
            labels,
            "Peak output throughput (tok/s)" if index % cols == 0 else None,
            model,
        )
        _peak_intervals(ax, sub, scenarios)
        if baseline in sub.index:
            ax.axhline(
                float(sub.at[baseline, "peak_output_tok_s"]),
                color="black",
                linestyle="--",
                linewidth=0.8,
                zorder=3,
            )
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Peak output throughput per scenario (successful requests)\n"
        "whiskers: 95 % interval at the optimal level\n"
        f"bar label: tok/s, @optimal, change vs {baseline} (* significant)",
        fontsize=10,
    )
    return _legend_below_and_save(fig, handles, per_row, out / tagged(PEAK_FIGURE, tag))


def _peak_intervals(ax: Axes, sub: pd.DataFrame, scenarios: Sequence[str]) -> None:
    """Whiskers of the t interval at each bar's optimal level, where the peak table has one."""
    if "peak_ci_low" not in sub.columns:
        return
    for x, scenario in enumerate(scenarios):
        low, high = float(sub.at[scenario, "peak_ci_low"]), float(sub.at[scenario, "peak_ci_high"])
        if math.isnan(low) or math.isnan(high):
            continue
        ax.plot([x, x], [low, high], color="black", linewidth=1.0, zorder=3)
        ax.plot([x - 0.12, x + 0.12], [high, high], color="black", linewidth=1.0, zorder=3)
        ax.plot([x - 0.12, x + 0.12], [low, low], color="black", linewidth=1.0, zorder=3)


def _intervals(
    cells: pd.DataFrame | None, rows: pd.DataFrame, levels: pd.Index
) -> tuple[np.ndarray, np.ndarray]:
    """The t interval of each level of one scenario (NaN where it has none)."""
    low = np.full(len(levels), np.nan)
    high = np.full(len(levels), np.nan)
    if cells is None or cells.empty or rows.empty:
        return low, high
    first = rows.iloc[0]
    mine = cells[
        (cells["run"] == first["run"])
        & (cells["model"] == first["model"])
        & (cells["scenario"] == first["scenario"])
    ].set_index("concurrency")
    for index, level in enumerate(levels):
        if level in mine.index:
            low[index] = float(mine.at[level, "ci_low"])
            high[index] = float(mine.at[level, "ci_high"])
    return low, high


def throughput_curves(
    frame: pd.DataFrame,
    peaks: pd.DataFrame,
    style: Style,
    out: Path,
    ordering: Ordering,
    tag: str = "",
    cells: pd.DataFrame | None = None,
) -> list[Path]:
    """Output throughput against concurrency for every scenario, one figure per model; the mean over the
    repetitions of each level with its t interval (`cells`, kvbench.stats.cell_stats) as error bars."""
    usable = ok_rows(frame)
    paths: list[Path] = []
    for model in ordering.models(usable["model"]):
        data = usable[usable["model"] == model]
        scenarios = ordering.scenarios_of(data["scenario"])
        legend_width = 0.9 + 0.075 * max(len(s) for s in scenarios)
        layout = _Layout(
            1, 1, panel=(7.4, 4.6), left=0.85, right=legend_width + 0.3, top=0.45, bottom=0.7, gap=(0, 0)
        )
        fig = layout.figure()
        ax = fig.subplots()
        for scenario in scenarios:
            sub = data[data["scenario"] == scenario]
            grouped = sub.groupby("concurrency")[THROUGHPUT].agg(["mean", "count"]).sort_index()
            xs = grouped.index.astype(float).to_numpy()
            ys = grouped["mean"].to_numpy(dtype=float)
            colour, marker = style.colours[scenario], style.markers[scenario]
            low, high = _intervals(cells, sub, grouped.index)
            if np.isfinite(low).any():
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[np.nan_to_num(ys - low), np.nan_to_num(high - ys)],
                    fmt="none",
                    ecolor=colour,
                    capsize=3,
                    alpha=0.8,
                )
            ax.plot(xs, ys, color=colour, marker=marker, linewidth=1.8, markersize=5, label=scenario)
            peak = peaks[(peaks["model"] == model) & (peaks["scenario"] == scenario)]
            if not peak.empty:
                ax.plot(
                    [float(peak["optimal_concurrency"].iloc[0])],
                    [float(peak["peak_output_tok_s"].iloc[0])],
                    marker=marker,
                    markersize=11,
                    markerfacecolor=colour,
                    markeredgecolor="black",
                    markeredgewidth=1.2,
                    linestyle="none",
                )
        title = f"{model}: output throughput vs concurrency"
        if cells is not None and (cells["n"] > 1).any():
            title += "\n(mean of the repetitions, bars: 95 % interval)"
        ax.set_title(title, fontsize=11, fontweight="bold")
        ax.set_xlabel("Concurrency (concurrent request streams)")
        ax.set_ylabel("Output throughput (tok/s, successful requests)")
        top = float(data[THROUGHPUT].max())
        ax.set_ylim(0, top * 1.1 if top > 0 else 1.0)
        ax.set_xlim(left=-0.02 * float(data["concurrency"].max()))
        ax.grid(alpha=0.3)
        handles = style.legend_handles(scenarios, kind="line")
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                markersize=10,
                markerfacecolor="white",
                markeredgecolor="black",
                linestyle="none",
                label="peak",
            )
        )
        ax.legend(handles=handles, title="Scenario", loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9)
        paths.append(save_png(fig, out / curve_figure_name(model, tag)))
    return paths


def latency_comparison(
    peaks: pd.DataFrame, style: Style, out: Path, ordering: Ordering, tag: str = ""
) -> Path:
    """Mean TTFT and TPOT at each scenario's peak-throughput concurrency, one column per model."""
    models = ordering.models(peaks["model"])
    scenarios_all = ordering.scenarios_of(peaks["scenario"])
    cols = max(1, len(models))
    band = _tick_band(scenarios_all)
    per_row = 8
    layout = _Layout(
        2,
        cols,
        panel=(max(3.2, 0.45 * len(scenarios_all) + 0.4), 2.8),
        left=0.8,
        right=0.25,
        top=0.75,
        bottom=band + 0.3 + 0.28 * _legend_rows(len(scenarios_all), per_row),
        gap=(0.75, band + 0.55),
    )
    fig = layout.figure()
    grid = fig.subplots(2, cols, squeeze=False)
    metrics = (
        ("ttft_ms_mean_at_peak", "Mean TTFT at peak (ms)", "{:,.0f}"),
        ("tpot_ms_mean_at_peak", "Mean TPOT at peak (ms)", "{:,.1f}"),
    )
    for col, model in enumerate(models):
        sub = peaks[peaks["model"] == model].set_index("scenario")
        scenarios = [s for s in scenarios_all if s in sub.index]
        for row, (column, label, fmt) in enumerate(metrics):
            values = [float(sub.at[s, column]) for s in scenarios]
            labels = [
                fmt.format(v) + f"\n@{sub.at[s, 'optimal_concurrency']}" if not math.isnan(v) else "n/a"
                for s, v in zip(scenarios, values, strict=True)
            ]
            _bar_panel(
                grid[row][col],
                scenarios,
                values,
                style,
                labels,
                label if col == 0 else None,
                f"{model}: {'TTFT' if row == 0 else 'TPOT'}",
            )
    fig.suptitle(
        "Latency at each scenario's peak throughput (successful requests)\nbar label: value, @concurrency",
        fontsize=10,
    )
    handles = style.legend_handles(scenarios_all)
    return _legend_below_and_save(fig, handles, per_row, out / tagged(LATENCY_FIGURE, tag))


def delta_heatmap(peaks: pd.DataFrame, out: Path, baseline: str, ordering: Ordering, tag: str = "") -> Path:
    """% change of peak throughput against the baseline, models x scenarios, with its interval; cells that
    are not significant (or have no interval) are hatched and greyed."""
    models = ordering.models(peaks["model"])
    scenarios = [s for s in ordering.scenarios_of(peaks["scenario"]) if s != baseline]
    shape = (len(models), len(scenarios))
    values, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    significant = np.full(shape, None, dtype=object)
    for i, model in enumerate(models):
        for j, scenario in enumerate(scenarios):
            match = peaks[(peaks["model"] == model) & (peaks["scenario"] == scenario)]
            if match.empty:
                continue
            row = match.iloc[0]
            values[i, j] = float(row["delta_vs_baseline_pct"])
            low[i, j] = float(row.get("delta_ci_low_pct", math.nan))
            high[i, j] = float(row.get("delta_ci_high_pct", math.nan))
            tested = not pd.isna(row.get("p_adjusted", math.nan))
            significant[i, j] = bool(row.get("significant")) if tested else None
    path = out / tagged(HEATMAP_FIGURE, tag)
    if not scenarios:
        fig = Figure(figsize=(4.0, 1.6))
        ax = fig.subplots()
        ax.text(0.5, 0.5, f"No scenario besides {baseline} to compare", ha="center", va="center")
        ax.set_axis_off()
        return save_png(fig, path)
    return delta_grid(
        values,
        significant,
        models,
        scenarios,
        path,
        title=f"Peak output throughput: change vs {baseline} (%, 95 % interval)",
        colour_label=f"% change vs {baseline} peak",
        axis_labels=("Scenario", "Model"),
        low=low,
        high=high,
    )


def draw_all(
    frame: pd.DataFrame,
    peaks: pd.DataFrame,
    out: Path,
    baseline: str,
    ordering: Ordering,
    cells: pd.DataFrame | None = None,
) -> dict[str, list[Path]]:
    """Every figure of every run (run -> its figures); nothing when there are no peaks."""
    if peaks.empty:
        return {}
    style = Style(list(peaks["scenario"]) + list(ok_rows(frame)["scenario"]), ordering)
    runs = runs_in(peaks)
    drawn: dict[str, list[Path]] = {}
    for run in runs:
        tag = run_tag(run, runs)
        run_peaks = peaks[peaks["run"] == run]
        run_frame = frame[frame["run"] == run]
        paths = [peak_throughput(run_peaks, style, out, baseline, ordering, tag)]
        paths += throughput_curves(run_frame, run_peaks, style, out, ordering, tag, cells)
        paths.append(latency_comparison(run_peaks, style, out, ordering, tag))
        paths.append(delta_heatmap(run_peaks, out, baseline, ordering, tag))
        drawn[run] = paths
    return drawn


__all__ = [
    "HEATMAP_FIGURE",
    "LATENCY_FIGURE",
    "PEAK_FIGURE",
    "Style",
    "curve_figure_name",
    "draw_all",
    "run_tag",
    "tagged",
]


def _legend_below_and_save(fig: Figure, handles: list[object], per_row: int, path: Path) -> Path:
    """One legend under all panels of a figure (scenario colours are shared), then the PNG."""
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(handles), per_row),
        fontsize=9,
        frameon=False,
    )
    return save_png(fig, path)
