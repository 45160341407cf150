"""The tidy table: one row per load point x repetition of a run (and per benchmark of a multi-level file).

Rows are keyed by (run, model, scenario, concurrency, repetition). Two runs are never merged: a repetition
is always one of its own run. Rows of failed, skipped or unreadable points stay in the table with their
status and reason and NaN metrics, so that validity and confidence-interval work can build on the same
table. The configuration and evidence of kvbench point records follow the metrics as plain columns.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import pandas as pd

from kvbench.ingest.guidellm import METRIC_COLUMNS, SIGNAL_COLUMNS
from kvbench.ingest.point_columns import POINT_COLUMNS, POINT_INT_COLUMNS
from kvbench.metrics_summary import METRICS_SUMMARY_COLUMNS, METRICS_SUMMARY_INT_COLUMNS
from kvbench.naming import DEFAULT_ORDERING, Ordering

KEY_COLUMNS: tuple[str, ...] = ("run", "model", "scenario", "concurrency", "repetition")
IDENTITY_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "status",
    "reason",
    "scenario_raw",
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
COLUMNS: tuple[str, ...] = (
    *IDENTITY_COLUMNS,
    *METRIC_COLUMNS,
    *SIGNAL_COLUMNS,
    *POINT_COLUMNS,
    *METRICS_SUMMARY_COLUMNS,
    *PROVENANCE_COLUMNS,
)
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
    *POINT_INT_COLUMNS,
    *METRICS_SUMMARY_INT_COLUMNS,
)
# A row that repeats the key of a kvbench point already read (the same run directory given twice).
DUPLICATE = "duplicate"


def _number(value: Any) -> float:
    return value if isinstance(value, float) else math.nan


def _key(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record[k] for k in KEY_COLUMNS)


def _resolve_duplicates(records: list[dict[str, Any]], warn: TextIO) -> None:
    """Deal with two results for the same (run, model, scenario, concurrency, repetition).

    A kvbench point is identified by its record: a second copy of it (the same run read twice) is marked
    `duplicate` and left out of the statistics. Other layouts have no repetition number: a second result of
    the same point within the same run is kept as the next free repetition and reported. Results of
    different runs never meet here, since the run is part of the key.
    """
    first_file: dict[tuple[Any, ...], str] = {}
    for record in records:
        if record.get("status") != "ok" or math.isnan(_number(record.get("concurrency"))):
            continue
        key = _key(record)
        if key not in first_file:
            first_file[key] = str(record["source_file"])
            continue
        where = f"{record['model']} / {record['scenario']} / concurrency {record['concurrency']:g}"
        if record.get("layout") == "kvbench":
            record["status"] = DUPLICATE
            record["reason"] = f"the same point of run {record['run']} as {first_file[key]}"
            print(
                f"kvbench: note: {record['source_file']}: {where} already read; not counted twice", file=warn
            )
            continue
        repetition = record["repetition"] if not math.isnan(record["repetition"]) else 1.0
        while (*key[:-1], repetition) in first_file:
            repetition += 1.0
        note = f"{where} already read; kept as repetition {repetition:g}"
        print(f"kvbench: note: {record['source_file']}: {note}", file=warn)
        record["repetition"] = repetition
        first_file[_key(record)] = str(record["source_file"])


def build_table(
    records: Iterable[dict[str, Any]], ordering: Ordering = DEFAULT_ORDERING, warn: TextIO = sys.stderr
) -> pd.DataFrame:
    """The tidy DataFrame, ordered by model size, run, scenario order, concurrency and repetition."""
    rows = list(records)
    _resolve_duplicates(rows, warn)
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    for column in INT_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        whole = values.dropna()
        if (whole == whole.round()).all():  # integers stay integers (nullable); others stay floats
            values = values.astype("Int64")
        frame[column] = values
    frame["run"] = frame["run"].fillna("").astype(str)
    if frame.empty:
        return frame
    order = sorted(
        range(len(frame)),
        key=lambda i: (
            ordering.model_key(frame.at[i, "model"]),
            ordering.run_key(frame.at[i, "run"]),
            ordering.scenario_key(frame.at[i, "scenario"]),
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


def runs_in(frame: pd.DataFrame) -> list[str]:
    """The runs of a table sorted by build_table or peak_table, in report order (by model size, a run
    holding one model)."""
    return list(dict.fromkeys(frame["run"])) if not frame.empty else []
