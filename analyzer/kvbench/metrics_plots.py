"""The evidence figures: hit rates vs concurrency, KV usage and queues over the peak level's window, per-CPU
saturation, energy per token. Drawn from the per-point summary (kvbench.metrics_summary columns, the same in
`kvbench metrics`' points table and in complete_metrics.csv) and the tidy /metrics series; written through
kvbench.render (plots.save_png). A figure whose data is absent is not drawn.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from kvbench.naming import DEFAULT_ORDERING, Ordering
from kvbench.plots import Style, run_tag, save_png, tagged
from kvbench.table import runs_in

HIT_RATE_FIGURE = "evidence_hit_rates.png"
KV_WINDOW_FIGURE = "evidence_kv_usage_peak_level.png"
CPU_FIGURE = "evidence_cpu_saturation.png"
ENERGY_FIGURE = "evidence_energy_per_token.png"
# Columns that are fractions 0..1 (drawn on a fixed 0-1 axis).
FRACTION_COLUMNS = frozenset(
    {"prefix_cache_hit_rate", "external_hit_rate", "prompt_share_local_cache", "cpu_busy_mean"}
)


def _levels(points: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean of `column` per scenario and concurrency over the repetitions that have it."""
    if column not in points.columns:
        return pd.DataFrame(columns=["scenario", "concurrency", column])
    rows = points[["scenario", "concurrency", column]].copy()
    rows[column] = pd.to_numeric(rows[column], errors="coerce")
    rows["concurrency"] = pd.to_numeric(rows["concurrency"], errors="coerce")
    rows = rows.dropna()
    return rows.groupby(["scenario", "concurrency"], as_index=False)[column].mean()


def _curves(
    points: pd.DataFrame,
    panels: list[tuple[str, str]],
    path: Path,
    title: str,
    ordering: Ordering,
    reference: float | None = None,
) -> Path | None:
    data = {column: _levels(points, column) for column, _ in panels}
    if all(frame.empty for frame in data.values()):
        return None
    scenarios = ordering.scenarios_of(sorted({s for f in data.values() for s in f["scenario"]}))
    style = Style(scenarios, ordering)
    fig = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    levels = sorted({c for f in data.values() for c in f["concurrency"]})
    for ax, (column, label) in zip(axes, panels, strict=True):
        frame = data[column]
        for scenario in scenarios:
            sub = frame[frame["scenario"] == scenario].sort_values("concurrency")
            if sub.empty:
                continue
            ax.plot(
                sub["concurrency"],
                sub[column],
                marker=style.markers[scenario],
                color=style.colours[scenario],
                label=scenario,
            )
        if reference is not None and column in ("prefix_cache_hit_rate", "prompt_share_local_cache"):
            ax.axhline(reference, color="black", linestyle="--", linewidth=1, label="shared-prefix share")
        if frame.empty:
            ax.text(0.5, 0.5, "no data in these points", ha="center", va="center", transform=ax.transAxes)
        ax.set_xscale("log")
        ax.set_xticks(levels, [f"{level:g}" for level in levels])
        ax.minorticks_off()
        if column in FRACTION_COLUMNS:
            ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
            break
    fig.suptitle(title)
    return save_png(fig, path)


def prefix_share(points: pd.DataFrame) -> float | None:
    """The shared prefix's share of a request's prompt (prefix_tokens / (prefix_tokens + prompt_tokens)),
    when every row agrees: the hit rate a warm prefix cache gives the first turn (later turns of a
    conversation also hit their history, block rounding takes a little off)."""
    if not {"prefix_tokens", "prompt_tokens"} <= set(points.columns):
        return None
    prefix = pd.to_numeric(points["prefix_tokens"], errors="coerce")
    prompt = pd.to_numeric(points["prompt_tokens"], errors="coerce")
    shares = (prefix / (prefix + prompt)).dropna().round(6).unique()
    return float(shares[0]) if len(shares) == 1 else None


def hit_rates(
    points: pd.DataFrame, out: Path, ordering: Ordering = DEFAULT_ORDERING, tag: str = ""
) -> Path | None:
    return _curves(
        points,
        [
            ("prefix_cache_hit_rate", "GPU prefix-cache hit rate (0-1)"),
            ("external_hit_rate", "external (offload) hit rate (0-1)"),
            ("prompt_share_local_cache", "prompt tokens from local cache (share)"),
        ],
        out / tagged(HIT_RATE_FIGURE, tag),
        "Hit rates vs concurrency (counter deltas inside each point's window)",
        ordering,
        reference=prefix_share(points),
    )


