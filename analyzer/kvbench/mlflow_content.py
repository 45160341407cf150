"""What `kvbench export mlflow` logs for one run directory: one parent MLflow run for the sweep and one nested
run per point, each with its params, metrics, metric histories and artifacts. Builds plain values only;
kvbench.export_mlflow talks to MLflow.

- Sweep (parent): the plan's configuration as params (scenarios and points left to the children), each
  scenario's peak statistics as metrics, the analysis (report.md, report.html, figures, CSVs) and redacted
  copies of plan.json and manifest.json as artifacts.
- Point (child): the scenario's resolved settings from the plan and the point record's configuration and
  workload as params; the point's GuideLLM statistics and evidence (one row of complete_metrics.csv) as
  metrics at the point's end; its /metrics scrapes (`metrics/series.jsonl.gz`) and its scenario's PCP
  archives, clipped to the point, as metric histories with their own timestamps; a redacted point.json.

Every name and value passes kvbench.secrets_filter first.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from kvbench.analysis import Analysis, analyse
from kvbench.errors import InputError
from kvbench.ingest import ingest
from kvbench.ingest.metrics_pcp import pcp_tools_available, read_scenario_archives
from kvbench.ingest.metrics_series import point_series, point_window
from kvbench.ingest.point_columns import CONFIG_COLUMNS, WORKLOAD_COLUMNS
from kvbench.ingest.records import MANIFEST_FILE, PLAN_FILE, read_optional, read_plan
from kvbench.render import write_json
from kvbench.secrets_filter import is_secret_name, mask_urls, redact
from kvbench.table import IDENTITY_COLUMNS, PROVENANCE_COLUMNS

TAG_RUN = "kvbench.run_id"
TAG_KIND = "kvbench.kind"
TAG_POINT = "kvbench.point_id"
SWEEP, POINT = "sweep", "point"
# Plan sections that become the children's params (scenarios) or runs (points), not the parent's params.
_PLAN_NOT_PARAMS = frozenset({"scenarios", "points", "schedule", "schema_version", "kind"})
_NOT_METRICS = frozenset({*IDENTITY_COLUMNS, *PROVENANCE_COLUMNS, *CONFIG_COLUMNS, *WORKLOAD_COLUMNS})
_BAD_NAME_CHARS = re.compile(r"[^\w.\- :/]")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
MAX_NAME = 250
ANALYSIS_SUFFIXES = (".md", ".html", ".png", ".csv")


@dataclass(frozen=True)
class MetricValue:
    key: str
    value: float
    timestamp_ms: int
    step: int


@dataclass
class RunExport:
    """One MLflow run to create or bring up to date."""

    name: str
    kind: str
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[MetricValue] = field(default_factory=list)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # file, artifact folder
    start_ms: int | None = None
    end_ms: int | None = None
    status: str = "FINISHED"

    def digest(self) -> str:
        """The sha256 of everything this run would log: equal digests need no update."""
        h = hashlib.sha256()
        h.update(json.dumps([self.name, self.tags, self.params, self.status], sort_keys=True).encode())
        for m in self.metrics:
            h.update(f"{m.key}\0{m.value!r}\0{m.timestamp_ms}\0{m.step}\n".encode())
        for path, folder in self.artifacts:
            h.update(f"{folder}/{path.name}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()


@dataclass
class SweepExport:
    run_id: str
    parent: RunExport
    points: list[RunExport]
    notes: list[str] = field(default_factory=list)


def metric_name(name: str) -> str:
    """A name MLflow accepts: only letters, digits, `_ - . : / space`, no empty or dot path parts."""
    clean = _BAD_NAME_CHARS.sub("_", name)
    parts = [part if part not in ("", ".", "..") else "_" for part in clean.split("/")]
    return "/".join(parts)[:MAX_NAME]


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        return mask_urls(value)
    return mask_urls(json.dumps(value, sort_keys=True, separators=(",", ":")))


def flatten(document: Any, prefix: str, into: dict[str, str]) -> dict[str, str]:
    """Nested mappings as `prefix.a.b` params; lists and scalars as JSON (strings as they are); None and
    credential-named keys left out."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if not is_secret_name(str(key)):
                flatten(value, name, into)
        return into
    if document is None or not prefix:
        return into
    if isinstance(document, list):
        document = redact(document)
    into[metric_name(prefix)] = _param_value(document)
    return into


