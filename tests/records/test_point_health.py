"""A point's health through the real record path and the analyzer: the watchdog's stop, an engine crash with
its log line, the PCP archive check, and the scenario's restart count and crashes (canned outcomes, as the
nodes target hands them to `kvbench record`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.records.builders import (
    analyze,
    checked,
    finished_run,
    nodes_cpu_request,
    point_outcome,
    record,
)

CRASH_LINE = "(EngineCore_DP0 pid=4242) AssertionError: assert len(offload_keys) == len(offload_block_ids)"
STALL = {
    "stalled": True,
    "samples": 40,
    "ok_samples": 40,
    "stall": {"reason": "no completion for 30 s while requests were outstanding", "outstanding_requests": 6},
}


def test_crash_stall_and_archive_evidence_reach_the_records_the_table_and_the_report(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request())
    plan = json.loads((run_dir / "plan.json").read_text())
    points = [p for p in plan["points"] if p["scenario"] == "no-offload"]
    stalled, crashed, late = points[0], points[1], points[2]
    outcomes = {
        stalled["id"]: point_outcome("failed", "watchdog stopped GuideLLM", watchdog=STALL),
        crashed["id"]: point_outcome(
            "failed",
            "vLLM exited during the point",
            server_restarted=True,
            server_crash={"detected": "during the point", "log_line": CRASH_LINE},
        ),
        late["id"]: point_outcome(
            server_restarted=True,
            watchdog={"stalled": False, "samples": 12, "ok_samples": 12, "stall": None},
            archive_check={"result": "warn", "reasons": ["archive began 4 s after the window"]},
        ),
    }
    for point_id, outcome in outcomes.items():
        checked(record("point", run_dir, ["--point", point_id], outcome))
    scenario = {
        "status": "ran",
        "server_starts": 3,
        "crashes": [{"point": crashed["id"], "detected": "during the point", "log_line": CRASH_LINE}],
        "watchdog_stops": [{"point": stalled["id"], "reason": STALL["stall"]["reason"]}],
    }
    checked(record("scenario", run_dir, ["--scenario", "no-offload"], scenario))

    written = json.loads((run_dir / "no-offload" / "scenario.json").read_text())
    assert written["server_restarts"] == 2
    assert written["crashes"][0]["log_line"] == CRASH_LINE
    assert "crashes" not in written["notes"]
    point = json.loads((run_dir / crashed["dir"] / "point.json").read_text())
    assert point["status"] == "failed" and point["evidence"]["server_crash"]["log_line"] == CRASH_LINE

    result = analyze(tmp_path / "results", out=tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    table = result.csv("complete_metrics.csv").set_index("concurrency")
    rows = table[table["scenario"] == "no-offload"]
    assert rows.loc[crashed["concurrency"], "server_crash_line"] == CRASH_LINE
    assert bool(rows.loc[stalled["concurrency"], "watchdog_stalled"]) is True
    assert rows.loc[late["concurrency"], "archive_check"] == "warn"
    validity = result.csv("validity.csv")
    late_row = validity[
        (validity["scenario"] == "no-offload") & (validity["concurrency"] == late["concurrency"])
    ]
    assert list(late_row["archive"]) == ["warn"] and list(late_row["verdict"]) == ["warn"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Server crashed or stalled" in report
    assert "`no-offload`: 1 server crash, 1 watchdog stop" in report
    assert CRASH_LINE in report
