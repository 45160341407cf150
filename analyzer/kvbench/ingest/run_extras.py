"""Read what a kvbench run directory says beyond the tidy table: the point records' per-replica counters and
the manifest's disk tiers. Damaged records become warnings (the analysis goes on without them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvbench.errors import InputError
from kvbench.ingest.records import MANIFEST_FILE, PLAN_FILE, read_optional, read_record

POINT_FILE = "point.json"


@dataclass
class RunExtras:
    run_dir: Path
    points: list[dict[str, Any]] = field(default_factory=list)
    disk_tiers: list[dict[str, Any]] = field(default_factory=list)


def read_run_extras(run_dir: Path, warn: Callable[[str], None]) -> RunExtras | None:
    """The point records (<scenario>/<point>/point.json) and the manifest's disk tiers; None: no run dir."""
    if not (run_dir / PLAN_FILE).is_file():
        return None
    extras = RunExtras(run_dir)
    for path in sorted(run_dir.glob(f"*/*/{POINT_FILE}")):
        try:
            extras.points.append(read_record(path, "point"))
        except InputError as exc:
            warn(f"kvbench: warning: {exc}")
    try:
        manifest = read_optional(run_dir / MANIFEST_FILE, "manifest")
    except InputError as exc:
        warn(f"kvbench: warning: {exc}")
        manifest = None
    extras.disk_tiers = list((manifest or {}).get("disk_tiers") or [])
    return extras