def _ms(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value is pd.NA:
        return None
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def point_statistics(row: Mapping[str, Any], timestamp_ms: int) -> list[MetricValue]:
    """The numbers of a point's row of the analysis table (statistics and evidence), step 0."""
    values = []
    for column, value in row.items():
        number = _number(value)
        if column in _NOT_METRICS or number is None:
            continue
        values.append(MetricValue(metric_name(str(column)), number, timestamp_ms, 0))
    return values


def _sample_name(url: str, sample: str) -> str:
    """`metrics/<host:port>/<metric>/<label>:<value>...` for one Prometheus sample of one server."""
    name, _, labels = sample.partition("{")
    parts = [f"{key}:{value.replace('/', '_')}" for key, value in _LABEL.findall(labels)]
    server = urlsplit(url).netloc or "server"
    return metric_name("/".join(["metrics", server, name, *parts]))


def series_histories(frame: pd.DataFrame) -> list[MetricValue]:
    """Every sample of every scrape, timestamped by its scrape; the step is the scrape's number."""
    values: list[MetricValue] = []
    for url, scrapes in frame.groupby("url", sort=True):
        steps = {t: i for i, t in enumerate(sorted(set(scrapes["t"])))}
        for t, sample, value in zip(scrapes["t"], scrapes["sample"], scrapes["value"], strict=True):
            values.append(
                MetricValue(_sample_name(str(url), str(sample)), float(value), int(t * 1000), steps[t])
            )
    return values


def pcp_histories(frame: pd.DataFrame, start_s: float, end_s: float) -> list[MetricValue]:
    """A scenario's PCP values inside one point's window: `pcp/<host>/<metric>[/<instance>]`."""
    inside = frame[(frame["t"] >= start_s) & (frame["t"] <= end_s)]
    values: list[MetricValue] = []
    for host, rows in inside.groupby("host", sort=True):
        steps = {t: i for i, t in enumerate(sorted(set(rows["t"])))}
        for t, metric, instance, value in zip(
            rows["t"], rows["metric"], rows["instance"], rows["value"], strict=True
        ):
            parts = ["pcp", str(host), str(metric)] + ([str(instance)] if instance else [])
            values.append(MetricValue(metric_name("/".join(parts)), float(value), int(t * 1000), steps[t]))
    return values


def _analysis_artifacts(analysis: Path | None) -> list[tuple[Path, str | None]]:
    if analysis is None or not analysis.is_dir():
        return []
    files = sorted(p for p in analysis.iterdir() if p.is_file() and p.suffix in ANALYSIS_SUFFIXES)
    return [(path, "analysis") for path in files]


def _redacted_copy(document: Mapping[str, Any], staging: Path, name: str) -> Path:
    path = staging / name
    write_json(path, redact(document))
    return path


def _rows_by_point(frame: pd.DataFrame) -> dict[tuple, dict]:
    rows: dict[tuple, dict] = {}
    for row in frame.to_dict("records"):
        if pd.isna(row.get("concurrency")) or pd.isna(row.get("repetition")):
            continue
        key = (str(row["scenario"]), int(row["concurrency"]), int(row["repetition"]))
        rows.setdefault(key, row)
    return rows


def analysis_of(run_dir: Path, baseline: str = "no-offload") -> Analysis:
    """The analysis of one run directory, as `kvbench analyze` computes it."""
    from kvbench.outputs import table_of

    result = ingest([run_dir])
    frame, ordering = table_of(result, lambda _line: None)
    return analyse(frame, baseline, ordering=ordering)


class _PcpCache:
    """Each scenario's archives read once (pmrep is slow), only where PCP's tools are installed."""

    def __init__(self, run_dir: Path, notes: list[str]) -> None:
        self.run_dir, self.notes = run_dir, notes
        self.frames: dict[str, pd.DataFrame] = {}
        self.tools = pcp_tools_available()

    def of(self, scenario: str) -> pd.DataFrame | None:
        folder = self.run_dir / scenario / "pcp"
        if not folder.is_dir():
            return None
        if not self.tools:
            if "pcp" not in self.frames:
                self.notes.append("PCP archives not exported: pmrep/pminfo are not installed here")
                self.frames["pcp"] = pd.DataFrame()
            return None
        if scenario not in self.frames:
            frame, problems = read_scenario_archives(self.run_dir / scenario)
            self.notes += problems
            self.frames[scenario] = frame
        return self.frames[scenario]


def sweep_export(
    run_dir: Path,
    staging: Path,
    analysis: Path | None,
    result: Analysis,
) -> SweepExport:
    """Everything to log for the run directory `run_dir` (analysed as `result`; its report and figures in
    `analysis`); redacted copies of records are written into `staging`."""
    plan = read_plan(run_dir)
    run_id = str(plan["run_id"])
    manifest = read_optional(run_dir / MANIFEST_FILE, "manifest")
    staging.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    rows = _rows_by_point(result.frame)
    scenarios = {s["name"]: s for s in plan.get("scenarios", [])}
    pcp = _PcpCache(run_dir, notes)
    points: list[RunExport] = []
    ends: list[int] = []
    for planned in plan.get("points", []):
        point_dir = run_dir / planned["dir"]
        record = read_optional(point_dir / "point.json", "point")
        if record is None:
            continue  # not run yet: nothing to export
        points.append(_point_export(run_id, planned, record, point_dir, scenarios, rows, staging, pcp))
        if points[-1].end_ms is not None:
            ends.append(points[-1].end_ms)
    params = flatten({k: v for k, v in plan.items() if k not in _PLAN_NOT_PARAMS}, "", {})
    params["scenarios"] = _param_value([s["name"] for s in plan.get("scenarios", [])])
    tags = {TAG_RUN: run_id, TAG_KIND: SWEEP, "kvbench.plan_hash": str(plan.get("plan_hash", ""))}
    artifacts = [(_redacted_copy(plan, staging, PLAN_FILE), "records")]
    if manifest is not None:
        artifacts.append((_redacted_copy(manifest, staging, MANIFEST_FILE), "records"))
        tags["kvbench.manifest_status"] = str(manifest.get("status", ""))
    artifacts += _analysis_artifacts(analysis)
    stamp = max(ends) if ends else 0
    parent = RunExport(
        name=run_id,
        kind=SWEEP,
        tags=tags,
        params=params,
        metrics=_peak_metrics(result.peaks, run_id, stamp),
        artifacts=artifacts,
        start_ms=min((p.start_ms for p in points if p.start_ms is not None), default=None),
        end_ms=stamp or None,
    )
    return SweepExport(run_id, parent, points, notes)


def _peak_metrics(peaks: pd.DataFrame, run_id: str, stamp: int) -> list[MetricValue]:
    values = []
    columns = (
        "peak_output_tok_s",
        "optimal_concurrency",
        "delta_vs_baseline_pct",
        "peak_ci_low",
        "peak_ci_high",
    )
    for row in peaks[peaks["run"] == run_id].to_dict("records"):
        for column in columns:
            number = _number(row.get(column))
            if number is not None:
                values.append(MetricValue(metric_name(f"{row['scenario']}/{column}"), number, stamp, 0))
    return values


def _point_export(
    run_id: str,
    planned: Mapping[str, Any],
    record: Mapping[str, Any],
    point_dir: Path,
    scenarios: Mapping[str, Mapping[str, Any]],
    rows: Mapping[tuple, Mapping[str, Any]],
    staging: Path,
    pcp: _PcpCache,
) -> RunExport:
    point_id = str(planned["id"])
    status = str(record.get("status", ""))
    scenario = str(planned["scenario"])
    params: dict[str, str] = {}
    flatten(
        {
            "scenario": scenario,
            "concurrency": planned["concurrency"],
            "repetition": planned["repetition"],
            "seed": planned.get("seed"),
        },
        "",
        params,
    )
    flatten({k: v for k, v in scenarios.get(scenario, {}).items() if k != "name"}, "scenario", params)
    flatten(record.get("config"), "config", params)
    flatten(record.get("workload"), "workload", params)
    guidellm = record.get("guidellm") if isinstance(record.get("guidellm"), Mapping) else {}
    flatten({k: guidellm.get(k) for k in ("version", "dialect", "seed", "seed_reported")}, "guidellm", params)
    if isinstance(guidellm.get("argv"), list):
        params["guidellm.argv"] = mask_urls(shlex.join(str(a) for a in redact(guidellm["argv"])))
    start_ms, end_ms = _ms(record.get("started_at")), _ms(record.get("ended_at"))
    row = rows.get((scenario, int(planned["concurrency"]), int(planned["repetition"])), {})
    tags = {
        TAG_RUN: run_id,
        TAG_KIND: POINT,
        TAG_POINT: point_id,
        "kvbench.scenario": scenario,
        "kvbench.status": status,
    }
    for key, value in (("kvbench.reason", record.get("reason")), ("kvbench.verdict", row.get("verdict"))):
        if isinstance(value, str) and value:
            tags[key] = mask_urls(value)
    metrics = point_statistics(row, end_ms or 0) if status == "ok" else []
    series = point_series(point_dir)
    if series is not None and not series.frame.empty:
        metrics += series_histories(series.frame)
    window = point_window(record)
    archives = pcp.of(scenario)
    if window is not None and archives is not None and not archives.empty:
        metrics += pcp_histories(archives, window.start, window.end)
    return RunExport(
        name=point_id,
        kind=POINT,
        tags=tags,
        params=params,
        metrics=metrics,
        artifacts=[(_redacted_copy(record, staging / point_id.replace("/", "_"), "point.json"), None)],
        start_ms=start_ms,
        end_ms=end_ms,
        status="FAILED" if status == "failed" else "FINISHED",
    )


def run_dirs_of(paths: Iterable[Path]) -> list[Path]:
    """The run directories named: each holds plan.json (results/latest resolves to its run)."""
    found = []
    for path in paths:
        resolved = path.resolve()
        if not (resolved / PLAN_FILE).is_file():
            raise InputError(f"{path}: not a kvbench run directory (no {PLAN_FILE})")
        found.append(resolved)
    return found
