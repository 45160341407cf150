"""The evidence columns of one kvbench point: its /metrics series and its scenario's PCP archives, read
and summarised inside the point's measured window (kvbench.metrics_summary)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kvbench.errors import InputError
from kvbench.ingest.metrics_pcp import pcp_tools_available, read_scenario_archives
from kvbench.ingest.metrics_series import point_series, point_window
from kvbench.metrics_summary import PCP_SUMMARY_METRICS, point_summary


def point_metrics_columns(
    point_file: Path, record: Mapping[str, Any], output_tokens: float
) -> dict[str, Any]:
    """METRICS_SUMMARY_COLUMNS of the point whose record is at `point_file`; a series or archive that cannot
    be read gives empty cells (kvbench metrics names the problem), never an error here."""
    point_dir = point_file.parent
    evidence = record.get("evidence") if isinstance(record.get("evidence"), Mapping) else {}
    window = point_window(record)
    try:
        series = point_series(point_dir)
    except InputError:
        series = None
    pcp = None
    if window is not None and pcp_tools_available():
        pcp, _ = read_scenario_archives(point_dir.parent, PCP_SUMMARY_METRICS)
    return point_summary(
        series.frame if series is not None else None,
        pcp,
        window,
        evidence or {},
        (series.scrapes, series.failed) if series is not None else (0, 0),
        output_tokens,
    )


def output_tokens_of(record: Mapping[str, Any]) -> float:
    """Output tokens of a GuideLLM row: mean per request x successful requests."""
    mean, count = record.get("output_tokens_mean"), record.get("requests_successful")
    if isinstance(mean, float | int) and isinstance(count, float | int):
        return float(mean) * float(count)
    return math.nan
