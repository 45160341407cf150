"""`kvbench metrics RUN --out DIR`: a run's /metrics series and PCP archives as tidy tables, each row placed
in the measured window of its point, plus the per-point summary and the evidence figures.

Outputs (Parquet; CSV too with --csv): series.parquet (t, t_rel_s, scenario, concurrency, repetition,
point, in_window, url, sample, value), pcp.parquet (t, t_rel_s, scenario, concurrency, repetition, point,
in_window, host, archive, metric, instance, value; rows outside every window keep an empty point),
points.parquet (one row per point: window, status and kvbench.metrics_summary's columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kvbench.errors import InputError
from kvbench.ingest.metrics_pcp import pcp_tools_available, read_scenario_archives
from kvbench.ingest.metrics_series import point_series, point_window
from kvbench.ingest.records import read_record
from kvbench.metrics_summary import Window, point_summary

POINT_KEYS: tuple[str, ...] = ("scenario", "concurrency", "repetition", "point")


@dataclass
class RunMetrics:
    series: pd.DataFrame
    pcp: pd.DataFrame
    points: pd.DataFrame
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Point:
    directory: Path
    record: dict[str, Any]
    window: Window | None

    @property
    def keys(self) -> dict[str, Any]:
        return {
            "scenario": self.record.get("scenario"),
            "concurrency": self.record.get("concurrency"),
            "repetition": self.record.get("repetition"),
            "point": self.directory.name,
        }


def _points(run_dir: Path, problems: list[str]) -> list[_Point]:
    found = []
    for path in sorted(run_dir.glob("*/c*-r*/point.json")):
        try:
            record = read_record(path, "point")
        except InputError as exc:
            problems.append(str(exc))
            continue
        found.append(_Point(path.parent, record, point_window(record)))
    return found


def _place(frame: pd.DataFrame, point: _Point) -> pd.DataFrame:
    placed = frame.assign(**point.keys)
    if point.window is None:
        return placed.assign(in_window=False, t_rel_s=float("nan"))
    start, end = point.window.start, point.window.end
    return placed.assign(in_window=(placed["t"] >= start) & (placed["t"] <= end), t_rel_s=placed["t"] - start)


def _assign_windows(pcp: pd.DataFrame, points: list[_Point]) -> pd.DataFrame:
    """Label each archive row with the point whose window holds it (empty outside every window)."""
    labelled = pcp.assign(
        scenario=None, concurrency=pd.NA, repetition=pd.NA, point=None, in_window=False, t_rel_s=float("nan")
    )
    for point in points:
        if point.window is None:
            continue
        inside = (labelled["t"] >= point.window.start) & (labelled["t"] <= point.window.end)
        for key, value in point.keys.items():
            labelled.loc[inside, key] = value
        labelled.loc[inside, "in_window"] = True
        labelled.loc[inside, "t_rel_s"] = labelled.loc[inside, "t"] - point.window.start
    return labelled


def _output_tokens(point_dir: Path) -> float:
    """Output tokens of the point's benchmark from its GuideLLM report (mean x successful requests)."""
    from kvbench.ingest.guidellm import extract_records
    from kvbench.ingest.metrics_point import output_tokens_of
    from kvbench.ingest.reader import read_document

    for name in ("guidellm.json.zst", "guidellm.json"):
        if (point_dir / name).is_file():
            try:
                rows = extract_records(read_document(point_dir / name))
            except InputError:
                return float("nan")
            return output_tokens_of(rows[0]) if rows else float("nan")
    return float("nan")


def collect(run_dir: Path) -> RunMetrics:
    """Everything `kvbench metrics` writes, for one run directory."""
    problems: list[str] = []
    points = _points(run_dir, problems)
    if not points:
        raise InputError(f"{run_dir}: no kvbench point records (<scenario>/c<CCCC>-r<R>/point.json)")
    series_frames, summaries = [], []
    archives: dict[str, pd.DataFrame] = {}
    tools = pcp_tools_available()
    if not tools:
        problems.append("PCP's Python binding (python3-pcp) not found: PCP archives not read")
    for point in points:
        scenario_dir = point.directory.parent
        if tools and scenario_dir.name not in archives:
            archives[scenario_dir.name], bad = read_scenario_archives(scenario_dir)
            problems += bad
        try:
            series = point_series(point.directory)
        except InputError as exc:
            problems.append(str(exc))
            series = None
        if series is not None and not series.frame.empty:
            series_frames.append(_place(series.frame, point))
        if series is not None and series.skipped_lines:
            problems.append(f"{point.directory}/metrics: {series.skipped_lines} damaged line(s) skipped")
        evidence = point.record.get("evidence") or {}
        summary = point_summary(
            series.frame if series is not None else None,
            archives.get(scenario_dir.name),
            point.window,
            evidence,
            (series.scrapes, series.failed) if series is not None else (0, 0),
            _output_tokens(point.directory),
        )
        summaries.append(
            {
                **point.keys,
                "status": point.record.get("status"),
                "window_start": point.window.start if point.window else float("nan"),
                "window_end": point.window.end if point.window else float("nan"),
                **summary,
            }
        )
    pcp_all = [frame for frame in archives.values() if not frame.empty]
    pcp = _assign_windows(pd.concat(pcp_all, ignore_index=True), points) if pcp_all else pd.DataFrame()
    series_all = pd.concat(series_frames, ignore_index=True) if series_frames else pd.DataFrame()
    return RunMetrics(series_all, pcp, pd.DataFrame.from_records(summaries), problems)
