"""Read what a run directory says about its time: timeline.jsonl, manifest, plan, point records, server logs.

Used by `kvbench analyze` (sweep_timing.csv, the report's timing section), `kvbench status` and the live
progress callback. A record that cannot be read is left out and named in ``problems``, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvbench.errors import InputError
from kvbench.ingest.reader import read_document
from kvbench.ingest.records import MANIFEST_FILE, PLAN_FILE, read_optional, read_timeline
from kvbench.timing import MEASURED, guidellm_phases

SERVER_LOG_NAMES = ("*.log.zst", "*.log")


@dataclass
class RunTiming:
    run_dir: Path
    run: str
    plan: dict[str, Any] | None
    manifest: dict[str, Any] | None
    timeline: list[dict[str, Any]]
    points: list[dict[str, Any]]
    server_logs: dict[str, str] = field(default_factory=dict)  # scenario -> its servers' log text
    problems: list[str] = field(default_factory=list)


def is_run_dir(path: Path) -> bool:
    return (path / PLAN_FILE).is_file()


def read_run_timing(run_dir: Path, server_logs: bool = True) -> RunTiming:
    """Everything about one run's time; InputError when `run_dir` holds no readable plan.json."""
    problems: list[str] = []
    plan = read_optional(run_dir / PLAN_FILE, "plan")
    if plan is None:
        raise InputError(f"{run_dir}: no {PLAN_FILE}: not a kvbench run directory")
    try:
        manifest = read_optional(run_dir / MANIFEST_FILE, "manifest")
    except InputError as exc:
        problems.append(str(exc))
        manifest = None
    points = []
    for point in plan["points"]:
        try:
            record = _point_record(run_dir / point["dir"])
        except InputError as exc:
            problems.append(str(exc))
            continue
        if record is not None:
            points.append(record)
    logs: dict[str, str] = {}
    if server_logs:
        for scenario in plan["scenarios"]:
            folder = run_dir / scenario["name"] / "server"
            texts = []
            for pattern in SERVER_LOG_NAMES:
                for path in sorted(folder.glob(pattern)) if folder.is_dir() else []:
                    try:
                        texts.append(read_text(path))
                    except InputError as exc:
                        problems.append(f"{path}: {exc}")
            if texts:
                logs[scenario["name"]] = "\n".join(texts)
    return RunTiming(run_dir, plan["run_id"], plan, manifest, read_timeline(run_dir), points, logs, problems)


# Point records already read, by (path, mtime, size): the console callback reads the run after every point,
# and a record does not change once written unless its file does.
_POINTS: dict[tuple[Path, int, int], dict[str, Any]] = {}


def _point_record(point_dir: Path) -> dict[str, Any] | None:
    path = point_dir / "point.json"
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _POINTS:
        record = read_optional(path, "point")
        if record is None:
            return None
        _POINTS[key] = with_report_phases(record, point_dir)
    return _POINTS[key]


def with_report_phases(record: dict[str, Any], point_dir: Path) -> dict[str, Any]:
    """A point record written before the records carried GuideLLM's phases gets them from its report."""
    phases = record.get("phases") or {}
    if MEASURED in phases or record.get("guidellm", {}).get("file") is None:
        return record
    derived = guidellm_phases(guidellm_document(point_dir), phases.get("benchmark"))
    if not derived:
        return record
    merged = {**phases, **derived}
    if "collection" not in merged and (phases.get("benchmark") or {}).get("end"):
        merged["collection"] = {"start": phases["benchmark"]["end"], "end": record["ended_at"]}
    return {**record, "phases": merged}


def read_text(path: Path) -> str:
    """A log file's text (zstd-compressed or plain)."""
    if path.suffix == ".zst":
        import zstandard

        try:
            with path.open("rb") as fh:
                data = zstandard.ZstdDecompressor().stream_reader(fh).read()
        except (OSError, zstandard.ZstdError) as exc:
            raise InputError(f"cannot read: {exc}") from None
        return data.decode("utf-8", errors="replace")
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from None


def guidellm_document(point_dir: Path) -> Any:
    """The point's GuideLLM report as parsed JSON; None when there is none or it cannot be read."""
    for name in ("guidellm.json.zst", "guidellm.json"):
        path = point_dir / name
        if path.exists():
            try:
                return read_document(path)
            except InputError:
                return None
    return None
