"""`kvbench compare`: run B against run A, cell by cell, with the statistics `analyze` uses. Pure.

A cell is (model, scenario, concurrency); each scenario present in both runs also gets a row with
concurrency `peak`. Cells present in only one run are kept as rows saying so. The configuration the two
runs' point records carry (versions, workload, GuideLLM, per-scenario settings) is compared, and every
difference is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kvbench.deltas import PEAK, ROW_COLUMNS, compare_groups, finish
from kvbench.stats import THROUGHPUT, StatsOptions, usable
from kvbench.validity import Thresholds, evaluate, with_verdicts

BOTH, ONLY_A, ONLY_B = "both", "only A", "only B"
# Run-wide configuration compared between the runs: column -> label.
CONFIG_FACTS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("target", "target"),
    ("platform", "platform"),
    ("preset", "preset"),
    ("vllm_version", "vLLM"),
    ("lmcache_version", "LMCache"),
    ("guidellm_version", "GuideLLM"),
    ("guidellm_dialect", "GuideLLM dialect"),
    ("hardware", "hardware"),
    ("software", "software"),
    ("tensor_parallel_size", "tensor parallel size"),
    ("max_num_seqs", "max_num_seqs"),
    ("requested_duration_s", "duration (s)"),
    ("prompt_tokens", "prompt tokens"),
    ("output_tokens", "output tokens"),
    ("prefix_tokens", "prefix tokens"),
    ("prefix_count", "prefix count"),
    ("turns", "turns asked"),
    ("turns_sent", "turns sent"),
    ("warm_cache", "warm cache"),
)
# Per-scenario configuration compared for the scenarios both runs have.
SCENARIO_FACTS: tuple[tuple[str, str], ...] = (
    ("connector", "KV connector"),
    ("lmcache_connector", "LMCache connector"),
    ("index_store", "index store"),
    ("router", "router"),
    ("block_size", "block size"),
    ("cpu_offload_bytes", "CPU offload bytes"),
)
COMPARE_COLUMNS: tuple[str, ...] = (
    "model",
    "scenario",
    "concurrency",
    "present_in",
    "optimal_concurrency_a",
    "optimal_concurrency_b",
    "mean_a",
    "mean_b",
    "delta_pct",
    "ci_low_pct",
    "ci_high_pct",
    "p_value",
    "p_adjusted",
    "significant",
    "n_a",
    "n_b",
    "resolution",
    "resolution_pct",
    "above_resolution",
    "method",
    "correction",
    "guidellm_versions",
    "comparable",
    "invalid_points",
    "note",
    "run_a",
    "run_b",
)
_RENAME = {
    "mean": "mean_b",
    "reference_mean": "mean_a",
    "n": "n_b",
    "n_reference": "n_a",
    "optimal_concurrency": "optimal_concurrency_b",
    "reference_optimal_concurrency": "optimal_concurrency_a",
}


@dataclass(frozen=True)
class RunTable:
    """One run's tidy table (kvbench.table.build_table) and where it was read from."""

    path: Path
    run: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class RunComparison:
    a: RunTable
    b: RunTable
    deltas: pd.DataFrame  # COMPARE_COLUMNS (compare_deltas.csv)
    differences: list[tuple[str, str, str]]  # (what, in A, in B)
    validity_a: pd.DataFrame
    validity_b: pd.DataFrame
    options: StatsOptions
    include_invalid: bool

    def max_n(self) -> int:
        counts = self.deltas[["n_a", "n_b"]].min(axis=1) if not self.deltas.empty else pd.Series(dtype=float)
        return int(counts.max()) if counts.notna().any() else 0


