"""Time accounting: the non-overlapping timeline, GuideLLM's and vLLM's own phases, sweep_timing.csv and the
report's timing section, on canned records written by the one record writer."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd

from kvbench.timing import (
    IDLE,
    MEASURED,
    UNACCOUNTED,
    Span,
    guidellm_phases,
    seconds,
    server_startup_breakdown,
    summarize,
    timeline_rows,
)
from tests.records.builders import (
    checked,
    nodes_cpu_request,
    plan_run,
    point_outcome,
    record,
    sample_report,
    write_zst_json,
)

T0 = seconds("2026-03-01T10:00:00Z")
assert T0 is not None


def at(offset_s: float) -> str:
    return f"2026-03-01T10:{int(offset_s) // 60:02d}:{offset_s % 60:06.3f}Z"


def assert_partition(rows, begin: float, end: float) -> None:
    """Rows follow each other without overlap or gap, and add up to the wall time."""
    assert rows[0].start == begin
    for before, after in itertools.pairwise(rows):
        assert abs(before.start + before.seconds - after.start) < 1e-6, (before, after)
        assert before.seconds > 0
    assert abs(sum(r.seconds for r in rows) - (end - begin)) < 1e-6


def test_nested_phases_are_split_and_gaps_are_unaccounted():
    spans = [
        Span("session", T0, T0 + 100),
        Span("scenario", T0 + 5, T0 + 90, "a"),
        Span("deploy", T0 + 5, T0 + 40, "a"),
        Span("server_start", T0 + 10, T0 + 38, "a"),
        Span("point", T0 + 41, T0 + 80, "a", "a/c0004-r2"),
        Span("cache_reset", T0 + 42, T0 + 45, "a", "a/c0004-r2"),
        Span("measured", T0 + 50, T0 + 70, "a", "a/c0004-r2"),
    ]
    rows = timeline_rows("run", spans)
    assert_partition(rows, T0, T0 + 100)
    names = [(r.phase, round(r.seconds, 3)) for r in rows]
    assert names == [
        (UNACCOUNTED, 5),
        ("deploy", 5),
        ("server_start", 28),
        ("deploy", 2),
        ("scenario", 1),
        ("point", 1),
        ("cache_reset", 3),
        ("point", 5),
        (MEASURED, 20),
        ("point", 10),
        ("scenario", 10),
        (UNACCOUNTED, 10),
    ]
    point_rows = [r for r in rows if r.point]
    assert {(r.scenario, r.concurrency, r.repetition) for r in point_rows} == {("a", 4, 2)}


def test_the_gap_between_two_invocations_is_idle_not_unaccounted():
    spans = [Span("session", T0, T0 + 10), Span("session", T0 + 50, T0 + 60), Span("setup", T0, T0 + 4)]
    rows = timeline_rows("run", spans)
    assert_partition(rows, T0, T0 + 60)
    assert [(r.phase, r.seconds) for r in rows] == [
        ("setup", 4),
        (UNACCOUNTED, 6),
        (IDLE, 40),
        (UNACCOUNTED, 10),
    ]
    summary = summarize(rows, set())
    assert summary.wall_s == 60 and summary.busy_s == 20


def test_overlapping_siblings_never_double_count():
    spans = [Span("point", T0, T0 + 10, "a", "a/c0001-r1"), Span("point", T0 + 5, T0 + 20, "a", "a/c0002-r1")]
    rows = timeline_rows("run", spans)
    assert_partition(rows, T0, T0 + 20)
    # The shorter span wins the shared seconds; each second is counted once.
    assert sum(r.seconds for r in rows if r.point == "a/c0001-r1") == 10
    assert sum(r.seconds for r in rows if r.point == "a/c0002-r1") == 10


def test_guidellm_phases_follow_the_report_window():
    bench = {
        "start_time": T0 + 10,
        "end_time": T0 + 30,
        "warmup_duration": 2.0,
        "cooldown_duration": 1.0,
        "scheduler_state": {"start_time": T0 + 9.5, "end_time": T0 + 31},
    }
    phases = guidellm_phases({"benchmarks": [bench]}, {"start": at(2), "end": at(33)})
    span = {k: (seconds(v["start"]) - T0, seconds(v["end"]) - T0) for k, v in phases.items()}
    assert span == {
        "guidellm_startup": (2, 9.5),
        "warmup": (10, 12),
        MEASURED: (12, 29),
        "cooldown": (29, 30),
        "drain": (30, 31),
        "guidellm_exit": (31, 33),
    }
    assert guidellm_phases({"benchmarks": []}, None) == {}
    assert guidellm_phases(None, None) == {}


VLLM_LOG = "\n".join(
    [
        "(APIServer pid=1) INFO 11-29 14:36:52 [api_utils.py:347]  ▄▄ ▄█ █     █     █ ▀▄▀ █  version 0.32.0",
        "(Worker pid=3) INFO 11-29 14:37:09 [default_loader.py:501] Loading weights took 0.01 seconds",
        "(EngineCore pid=2) INFO 11-29 14:37:10 [core.py:402] "
        "init engine (profile, create kv cache, warmup model) took 0.52 s",
        "(APIServer pid=1) INFO 11-29 14:37:12 [entry.py:140] Starting vLLM server on http://0.0.0.0:8000",
        "(APIServer pid=9) INFO 11-29 15:00:00 [api_utils.py:347]  ▄▄ ▄█ █     █     █ ▀▄▀ █  version 0.32.0",
        "(Worker pid=10) INFO 11-29 15:00:30 [gpu_model_runner.py:1] "
        "Model loading took 15.2 GiB and 41.5 seconds",
        "(EngineCore pid=11) INFO 11-29 15:00:50 [backends.py:1] torch.compile takes 12.25 s in total",
        "(EngineCore pid=11) INFO 11-29 15:00:55 [gpu_model_runner.py:2] "
        "Graph capturing finished in 4 secs, took 0.5 GiB",
    ]
)


def test_server_startup_breakdown_reads_each_start_of_the_log():
    starts = server_startup_breakdown(VLLM_LOG)
    assert starts == [
        {"weight_loading_s": 0.01, "kv_cache_and_warmup_s": 0.52, "banner_to_serving_s": 20.0},
        {"weight_loading_s": 41.5, "compile_s": 12.25, "cuda_graphs_s": 4.0},
    ]


def canned_run(tmp_path: Path) -> tuple[Path, dict]:
    """Two scenarios, two levels, one repetition; every point's report times placed inside its point span;
    a gap of 7 s no phase covers between the two scenarios."""
    plan, run_dir = plan_run(
        tmp_path / "results",
        nodes_cpu_request(scenarios=["no-offload", "llm-d-redis"], concurrency=[1, 4]),
    )
    checked(record("manifest", run_dir, [], {"status": "running"}))
    lines = [
        {"phase": "session", "start": at(0), "end": at(0)},
        {"phase": "setup", "start": at(0), "end": at(20)},
    ]
    clock = 20.0
    for segment in plan["schedule"]:
        if clock > 100:
            clock += 7  # nobody accounted for these seconds
        scenario = segment["scenario"]
        begin = clock
        lines.append({"phase": "deploy", "scenario": scenario, "start": at(clock), "end": at(clock + 40)})
        lines.append(
            {"phase": "server_start", "scenario": scenario, "start": at(clock + 5), "end": at(clock + 39)}
        )
        clock += 41
        for point_id in segment["points"]:
            point = next(p for p in plan["points"] if p["id"] == point_id)
            folder = run_dir / point["dir"]
            report = sample_report("0.8.1", point["concurrency"], point["seed"])
            bench = report["benchmarks"][0]
            bench.update(
                start_time=T0 + clock + 12, end_time=T0 + clock + 20, warmup_duration=0, cooldown_duration=0
            )
            bench["scheduler_state"].update(start_time=T0 + clock + 11.9, end_time=T0 + clock + 20.2)
            write_zst_json(folder / "guidellm.json.zst", report)
            outcome = point_outcome(
                started_at=at(clock + 1),
                ended_at=at(clock + 27),
                phases={
                    "cache_reset": {"start": at(clock + 1), "end": at(clock + 4)},
                    "benchmark": {"start": at(clock + 5), "end": at(clock + 22)},
                },
            )
            checked(record("point", run_dir, ["--point", point_id], outcome))
            lines.append(
                {
                    "phase": "point",
                    "scenario": scenario,
                    "point": point_id,
                    "start": at(clock),
                    "end": at(clock + 28),
                }
            )
            clock += 28
        lines.append(
            {"phase": "scenario_stop", "scenario": scenario, "start": at(clock), "end": at(clock + 6)}
        )
        clock += 6
        lines.append({"phase": "scenario", "scenario": scenario, "start": at(begin), "end": at(clock + 1)})
        clock += 1
    lines.append({"phase": "teardown", "start": at(clock), "end": at(clock + 3)})
    lines[0]["end"] = at(clock + 3)
    with (run_dir / "timeline.jsonl").open("w") as fh:
        fh.writelines(
            json.dumps({"scenario": None, "point": None, "status": "ok", **line}) + "\n" for line in lines
        )
    checked(
        record(
            "manifest", run_dir, [], {"status": "complete", "harness": {"commit": "0" * 40, "dirty": False}}
        )
    )
    return run_dir, {"wall_s": clock + 3, "gap_s": 7.0}


def test_the_point_record_carries_guidellm_phases_and_collection(tmp_path):
    run_dir, _ = canned_run(tmp_path)
    record_ = json.loads(next(run_dir.glob("no-offload/c0001-r1/point.json")).read_text())
    phases = record_["phases"]
    assert {
        "cache_reset",
        "benchmark",
        "guidellm_startup",
        MEASURED,
        "drain",
        "guidellm_exit",
        "collection",
    } <= set(phases)
    measured = seconds(phases[MEASURED]["end"]) - seconds(phases[MEASURED]["start"])
    assert abs(measured - 8.0) < 1e-3
    assert phases["collection"] == {"start": phases["benchmark"]["end"], "end": record_["ended_at"]}


def test_analyze_writes_sweep_timing_csv_whose_rows_add_up_to_the_wall_time(tmp_path, run_analyze):
    run_dir, expected = canned_run(tmp_path)
    result = run_analyze(run_dir)
    assert result.exit_code == 0, result.stderr
    frame = result.csv("sweep_timing.csv")
    assert list(frame.columns) == [
        "run",
        "scenario",
        "concurrency",
        "repetition",
        "phase",
        "start",
        "seconds",
    ]
    starts = pd.to_datetime(frame["start"], utc=True).map(lambda t: t.timestamp())
    ends = starts + frame["seconds"]
    assert (starts.iloc[1:].to_numpy() - ends.iloc[:-1].to_numpy()).max() < 1e-3  # no overlap, no hole
    assert abs(frame["seconds"].sum() - expected["wall_s"]) < 0.01
    unaccounted = frame[frame["phase"] == UNACCOUNTED]["seconds"].sum()
    assert abs(unaccounted - expected["gap_s"]) < 0.01
    measured = frame[frame["phase"] == MEASURED]
    assert len(measured) == 4 and set(measured["concurrency"]) == {1, 4}
    assert set(frame["phase"]) >= {"setup", "deploy", "server_start", "cache_reset", "collection", "teardown"}
    report = (result.out / "report.md").read_text()
    section = report.split("## Sweep timing", 1)[1]
    assert "efficiency" in section and "Projection of the full evaluation" in section
    assert "4 models x 8 scenarios x 8 levels x 1 repetition(s)" in section
    assert "cached" in section and "/work/shared/gpu-node/README.md" in section


def test_old_point_records_get_their_measured_window_from_the_report(tmp_path):
    from kvbench.ingest.timing import read_run_timing

    run_dir, _ = canned_run(tmp_path)
    path = run_dir / "no-offload" / "c0004-r1" / "point.json"
    document = json.loads(path.read_text())
    document["phases"] = {k: v for k, v in document["phases"].items() if k in ("cache_reset", "benchmark")}
    path.write_text(json.dumps(document))
    timing = read_run_timing(run_dir)
    old = next(p for p in timing.points if p["scenario"] == "no-offload" and p["concurrency"] == 4)
    assert MEASURED in old["phases"] and "collection" in old["phases"]