def cpu_saturation(
    points: pd.DataFrame, out: Path, ordering: Ordering = DEFAULT_ORDERING, tag: str = ""
) -> Path | None:
    return _curves(
        points,
        [
            ("cpu_saturated_mean", "CPUs >= 90 % busy (mean count)"),
            ("cpu_busy_mean", "all-CPU busy fraction (mean)"),
        ],
        out / tagged(CPU_FIGURE, tag),
        "Per-CPU saturation vs concurrency (PCP kernel.percpu.cpu)",
        ordering,
    )


def energy_per_token(
    points: pd.DataFrame, out: Path, ordering: Ordering = DEFAULT_ORDERING, tag: str = ""
) -> Path | None:
    return _curves(
        points,
        [("joules_per_output_token", "GPU energy per output token (J)")],
        out / tagged(ENERGY_FIGURE, tag),
        "Energy per output token vs concurrency (PCP nvidia.energy)",
        ordering,
    )


def _named(series: pd.DataFrame, name: str) -> pd.DataFrame:
    """Summed over label sets per (scenario, url, t_rel_s) for one sample name."""
    rows = series[series["sample"].str.split("{", n=1).str[0] == name]
    return rows.groupby(["scenario", "url", "t_rel_s"], as_index=False)["value"].sum()


def kv_usage_at_peak_level(
    series: pd.DataFrame, points: pd.DataFrame, out: Path, ordering: Ordering = DEFAULT_ORDERING
) -> Path | None:
    """KV-cache usage and running/waiting requests over the window of each scenario's highest level
    (first repetition)."""
    if series.empty or "in_window" not in series.columns:
        return None
    chosen = []
    for scenario, sub in points.dropna(subset=["concurrency"]).groupby("scenario"):
        top = sub.sort_values(["concurrency", "repetition"], ascending=[False, True]).iloc[0]
        chosen.append((scenario, top["point"]))
    keep = series.set_index(["scenario", "point"]).index.isin(chosen) & series["in_window"].astype(bool)
    window = series[keep]
    if window.empty:
        return None
    panels = [
        ("vllm:kv_cache_usage_perc", "KV-cache usage (0-1)"),
        ("vllm:num_requests_running", "requests running"),
        ("vllm:num_requests_waiting", "requests waiting"),
    ]
    scenarios = ordering.scenarios_of(sorted(set(window["scenario"])))
    style = Style(scenarios, ordering)
    fig = Figure(figsize=(16, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (name, label) in zip(axes, panels, strict=True):
        values = _named(window, name)
        for scenario in scenarios:
            for url, sub in values[values["scenario"] == scenario].groupby("url"):
                ax.plot(
                    sub["t_rel_s"], sub["value"], color=style.colours[scenario], label=f"{scenario} {url}"
                )
        ax.set_xlabel("seconds into the measured window")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    levels = ", ".join(f"{s}: {p}" for s, p in chosen)
    fig.suptitle(f"KV usage and queues over the highest level's window ({levels})", fontsize=9)
    return save_png(fig, out / KV_WINDOW_FIGURE)


def draw_evidence(
    points: pd.DataFrame, series: pd.DataFrame, out: Path, ordering: Ordering = DEFAULT_ORDERING
) -> list[Path]:
    """Every evidence figure that has data."""
    drawn = [
        hit_rates(points, out, ordering),
        kv_usage_at_peak_level(series, points, out, ordering),
        cpu_saturation(points, out, ordering),
        energy_per_token(points, out, ordering),
    ]
    return [path for path in drawn if path is not None]


def add_evidence_figures(
    drawn: dict[str, list[Path]], frame: pd.DataFrame, peaks: pd.DataFrame, out: Path, ordering: Ordering
) -> list[Path]:
    """`kvbench analyze`: the evidence figures drawn from the table's rows, per run with the run's tag (as
    kvbench.plots.draw_all names its figures), added to `drawn`; returns the new paths."""
    runs = runs_in(peaks)
    added: list[Path] = []
    for run in runs:
        tag = run_tag(run, runs)
        rows = frame[frame["run"] == run]
        paths = [fig(rows, out, ordering, tag) for fig in (hit_rates, cpu_saturation, energy_per_token)]
        new = [path for path in paths if path is not None]
        drawn.setdefault(run, []).extend(new)
        added += new
    return added
