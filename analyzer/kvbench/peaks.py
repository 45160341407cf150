"""Peak throughput per (run, model, scenario) and its change against the baseline scenario of the same run.

The original analysis defines the peak as the highest `metrics.output_tokens_per_second.successful.mean`
over the concurrency levels of a (model, scenario); the level that reaches it is the optimal concurrency.
With several repetitions of a level, the level's value is the mean over its repetitions. Runs are never
mixed: a scenario's peak and its baseline come from the same run. `add_statistics` adds the interval of
the peak, the tested change against the baseline (kvbench.deltas) and the validity counts.
"""

from __future__ import annotations

import math

import pandas as pd

from kvbench.naming import DEFAULT_ORDERING, Ordering
from kvbench.stats import THROUGHPUT
from kvbench.table import ok_rows

# Per-level means carried to the peak row (the latency a scenario has at its peak).
AT_PEAK = (
    "output_tok_s_total",
    "total_tok_s",
    "requests_s",
    "ttft_ms_mean",
    "ttft_ms_p99",
    "tpot_ms_mean",
    "tpot_ms_p99",
    "itl_ms_mean",
    "latency_s_mean",
)
LEVEL_KEY = ["run", "model", "scenario", "concurrency"]
_BASELINE_COLUMNS = ("delta_vs_baseline_pct", "baseline_scenario", "baseline_peak_output_tok_s")
PEAK_COLUMNS: tuple[str, ...] = (
    "run",
    "model",
    "scenario",
    "peak_output_tok_s",
    "optimal_concurrency",
    "delta_vs_baseline_pct",
    "baseline_scenario",
    "baseline_peak_output_tok_s",
    *(f"{c}_at_peak" for c in AT_PEAK),
    "levels",
    "repetitions_at_peak",
)
# Added by add_statistics (kvbench.stats, kvbench.deltas, kvbench.validity).
STAT_COLUMNS: tuple[str, ...] = (
    "peak_ci_low",
    "peak_ci_high",
    "n_repetitions",
    "delta_ci_low_pct",
    "delta_ci_high_pct",
    "p_value",
    "p_adjusted",
    "significant",
    "invalid_points",
    "warn_points",
)


