"""Per-cell and peak deltas of a treated group against a reference group, tested and corrected. Pure.

`compare_groups` is the one comparison both `kvbench analyze` (a scenario against the baseline of the same
run) and `kvbench compare` (run B against run A, cell by cell) use: one row per concurrency level (Welch's
test on log throughput) and one row with concurrency `peak` (the bootstrap that recomputes both peaks).
`finish` adjusts the p-values of a family and decides what is significant.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from packaging.version import InvalidVersion, Version

from kvbench.stats import (
    THROUGHPUT,
    StatsOptions,
    adjust,
    bootstrap_peak_ratio,
    point_resolution,
    welch_log_ratio,
)

PEAK = "peak"
# Generic columns of one comparison row; callers rename the reference's to their own words.
ROW_COLUMNS: tuple[str, ...] = (
    "concurrency",
    "optimal_concurrency",
    "reference_optimal_concurrency",
    "mean",
    "reference_mean",
    "delta_pct",
    "ci_low_pct",
    "ci_high_pct",
    "p_value",
    "p_adjusted",
    "significant",
    "n",
    "n_reference",
    "resolution",
    "resolution_pct",
    "above_resolution",
    "method",
    "guidellm_versions",
    "comparable",
    "invalid_points",
    "note",
)
WELCH = "welch-log"
BOOTSTRAP = "bootstrap-peak"


def is_true(value: object) -> bool:
    """A cell of a boolean column that may also hold None/NaN (untested, or not applicable)."""
    return value is not None and not pd.isna(value) and bool(value)


def _levels(rows: pd.DataFrame, metric: str) -> dict[int, np.ndarray]:
    """Concurrency -> the repetitions' values, in concurrency order."""
    values = pd.to_numeric(rows[metric], errors="coerce").astype(float)
    levels: dict[int, np.ndarray] = {}
    for concurrency in sorted({int(c) for c in rows["concurrency"]}):
        mask = rows["concurrency"].astype(float) == concurrency
        levels[concurrency] = np.sort(values[mask].to_numpy())  # independent of the order rows were read
    return levels


def _resolutions(rows: pd.DataFrame) -> dict[int, float]:
    if rows.empty:
        return {}
    resolution = point_resolution(rows)
    grouped = resolution.groupby(rows["concurrency"].astype(int)).mean()
    return {int(c): float(v) for c, v in grouped.items()}


