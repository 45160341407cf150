"""Runs are the unit of analysis: rows are keyed by (run, model, scenario, concurrency, repetition), and
two runs analysed together are reported side by side, never averaged as repetitions of each other."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.records.builders import SweepOptions, finished_run, nodes_cpu_request

SCENARIOS = ["no-offload", "llm-d-redis"]


def _demo_run(results: Path, run_id: str, llm_d_factor: float) -> Path:
    """A demo-like run (nodes, CPU, cpu-local, tiny model) in which llm-d-redis scales the throughput."""
    request = nodes_cpu_request(run_id=run_id, scenarios=SCENARIOS)
    return finished_run(results, request, SweepOptions(throughput_scale={"llm-d-redis": llm_d_factor}))


def test_two_runs_are_kept_apart(tmp_path: Path, run_analyze) -> None:
    run_a = _demo_run(tmp_path / "a", "demo-a", 1.10)
    run_b = _demo_run(tmp_path / "b", "demo-b", 0.90)
    result = run_analyze(run_a, run_b, figures=True)
    assert result.exit_code == 0, result.stderr
    assert "kept as repetition" not in result.stderr
    metrics = result.csv("complete_metrics.csv")
    assert list(dict.fromkeys(metrics["run"])) == ["demo-a", "demo-b"]
    assert set(metrics["repetition"]) == {1}
    assert metrics.groupby(["run", "scenario", "concurrency"]).size().eq(1).all()
    assert len(metrics) == 2 * len(SCENARIOS) * 3

    peaks = result.csv("peak_throughput_all.csv")
    assert list(zip(peaks["run"], peaks["scenario"], strict=True)) == [
        ("demo-a", "no-offload"),
        ("demo-a", "llm-d-redis"),
        ("demo-b", "no-offload"),
        ("demo-b", "llm-d-redis"),
    ]
    assert set(peaks["repetitions_at_peak"]) == {1}
    delta = peaks.set_index(["run", "scenario"])["delta_vs_baseline_pct"]
    # Each run against its own baseline; merged, both would read +0.0% from two "repetitions".
    assert delta[("demo-a", "llm-d-redis")] == pytest.approx(10.0)
    assert delta[("demo-b", "llm-d-redis")] == pytest.approx(-10.0)

    report = (result.out / "report.md").read_text()
    part_a, part_b = report.index("## Run `demo-a`"), report.index("## Run `demo-b`")
    assert part_a < part_b
    # One repetition each: the change is shown, never bold (not significant), with no interval.
    assert "|  | llm-d-redis | 2,344.4 | 16 | +10.0% | — | — | 1 |" in report[part_a:part_b]
    assert "|  | llm-d-redis | 1,918.1 | 16 | -10.0% | — | — | 1 |" in report[part_b:]
    for run in ("demo-a", "demo-b"):
        for name in (
            f"peak_throughput_all_scenarios_{run}.png",
            f"throughput_curve_tiny-qwen3_all_{run}.png",
        ):
            assert (result.out / name).is_file(), name
            assert f"]({name})" in report


def test_the_same_run_read_twice_is_not_a_repetition(tmp_path: Path, run_analyze) -> None:
    run_a = _demo_run(tmp_path / "a", "demo-a", 1.10)
    copy = tmp_path / "copy" / "demo-a"
    shutil.copytree(run_a, copy)
    result = run_analyze(run_a, copy, jobs=2)
    assert result.exit_code == 0, result.stderr
    assert "kept as repetition" not in result.stderr
    assert "already read; not counted twice" in result.stderr
    metrics = result.csv("complete_metrics.csv")
    assert set(metrics["repetition"]) == {1}
    assert list(metrics["status"].value_counts().sort_index().items()) == [("duplicate", 6), ("ok", 6)]
    duplicates = metrics[metrics["status"] == "duplicate"]
    assert all(path.startswith(str(copy)) for path in duplicates["source_file"])
    assert duplicates["reason"].str.startswith("the same point of run demo-a as ").all()
    peaks = result.csv("peak_throughput_all.csv")
    assert set(peaks["repetitions_at_peak"]) == {1}
    assert peaks.set_index("scenario").at["llm-d-redis", "delta_vs_baseline_pct"] == pytest.approx(10.0)
