"""An original-layout tree whose peaks are the published numbers reproduces the published table."""

from __future__ import annotations

from pathlib import Path

from published_table import PUBLISHED, REDIS_VS_VALKEY


def test_peak_table_reproduces_published_numbers(published_tree: Path, run_analyze) -> None:
    run = run_analyze(published_tree)
    assert run.exit_code == 0, run.stderr
    peaks = run.csv("peak_throughput_all.csv")
    assert len(peaks) == len(PUBLISHED) == 28
    # Same order as the published table: models by size, scenarios in the evaluation's order.
    assert list(zip(peaks["model"], peaks["scenario"], strict=True)) == [(m, s) for m, s, *_ in PUBLISHED]
    for (_, row), (model, scenario, peak, optimal, delta) in zip(peaks.iterrows(), PUBLISHED, strict=True):
        where = f"{model} {scenario}"
        assert abs(row["peak_output_tok_s"] - peak) <= 0.05, where
        assert row["optimal_concurrency"] == optimal, where
        expected_delta = 0.0 if delta is None else delta
        assert abs(row["delta_vs_baseline_pct"] - expected_delta) <= 0.05, where
        assert row["levels"] == 8, where


def test_metrics_table_has_every_point(published_tree: Path, run_analyze) -> None:
    run = run_analyze(published_tree)
    metrics = run.csv("complete_metrics.csv")
    assert len(metrics) == 4 * 7 * 8
    assert set(metrics["status"]) == {"ok"}
    assert set(metrics["layout"]) == {"original"}
    assert set(metrics["guidellm_version"]) == {"0.5.3"}
    assert set(metrics["concurrency"]) == {1, 50, 100, 150, 300, 400, 500, 650}
    assert set(metrics["repetition"]) == {1}
    assert set(metrics["run"]) == {"1x2xL40S_upstream-llm-d-0.4.0"}
    # successful and total output throughput are distinct columns (total = 1.08 x successful here)
    ratio = metrics["output_tok_s_total"] / metrics["output_tok_s_successful"]
    assert ratio.round(6).eq(1.08).all()


def test_report_regenerates_tables(published_tree: Path, run_analyze) -> None:
    run = run_analyze(published_tree, figures=True)
    assert run.exit_code == 0, run.stderr
    report = (run.out / "report.md").read_text()
    # Peak summary rows as the evaluation printed them.
    assert "| **Qwen3-0.6B** | no-offload | 602.0 | 50 | — |" in report
    # One run per point, as published: the changes are shown but none is bold (none can be significant).
    assert "|  | native-offload | 426.8 | 50 | -29.1% | — | — | 1 |" in report
    assert "|  | lmcache-redis | 60.1 | 100 | +2.5% | — | — | 1 |" in report
    assert "**Every point ran once: no difference can be called significant.**" in report
    # Redis vs Valkey, as published.
    for model, (redis, valkey, delta) in REDIS_VS_VALKEY.items():
        assert f"| {model} | {redis:,.1f} tok/s | {valkey:,.1f} tok/s | {delta:+.1f}% |" in report
    # Best strategy per model (highest peak): the baseline for 0.6B, lmcache-valkey for 14B.
    assert "| Qwen3-0.6B | 602.0 | **no-offload (baseline)** | 602.0 | 50 | — |" in report
    assert "| Qwen3-14B | 58.7 | **lmcache-valkey** | 66.3 | 50 | +13.0% |" in report
    figures = [
        "peak_throughput_all_scenarios.png",
        "throughput_curve_Qwen3-0.6B_all.png",
        "throughput_curve_Qwen3-8B_all.png",
        "throughput_curve_Qwen3-14B_all.png",
        "throughput_curve_Qwen3-32B-AWQ_all.png",
        "latency_comparison_all.png",
        "performance_delta_heatmap_all.png",
    ]
    for name in figures:
        path = run.out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size > 20_000, name
        assert f"]({name})" in report, name
    # Models appear in size order in the report.
    positions = [report.index(f"**{m}**") for m in ("Qwen3-0.6B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B-AWQ")]
    assert positions == sorted(positions)


def test_parallel_reading_gives_the_same_tables(published_tree: Path, run_analyze, tmp_path: Path) -> None:
    one = run_analyze(published_tree, out=tmp_path / "j1")
    two = run_analyze(published_tree, out=tmp_path / "j2", jobs=2)
    assert two.exit_code == 0, two.stderr
    for name in ("complete_metrics.csv", "peak_throughput_all.csv"):
        assert (tmp_path / "j1" / name).read_text() == (tmp_path / "j2" / name).read_text(), name
    assert len(one.csv("complete_metrics.csv")) == 224
