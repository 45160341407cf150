"""The tidy table: one row per load point x repetition (and per benchmark of a multi-level file).

Rows of failed, skipped or unreadable points stay in the table with their status and reason and NaN
metrics, so that validity and confidence-interval work can build on the same table.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import pandas as pd

from kvbench.ingest.guidellm import METRIC_COLUMNS
from kvbench.naming import model_sort_key, scenario_sort_key

KEY_COLUMNS: tuple[str, ...] = ("model", "scenario", "concurrency", "repetition")
IDENTITY_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "status",
    "reason",
    "scenario_raw",
    "run",
    "hardware",
    "software",
    "replicas",
    "strategy",
    "rate",
)
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "start_time",
    "guidellm_version",
    "report_format",
    "layout",
    "benchmark_index",
    "source_file",
)
COLUMNS: tuple[str, ...] = (*IDENTITY_COLUMNS, *METRIC_COLUMNS, *PROVENANCE_COLUMNS)
INT_COLUMNS: tuple[str, ...] = (
    "concurrency",
    "repetition",
    "replicas",
    "requests_successful",
    "requests_errored",
    "requests_incomplete",
    "requests_total",
    "report_format",
    "benchmark_index",
)


def _number(value: Any) -> float:
    return value if isinstance(value, float) else math.nan


def _renumber_duplicates(records: list[dict[str, Any]], warn: TextIO) -> None:
    """Give repeated (model, scenario, concurrency, repetition) keys the next free repetition.

    Two results for the same key come from the same point being run again (or two trees of the same
    model/scenario); they are kept as separate repetitions and reported, never silently merged.
    """
    taken: set[tuple[Any, ...]] = set()
    for record in records:
        if record.get("status") != "ok" or math.isnan(_number(record.get("concurrency"))):
            continue
        key = tuple(record[k] for k in KEY_COLUMNS)
        if key not in taken:
            taken.add(key)
            continue
        repetition = record["repetition"] if not math.isnan(record["repetition"]) else 1.0
        while (record["model"], record["scenario"], record["concurrency"], repetition) in taken:
            repetition += 1.0
        print(
            f"kvbench: note: {record['source_file']}: {record['model']} / {record['scenario']} / "
            f"concurrency {record['concurrency']:g} already read; kept as repetition {repetition:g}",
            file=warn,
        )
        record["repetition"] = repetition
        taken.add((record["model"], record["scenario"], record["concurrency"], repetition))


def build_table(records: Iterable[dict[str, Any]], warn: TextIO = sys.stderr) -> pd.DataFrame:
    """The tidy DataFrame, ordered by model size, scenario order, concurrency and repetition."""
    rows = list(records)
    _renumber_duplicates(rows, warn)
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    for column in INT_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        whole = values.dropna()
        if (whole == whole.round()).all():  # integers stay integers (nullable); others stay floats
            values = values.astype("Int64")
        frame[column] = values
    if frame.empty:
        return frame
    order = sorted(
        range(len(frame)),
        key=lambda i: (
            model_sort_key(frame.at[i, "model"]),
            scenario_sort_key(frame.at[i, "scenario"]),
            _sortable(frame.at[i, "concurrency"]),
            _sortable(frame.at[i, "repetition"]),
            str(frame.at[i, "source_file"]),
        ),
    )
    return frame.iloc[order].reset_index(drop=True)


def _sortable(value: Any) -> float:
    return math.inf if value is pd.NA or value is None else float(value)


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows usable for statistics: status ok, a concurrency level and a throughput value."""
    mask = (frame["status"] == "ok") & frame["concurrency"].notna() & frame["output_tok_s_successful"].notna()
    return frame.loc[mask]
