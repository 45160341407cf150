"""Filters over the results tree on the controller: where a point lives and which points are still to run.

The layout is docs/design.md's: <run_dir>/<scenario>/c<CCCC>-r<R>/point.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def point_dir(scenario: str, concurrency: int, repetition: int) -> str:
    return f"{scenario}/c{int(concurrency):04d}-r{int(repetition)}"


def read_point(run_dir: str, scenario: str, concurrency: int, repetition: int) -> dict[str, Any] | None:
    """The recorded point, or None when absent or unreadable (an unreadable record is redone, not trusted)."""
    path = Path(run_dir) / point_dir(scenario, concurrency, repetition) / "point.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def points(scenario: str, concurrency: list[Any], repetitions: int, run_dir: str) -> list[dict[str, Any]]:
    """Every point of a scenario in run order, each with its recorded status (None when not yet run)."""
    out = []
    for rep in range(1, int(repetitions) + 1):
        for level in concurrency:
            record = read_point(run_dir, scenario, int(level), rep)
            out.append(
                {
                    "scenario": scenario,
                    "concurrency": int(level),
                    "repetition": rep,
                    "dir": point_dir(scenario, int(level), rep),
                    "recorded_status": record.get("status") if record else None,
                }
            )
    return out


def pending(point_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points to run now: all but those already recorded ok (failed points are retried on resume)."""
    return [p for p in point_list if p.get("recorded_status") != "ok"]


def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float | None:
    """after[key] - before[key] for counters read from /metrics; None when either side lacks the counter."""
    a, b = (after or {}).get(key), (before or {}).get(key)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a - b
    return None


def collect_item(src: str, dest_dir: str, compress: bool = False) -> dict[str, Any]:
    """A collect role item that keeps the file's name under dest_dir."""
    return {
        "src": src,
        "dest": dest_dir.rstrip("/") + "/" + Path(src).name,
        "compress": compress,
        "optional": True,
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kvbench_point_dir": point_dir,
            "kvbench_points": points,
            "kvbench_pending": pending,
            "kvbench_delta": delta,
            "kvbench_collect_item": collect_item,
        }
