"""Run trees in kvbench's layout, written by the record path, with 5 repetitions per point: lmcache-redis is
truly 10 % faster than no-offload, native-offload and llm-d-valkey differ only by noise (CV 3 %).

The seeds are fixed; tests/analyzer/test_stats.py shows over twenty seeds how often each claim holds (the
peak test's power and the intervals' coverage are about 95 %, not 100 %)."""

from __future__ import annotations

from pathlib import Path

import pytest
from noisy_runs import Noise, noisy_run

from tests.records.builders import analyze, kubernetes_cuda_request

FAST, NOISE = "lmcache-redis", ("native-offload", "llm-d-valkey")


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_the_analyzer_marks_exactly_the_real_effect(seed: int, tmp_path: Path) -> None:
    request = kubernetes_cuda_request(repetitions=5, run_id=f"five-{seed}")
    run_dir = noisy_run(tmp_path / "results", request, Noise(seed, cv=0.03, effects={FAST: 1.10}))
    result = analyze(run_dir, out=tmp_path / "out", figures=True)
    assert result.exit_code == 0, result.stderr

    deltas = result.csv("delta_vs_baseline.csv")
    assert len(deltas) == 3 * (3 + 1)  # three scenarios x (three levels + the peak)
    assert set(deltas["n"]) == set(deltas["n_baseline"]) == {5}
    assert set(deltas[deltas["significant"]]["scenario"]) == {FAST}
    peak = deltas[deltas["concurrency"] == "peak"].set_index("scenario")
    assert bool(peak.at[FAST, "significant"])
    assert peak.at[FAST, "ci_low_pct"] <= 10.0 <= peak.at[FAST, "ci_high_pct"]
    for scenario in NOISE:
        assert peak.at[scenario, "ci_low_pct"] <= 0.0 <= peak.at[scenario, "ci_high_pct"], scenario

    peaks = result.csv("peak_throughput_all.csv").set_index("scenario")
    assert set(peaks["n_repetitions"]) == {5}
    assert bool(peaks.at[FAST, "significant"]) and not peaks.loc[list(NOISE), "significant"].any()
    assert peaks.at[FAST, "delta_ci_low_pct"] == peak.at[FAST, "ci_low_pct"]
    assert (peaks["peak_ci_low"] < peaks["peak_output_tok_s"]).all()
    assert (peaks["peak_output_tok_s"] < peaks["peak_ci_high"]).all()

    report = (result.out / "report.md").read_text()
    verdict = report[report.index("## Verdict") : report.index("## Inputs")]
    better = verdict.index("**Significantly better than `no-offload`:**")
    same = verdict.index("**Indistinguishable from `no-offload`:**")
    assert f"`{FAST}`: peak +" in verdict[better:same]
    assert all(f"`{scenario}`: peak " in verdict[same:] for scenario in NOISE)
    assert "Holm" in verdict
    # Bold only where significant, with the interval beside it.
    fast_row = next(line for line in report.splitlines() if line.startswith(f"|  | {FAST} |"))
    assert "| **+" in fast_row and "[+" in fast_row
    for scenario in NOISE:
        line = next(line for line in report.splitlines() if line.startswith(f"|  | {scenario} |"))
        assert "**" not in line
    assert (result.out / "performance_delta_heatmap_all.png").stat().st_size > 20_000