def _values(frame: pd.DataFrame, column: str) -> str:
    if column not in frame.columns:
        return "—"
    found = sorted({_show(v) for v in frame[column] if v is not None and not pd.isna(v)})
    return " / ".join(found) or "—"


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def config_differences(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Every recorded configuration value that differs between the runs' measured points: (what, A, B)."""
    a, b = a[a["status"] == "ok"], b[b["status"] == "ok"]
    found = []
    for column, label in CONFIG_FACTS:
        in_a, in_b = _values(a, column), _values(b, column)
        if in_a != in_b:
            found.append((label, in_a, in_b))
    scenarios = [s for s in dict.fromkeys(a["scenario"]) if s in set(b["scenario"])]
    for scenario in scenarios:
        sa, sb = a[a["scenario"] == scenario], b[b["scenario"] == scenario]
        for column, label in SCENARIO_FACTS:
            in_a, in_b = _values(sa, column), _values(sb, column)
            if in_a != in_b:
                found.append((f"{scenario}: {label}", in_a, in_b))
    only_a = [s for s in dict.fromkeys(a["scenario"]) if s not in set(b["scenario"])]
    only_b = [s for s in dict.fromkeys(b["scenario"]) if s not in set(a["scenario"])]
    if only_a or only_b:
        found.append(
            ("scenarios measured in one run only", ", ".join(only_a) or "—", ", ".join(only_b) or "—")
        )
    return found


def _one_side(rows: pd.DataFrame, side: str, metric: str) -> list[dict[str, Any]]:
    """Rows for the levels of a group the other run does not have."""
    out = []
    for concurrency, group in rows.groupby(rows["concurrency"].astype(int), sort=True):
        values = pd.to_numeric(group[metric], errors="coerce").astype(float)
        mine, other = ("mean", "reference_mean") if side == ONLY_B else ("reference_mean", "mean")
        count, other_count = ("n", "n_reference") if side == ONLY_B else ("n_reference", "n")
        out.append(
            {
                "concurrency": int(concurrency),
                mine: float(values.mean()),
                other: np.nan,
                count: int(values.size),
                other_count: 0,
                "above_resolution": True,
                "invalid_points": 0,
                "present_in": side,
                "note": "no usable point of this scenario in the other run",
            }
        )
    return out


def compare_runs(
    a: RunTable,
    b: RunTable,
    options: StatsOptions | None = None,
    thresholds: Thresholds | None = None,
    include_invalid: bool = False,
    metric: str = THROUGHPUT,
) -> RunComparison:
    """Judge both runs, then compare every cell of B with the same cell of A (one correction family for the
    peaks and one for the levels)."""
    opts = options or StatsOptions()
    validity_a, validity_b = evaluate(a.frame, thresholds), evaluate(b.frame, thresholds)
    used_a = usable(with_verdicts(a.frame, validity_a), metric, include_invalid)
    used_b = usable(with_verdicts(b.frame, validity_b), metric, include_invalid)
    pairs = [
        (m, s) for used in (used_a, used_b) for m, s in zip(used["model"], used["scenario"], strict=True)
    ]
    groups = list(dict.fromkeys(pairs))
    rows: list[dict[str, Any]] = []
    for model, scenario in groups:
        ga = used_a[(used_a["model"] == model) & (used_a["scenario"] == scenario)]
        gb = used_b[(used_b["model"] == model) & (used_b["scenario"] == scenario)]
        head = {"model": model, "scenario": scenario}
        if ga.empty or gb.empty:
            side = ONLY_B if ga.empty else ONLY_A
            rows += [{**head, **row} for row in _one_side(gb if ga.empty else ga, side, metric)]
            continue
        key = f"{a.run}|{b.run}|{model}|{scenario}"
        for row in compare_groups(gb, ga, opts, key, metric):
            present = BOTH if row["n"] and row["n_reference"] else (ONLY_B if row["n"] else ONLY_A)
            rows.append({**head, **row, "present_in": present})
    table = pd.DataFrame(rows, columns=["model", "scenario", "present_in", *ROW_COLUMNS])
    table["family"] = np.where(table["concurrency"].astype(str) == PEAK, PEAK, "levels")
    table = finish(table, opts, ["family"]).drop(columns="family").rename(columns=_RENAME)
    table = table.assign(correction=opts.correction, run_a=a.run, run_b=b.run)
    return RunComparison(
        a,
        b,
        table[list(COMPARE_COLUMNS)],
        config_differences(a.frame, b.frame),
        validity_a,
        validity_b,
        opts,
        include_invalid,
    )