def minor_version(version: str) -> str:
    """`0.8.1` -> `0.8`: GuideLLM's throughput definition changes between minor releases."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        return version
    return f"{parsed.major}.{parsed.minor}"


def _versions(rows: Iterable[pd.DataFrame]) -> tuple[str | None, bool]:
    found = sorted({str(v) for frame in rows for v in frame.get("guidellm_version", pd.Series()).dropna()})
    comparable = len({minor_version(v) for v in found}) <= 1
    return (", ".join(found) or None), comparable


def _invalid(rows: Iterable[pd.DataFrame]) -> int:
    return int(sum((frame["verdict"] == "invalid").sum() for frame in rows if "verdict" in frame.columns))


def _rng(options: StatsOptions, key: str) -> np.random.Generator:
    """A generator per comparison, from the seed and the comparison's name: results do not depend on which
    other comparisons ran, nor on their order."""
    return np.random.default_rng([options.seed, zlib.crc32(key.encode())])


def _resolution_fields(diff: float, resolution: float, reference_mean: float) -> dict[str, Any]:
    above = bool(abs(diff) >= resolution) if not math.isnan(resolution) and not math.isnan(diff) else True
    pct = (
        resolution / reference_mean * 100.0 if reference_mean and not math.isnan(reference_mean) else math.nan
    )
    return {"resolution": resolution, "resolution_pct": pct, "above_resolution": above}


def compare_groups(
    treated: pd.DataFrame,
    reference: pd.DataFrame,
    options: StatsOptions,
    key: str,
    metric: str = THROUGHPUT,
) -> list[dict[str, Any]]:
    """Rows (ROW_COLUMNS, p_adjusted and significant left for `finish`) comparing the usable rows of one
    treated group with those of its reference: every level either has, then the peak."""
    levels_t, levels_r = _levels(treated, metric), _levels(reference, metric)
    res_t, res_r = _resolutions(treated), _resolutions(reference)
    rows: list[dict[str, Any]] = []
    for concurrency in sorted(set(levels_t) | set(levels_r)):
        a, b = levels_t.get(concurrency), levels_r.get(concurrency)
        subset_t = treated[treated["concurrency"].astype(float) == concurrency]
        subset_r = reference[reference["concurrency"].astype(float) == concurrency]
        versions, comparable = _versions((subset_t, subset_r))
        row: dict[str, Any] = {
            "concurrency": concurrency,
            "optimal_concurrency": math.nan,
            "reference_optimal_concurrency": math.nan,
            "mean": float(a.mean()) if a is not None else math.nan,
            "reference_mean": float(b.mean()) if b is not None else math.nan,
            "n": 0 if a is None else int(a.size),
            "n_reference": 0 if b is None else int(b.size),
            "method": WELCH,
            "guidellm_versions": versions,
            "comparable": comparable,
            "invalid_points": _invalid((subset_t, subset_r)),
        }
        if a is None or b is None:
            row.update(delta_pct=math.nan, note="only one side has a usable point at this level")
            row.update(_resolution_fields(math.nan, math.nan, math.nan))
        else:
            delta = welch_log_ratio(a, b, options.confidence)
            resolution = max(res_t.get(concurrency, math.nan), res_r.get(concurrency, math.nan))
            row.update(
                delta_pct=delta.delta_pct,
                ci_low_pct=delta.ci_low_pct,
                ci_high_pct=delta.ci_high_pct,
                p_value=delta.p_value,
                note=delta.note,
            )
            row.update(
                _resolution_fields(row["mean"] - row["reference_mean"], resolution, row["reference_mean"])
            )
        rows.append(row)
    if levels_t and levels_r:
        rows.append(_peak_row(levels_t, levels_r, res_t, res_r, treated, reference, options, key))
    return rows


def _peak_row(
    levels_t: dict[int, np.ndarray],
    levels_r: dict[int, np.ndarray],
    res_t: dict[int, float],
    res_r: dict[int, float],
    treated: pd.DataFrame,
    reference: pd.DataFrame,
    options: StatsOptions,
    key: str,
) -> dict[str, Any]:
    order_t, order_r = list(levels_t), list(levels_r)
    peak = bootstrap_peak_ratio(
        [levels_t[c] for c in order_t],
        [levels_r[c] for c in order_r],
        options.confidence,
        options.resamples,
        _rng(options, key),
    )
    optimal_t, optimal_r = order_t[peak.treated_optimal], order_r[peak.reference_optimal]
    mean_t, mean_r = float(levels_t[optimal_t].mean()), float(levels_r[optimal_r].mean())
    versions, comparable = _versions((treated, reference))
    row: dict[str, Any] = {
        "concurrency": PEAK,
        "optimal_concurrency": optimal_t,
        "reference_optimal_concurrency": optimal_r,
        "mean": mean_t,
        "reference_mean": mean_r,
        "delta_pct": peak.delta.delta_pct,
        "ci_low_pct": peak.delta.ci_low_pct,
        "ci_high_pct": peak.delta.ci_high_pct,
        "p_value": peak.delta.p_value,
        "n": int(levels_t[optimal_t].size),
        "n_reference": int(levels_r[optimal_r].size),
        "method": BOOTSTRAP,
        "guidellm_versions": versions,
        "comparable": comparable,
        "invalid_points": _invalid((treated, reference)),
        "note": peak.delta.note,
    }
    resolution = max(res_t.get(optimal_t, math.nan), res_r.get(optimal_r, math.nan))
    row.update(_resolution_fields(mean_t - mean_r, resolution, mean_r))
    return row


def _reason(row: pd.Series) -> str | None:
    """Why a tested row is not significant, where that is not the p-value alone."""
    if not row["above_resolution"]:
        return "difference below the measurement resolution"
    if row["invalid_points"]:
        return "includes invalid points"
    return None


def finish(rows: pd.DataFrame, options: StatsOptions, family: list[str]) -> pd.DataFrame:
    """Adjust the p-values within each family (rows sharing the `family` columns) and mark significance:
    adjusted p below alpha, a difference at least the measurement resolution, and no invalid point."""
    if rows.empty:
        return rows.assign(p_adjusted=pd.Series(dtype=float), significant=pd.Series(dtype=bool))
    rows = rows.copy()
    rows["p_adjusted"] = math.nan
    for _, group in rows.groupby(family, sort=False, dropna=False):
        index = group.index
        rows.loc[index, "p_adjusted"] = adjust(rows.loc[index, "p_value"].to_numpy(float), options.correction)
    tested = rows["p_adjusted"].notna()
    passes = tested & (rows["p_adjusted"] < options.alpha)
    rows["significant"] = passes & rows["above_resolution"].astype(bool) & (rows["invalid_points"] == 0)
    for index in rows.index[passes & ~rows["significant"]]:
        reason = _reason(rows.loc[index])
        note = rows.at[index, "note"]
        rows.at[index, "note"] = f"{note}; {reason}" if isinstance(note, str) and note else reason
    return rows


DELTA_COLUMNS: tuple[str, ...] = (
    "run",
    "model",
    "scenario",
    "baseline_scenario",
    "concurrency",
    "optimal_concurrency",
    "baseline_optimal_concurrency",
    "mean",
    "baseline_mean",
    "delta_pct",
    "ci_low_pct",
    "ci_high_pct",
    "p_value",
    "p_adjusted",
    "significant",
    "n",
    "n_baseline",
    "resolution",
    "resolution_pct",
    "above_resolution",
    "method",
    "correction",
    "guidellm_versions",
    "comparable",
    "invalid_points",
    "note",
)
_TO_BASELINE = {
    "reference_optimal_concurrency": "baseline_optimal_concurrency",
    "reference_mean": "baseline_mean",
    "n_reference": "n_baseline",
}


def baseline_deltas(
    rows: pd.DataFrame, baseline: str, options: StatsOptions, metric: str = THROUGHPUT
) -> pd.DataFrame:
    """delta_vs_baseline.csv: every scenario of a run against the baseline of the same run and model, per
    level and at the peak (`concurrency` = peak). `rows` are the usable rows; one family per run."""
    out: list[dict[str, Any]] = []
    for (run, model), group in rows.groupby(["run", "model"], sort=False):
        base = group[group["scenario"] == baseline]
        if base.empty:
            continue
        for scenario, treated in group.groupby("scenario", sort=False):
            if scenario == baseline:
                continue
            key = f"{run}|{model}|{scenario}|{baseline}"
            for row in compare_groups(treated, base, options, key, metric):
                out.append(
                    {"run": run, "model": model, "scenario": scenario, "baseline_scenario": baseline, **row}
                )
    table = pd.DataFrame(out, columns=["run", "model", "scenario", "baseline_scenario", *ROW_COLUMNS])
    table["family"] = np.where(table["concurrency"].astype(str) == PEAK, PEAK, "levels")
    table = finish(table, options, ["run", "family"]).drop(columns="family").rename(columns=_TO_BASELINE)
    table["correction"] = options.correction
    return table[list(DELTA_COLUMNS)]
