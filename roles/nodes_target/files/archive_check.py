#!/usr/bin/env python3
"""Check a scenario's pmlogger archive over one point's measured window; print the result as one JSON object.

Run by the kvbench `nodes_target` role on the serving host after each point, with the system python3
(standard library only). The metrics to find are the ones the pcp role was asked to log, read from the
archive's sidecar (<archive>.metrics.json, written by the pcp role's logger_start). It reads the archive
with PCP's own pmdumplog (-L for the label, -S/-T for the window, -Z UTC) and counts, per metric, the
records inside the window in which at least one of its leaves has a value.

Result: `pass`; `warn` when the archive is missing, empty in the window, started after the window began,
or lacks a metric it was asked for; `invalid` when the treatment's own counters (the vLLM /metrics the
archive scrapes, `openmetrics.*`) are asked for and have no value in the window. Always exits 0: the
result is evidence, never a failure of the point.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

TREATMENT_PREFIX = "openmetrics."
RECORD = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s+\d+\s+metrics?")
LEAF = re.compile(r"^\s+\S+\s+\(([^)]+)\):(.*)$")
INSTANCE_VALUE = re.compile(r"^\s+inst\s+\[.*\]\s+value\s")
COMMENCING = re.compile(r"commencing\s+\w{3}\s+(\w{3}\s+\d+\s+\d{2}:\d{2}:\d{2})(?:\.\d+)?\s+(\d{4})")


def parse_iso(text: str) -> datetime:
    """A UTC timestamp YYYY-MM-DDTHH:MM:SS[.ffffff]Z."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return moment + timedelta(seconds=float("0." + fraction) if fraction else 0.0)


def pcp_time(moment: datetime) -> str:
    return "@" + moment.strftime("%Y-%m-%d %H:%M:%S")


def commencing(label: str) -> datetime | None:
    """The archive's first timestamp from `pmdumplog -Z UTC -L` (UTC)."""
    found = COMMENCING.search(label)
    if not found:
        return None
    return datetime.strptime(f"{found.group(1)} {found.group(2)}", "%b %d %H:%M:%S %Y").replace(
        tzinfo=timezone.utc
    )


def count_records(dump: str, metrics: list[str]) -> tuple[dict[str, int], int]:
    """Records per metric in which one of its leaves has a value, and the number of records."""
    seen: dict[str, set[int]] = {metric: set() for metric in metrics}
    record, leaf = -1, ""

    def mark(name: str) -> None:
        for metric in metrics:
            if name == metric or name.startswith(metric + "."):
                seen[metric].add(record)

    for line in dump.splitlines():
        if RECORD.match(line):
            record += 1
            continue
        found = LEAF.match(line)
        if found:
            leaf = found.group(1)
            if "value" in found.group(2):
                mark(leaf)
        elif leaf and INSTANCE_VALUE.match(line):
            mark(leaf)
    return {metric: len(records) for metric, records in seen.items()}, record + 1


def check(args: argparse.Namespace) -> dict[str, Any]:
    start, end = parse_iso(args.start), parse_iso(args.end)
    result: dict[str, Any] = {
        "archive": args.archive,
        "window": {"start": args.start, "end": args.end},
        "result": "warn",
        "reasons": [],
        "samples_per_metric": {},
        "missing": [],
        "treatment_missing": [],
        "records_in_window": 0,
        "commencing": None,
        "late": None,
    }
    sidecar = Path(args.sidecar or args.archive + ".metrics.json")
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        requested = [(str(m["name"]), bool(m.get("optional"))) for m in record["requested"]]
        dropped = set(record.get("dropped") or [])
    except (OSError, ValueError, KeyError, TypeError) as err:
        result["reasons"].append(f"no readable archive record {sidecar}: {err}")
        return result
    metrics = [name for name, _ in requested]
    label = subprocess.run(
        [args.pmdumplog, "-Z", "UTC", "-L", args.archive], capture_output=True, text=True, check=False
    )
    if label.returncode != 0:
        result["reasons"].append(f"archive unreadable (pmdumplog -L: {label.stderr.strip()[:200]})")
        return result
    first = commencing(label.stdout)
    result["commencing"] = first.strftime("%Y-%m-%dT%H:%M:%SZ") if first else None
    result["late"] = bool(first and first > start)
    if result["late"]:
        result["reasons"].append(f"archive began {(first - start).total_seconds():.0f} s after the window")
    dump = subprocess.run(
        [
            args.pmdumplog,
            "-Z",
            "UTC",
            "-S",
            pcp_time(start),
            "-T",
            pcp_time(end + timedelta(seconds=1)),
            args.archive,
            *metrics,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if dump.returncode != 0 and not dump.stdout:
        result["reasons"].append(f"pmdumplog -S/-T failed: {dump.stderr.strip()[:200]}")
        return result
    counts, records = count_records(dump.stdout, metrics)
    result["samples_per_metric"] = counts
    result["records_in_window"] = records
    missing = [
        name for name, optional in requested if counts[name] == 0 and not (optional or name in dropped)
    ]
    treatment = [name for name in missing if name.startswith(TREATMENT_PREFIX)]
    result["missing"], result["treatment_missing"] = missing, treatment
    if records == 0:
        result["reasons"].append("no archive record inside the window")
    elif missing:
        result["reasons"].append(f"no sample inside the window of {', '.join(missing)}")
    if treatment:
        result["result"] = "invalid"
        result["reasons"].append(f"the treatment's own counters are missing: {', '.join(treatment)}")
    elif not result["reasons"]:
        result["result"] = "pass"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--archive", required=True, help="archive prefix (without .meta/.index/.0)")
    parser.add_argument(
        "--sidecar", help="the pcp role's record of the archive (default <archive>.metrics.json)"
    )
    parser.add_argument("--start", required=True, help="window start, UTC, YYYY-MM-DDTHH:MM:SS[.f]Z")
    parser.add_argument("--end", required=True, help="window end, UTC, YYYY-MM-DDTHH:MM:SS[.f]Z")
    parser.add_argument("--pmdumplog", default="pmdumplog")
    args = parser.parse_args()
    try:
        result = check(args)
    except (ValueError, OSError) as err:
        result = {"archive": args.archive, "result": "warn", "reasons": [f"archive check failed: {err}"]}
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
