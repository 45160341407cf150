"""Peak throughput per (model, scenario) and its change against the baseline scenario.

The original analysis defines the peak as the highest `metrics.output_tokens_per_second.successful.mean`
over the concurrency levels of a (model, scenario); the level that reaches it is the optimal concurrency.
With several repetitions of a level, the level's value is the mean over its repetitions.
"""

from __future__ import annotations

import math

import pandas as pd

from kvbench.naming import model_sort_key, scenario_sort_key
from kvbench.table import ok_rows

THROUGHPUT = "output_tok_s_successful"
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
_BASELINE_COLUMNS = ("delta_vs_baseline_pct", "baseline_scenario", "baseline_peak_output_tok_s")
PEAK_COLUMNS: tuple[str, ...] = (
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


def level_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean of every metric per (model, scenario, concurrency) over repetitions, with their count."""
    usable = ok_rows(frame)
    columns = [THROUGHPUT, *AT_PEAK]
    if usable.empty:
        return pd.DataFrame(columns=["model", "scenario", "concurrency", *columns, "repetitions"])
    grouped = usable.groupby(["model", "scenario", "concurrency"], sort=False)
    means = grouped[columns].mean()
    means["repetitions"] = grouped.size()
    return means.reset_index()


def peak_table(frame: pd.DataFrame, baseline: str = "no-offload") -> pd.DataFrame:
    """One row per (model, scenario): peak, optimal concurrency and % change against the baseline."""
    levels = level_means(frame)
    rows: list[dict[str, object]] = []
    for (model, scenario), group in levels.groupby(["model", "scenario"], sort=False):
        group = group.sort_values("concurrency", kind="stable")
        best = group.loc[group[THROUGHPUT].idxmax()]
        row: dict[str, object] = {
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
    baseline_of = {r["model"]: r["peak_output_tok_s"] for r in rows if r["scenario"] == baseline}
    peaks["baseline_scenario"] = baseline
    peaks["baseline_peak_output_tok_s"] = [baseline_of.get(m, math.nan) for m in peaks["model"]]
    peaks["delta_vs_baseline_pct"] = [
        (peak - base) / base * 100.0 if base and not math.isnan(base) else math.nan
        for peak, base in zip(peaks["peak_output_tok_s"], peaks["baseline_peak_output_tok_s"], strict=True)
    ]
    peaks = peaks[list(PEAK_COLUMNS)]
    if peaks.empty:
        return peaks
    order = sorted(
        range(len(peaks)),
        key=lambda i: (model_sort_key(peaks.at[i, "model"]), scenario_sort_key(peaks.at[i, "scenario"])),
    )
    return peaks.iloc[order].reset_index(drop=True)


def models_without_baseline(peaks: pd.DataFrame, baseline: str) -> list[str]:
    """Models that have results but none for the baseline scenario."""
    have = set(peaks.loc[peaks["scenario"] == baseline, "model"])
    return [m for m in dict.fromkeys(peaks["model"]) if m not in have]