def level_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean of every metric per (run, model, scenario, concurrency) over repetitions, with their count."""
    usable = ok_rows(frame)
    columns = [THROUGHPUT, *AT_PEAK]
    if usable.empty:
        return pd.DataFrame(columns=[*LEVEL_KEY, *columns, "repetitions"])
    grouped = usable.groupby(LEVEL_KEY, sort=False)
    means = grouped[columns].mean()
    means["repetitions"] = grouped.size()
    return means.reset_index()


def peak_table(
    frame: pd.DataFrame, baseline: str = "no-offload", ordering: Ordering = DEFAULT_ORDERING
) -> pd.DataFrame:
    """One row per (run, model, scenario): peak, optimal concurrency and % change against the baseline."""
    levels = level_means(frame)
    rows: list[dict[str, object]] = []
    for (run, model, scenario), group in levels.groupby(["run", "model", "scenario"], sort=False):
        group = group.sort_values("concurrency", kind="stable")
        best = group.loc[group[THROUGHPUT].idxmax()]
        row: dict[str, object] = {
            "run": run,
            "model": model,
            "scenario": scenario,
            "peak_output_tok_s": float(best[THROUGHPUT]),
            "optimal_concurrency": int(best["concurrency"]),
            "levels": len(group),
            "repetitions_at_peak": int(best["repetitions"]),
        }
        for column in AT_PEAK:
            row[f"{column}_at_peak"] = float(best[column])
        rows.append(row)
    peaks = pd.DataFrame(rows, columns=[c for c in PEAK_COLUMNS if c not in _BASELINE_COLUMNS])
    baseline_of = {(r["run"], r["model"]): r["peak_output_tok_s"] for r in rows if r["scenario"] == baseline}
    peaks["baseline_scenario"] = baseline
    peaks["baseline_peak_output_tok_s"] = [
        baseline_of.get((run, model), math.nan)
        for run, model in zip(peaks["run"], peaks["model"], strict=True)
    ]
    peaks["delta_vs_baseline_pct"] = [
        (peak - base) / base * 100.0 if base and not math.isnan(base) else math.nan
        for peak, base in zip(peaks["peak_output_tok_s"], peaks["baseline_peak_output_tok_s"], strict=True)
    ]
    peaks = peaks[list(PEAK_COLUMNS)]
    if peaks.empty:
        return peaks
    order = sorted(
        range(len(peaks)),
        key=lambda i: (
            ordering.model_key(peaks.at[i, "model"]),
            ordering.run_key(peaks.at[i, "run"]),
            ordering.scenario_key(peaks.at[i, "scenario"]),
        ),
    )
    return peaks.iloc[order].reset_index(drop=True)


def add_statistics(
    peaks: pd.DataFrame, cells: pd.DataFrame, deltas: pd.DataFrame, validity: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The peak table with STAT_COLUMNS: the t interval of the mean at the optimal level and its repetitions
    (`cells`, kvbench.stats.cell_stats), the peak row of `deltas` (kvbench.deltas.baseline_deltas), and the
    points of each scenario judged invalid or warn (`validity`, kvbench.validity.evaluate)."""
    table = peaks.copy()
    cell_index = cells.set_index(["run", "model", "scenario", "concurrency"]) if not cells.empty else None
    peak_rows = deltas[deltas["concurrency"].astype(str) == "peak"].set_index(["run", "model", "scenario"])
    counts: dict[tuple[str, str, str], dict[str, int]] = {}
    if validity is not None and not validity.empty:
        measured = validity[validity["status"] == "ok"]
        for key, group in measured.groupby(["run", "model", "scenario"], sort=False):
            verdicts = group["verdict"].value_counts()
            counts[key] = {
                "invalid_points": int(verdicts.get("invalid", 0)),
                "warn": int(verdicts.get("warn", 0)),
            }
    values: dict[str, list[object]] = {column: [] for column in STAT_COLUMNS}
    for _, row in table.iterrows():
        key = (row["run"], row["model"], row["scenario"])
        cell = None
        if cell_index is not None and (*key, row["optimal_concurrency"]) in cell_index.index:
            cell = cell_index.loc[(*key, row["optimal_concurrency"])]
        delta = peak_rows.loc[key] if key in peak_rows.index else None
        values["peak_ci_low"].append(float(cell["ci_low"]) if cell is not None else math.nan)
        values["peak_ci_high"].append(float(cell["ci_high"]) if cell is not None else math.nan)
        values["n_repetitions"].append(
            int(cell["n"]) if cell is not None else int(row["repetitions_at_peak"])
        )
        for column, source in (
            ("delta_ci_low_pct", "ci_low_pct"),
            ("delta_ci_high_pct", "ci_high_pct"),
            ("p_value", "p_value"),
            ("p_adjusted", "p_adjusted"),
        ):
            values[column].append(float(delta[source]) if delta is not None else math.nan)
        values["significant"].append(bool(delta["significant"]) if delta is not None else None)
        found = counts.get(key, {})
        values["invalid_points"].append(found.get("invalid_points", 0))
        values["warn_points"].append(found.get("warn", 0))
    for column in STAT_COLUMNS:
        table[column] = pd.Series(
            values[column], index=table.index, dtype=object if column == "significant" else None
        )
    return table


def models_without_baseline(peaks: pd.DataFrame, baseline: str) -> list[str]:
    """Models (with their run, when it has a name) that have results but none for the baseline scenario."""
    have = set(
        zip(
            peaks.loc[peaks["scenario"] == baseline, "run"],
            peaks.loc[peaks["scenario"] == baseline, "model"],
            strict=True,
        )
    )
    missing = []
    for run, model in dict.fromkeys(zip(peaks["run"], peaks["model"], strict=True)):
        if (run, model) not in have:
            missing.append(f"{model} (run {run})" if run else model)
    return missing
