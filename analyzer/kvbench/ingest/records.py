"""Read the run directory's own records and the evidence files beside them (for `kvbench record`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from kvbench.errors import InputError
from kvbench.ingest.reader import read_document
from kvbench.plan.guidellm import report_seed
from kvbench.records import RecordError, validate

PLAN_FILE = "plan.json"
MANIFEST_FILE = "manifest.json"
TIMELINE_FILE = "timeline.jsonl"
REPORT_NAMES = ("guidellm.json.zst", "guidellm.json")


def read_record(path: Path, kind: str) -> dict[str, Any]:
    """A record of `kind` ("plan", "point", ...), validated; InputError naming the file otherwise."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    try:
        return validate(data, kind)
    except RecordError as exc:
        raise InputError(f"{path}: not a valid kvbench {kind} record: {exc}") from None


def read_plan(run_dir: Path) -> dict[str, Any]:
    return read_record(run_dir / PLAN_FILE, "plan")


def read_optional(path: Path, kind: str) -> dict[str, Any] | None:
    """The record at `path`, or None when there is none (a damaged one is still an error)."""
    return read_record(path, kind) if path.exists() else None


def read_timeline(run_dir: Path) -> list[dict[str, Any]]:
    """timeline.jsonl's phases; a line cut off by an interruption is skipped, not fatal."""
    path = run_dir / TIMELINE_FILE
    if not path.exists():
        return []
    phases = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and {"phase", "start", "end"} <= entry.keys():
            phases.append(entry)
    return phases


def metrics_snapshots(point_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """/metrics text per server before and after the point: metrics/<server>-{before,after}.prom."""
    found: dict[str, dict[str, str]] = {"before": {}, "after": {}}
    folder = point_dir / "metrics"
    for path in sorted(folder.glob("*.prom")) if folder.is_dir() else []:
        server, _, when = path.stem.rpartition("-")
        if when in found and server:
            found[when][server] = path.read_text(encoding="utf-8", errors="replace")
    return found["before"], found["after"]


def guidellm_report(point_dir: Path) -> tuple[str | None, int | None]:
    """(file name, seed GuideLLM recorded) of the point's report; (None, None) when there is none."""
    for name in REPORT_NAMES:
        path = point_dir / name
        if path.exists():
            try:
                document = read_document(path)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
            return name, report_seed(document) if isinstance(document, dict) else None
    return None, None
