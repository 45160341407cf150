"""Damaged inputs are named on stderr with a reason, skipped, and make the exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analyzer_fixtures import KvbenchRun, Level, write_original_point


@pytest.fixture
def damaged_tree(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A tree with good points of both layouts and one input of every kind of damage."""
    root = tmp_path / "results"
    for concurrency, value in ((1, 40.0), (50, 58.7), (100, 55.0)):
        write_original_point(root / "orig", "Qwen3-14B", "no-offload", Level(concurrency, value))
        write_original_point(root / "orig", "Qwen3-14B", "lmcache-local", Level(concurrency, value * 1.1))
    truncated = write_original_point(root / "orig", "Qwen3-14B", "lmcache-redis", Level(50, 70.0))
    corrupt = write_original_point(root / "orig", "Qwen3-14B", "lmcache-valkey", Level(50, 70.0))
    run = KvbenchRun(root / "kvbench", "Qwen3-0.6B")
    run.point("no-offload", Level(8, 500.0))
    missing = run.point("no-offload", Level(16, 520.0), write_result=False)
    bad_point = run.point("lmcache-local", Level(8, 400.0))

    zst = truncated / "guidellm-results.json.zst"
    zst.write_bytes(zst.read_bytes()[: zst.stat().st_size // 2])
    data = bytearray((corrupt / "guidellm-results.json.zst").read_bytes())
    for i in range(200, 400):
        data[i] ^= 0x5A
    (corrupt / "guidellm-results.json.zst").write_bytes(bytes(data))
    (bad_point / "point.json").write_text('{"kind": "kvbench.point", "model": ')

    loose = root / "loose"
    loose.mkdir()
    (loose / "notes.json").write_text("this is not JSON at all\n")
    (loose / "foreign.json").write_text(json.dumps({"name": "some other tool", "results": [1, 2, 3]}))
    (loose / "list.json").write_text("[1, 2, 3]")
    (loose / "nobench.json").write_text(
        json.dumps({"metadata": {"version": 2}, "config": {}, "benchmarks": []})
    )
    (loose / "bad.yaml").write_text("benchmarks: [unclosed\n")
    (loose / "plain.json.zst").write_text('{"not": "compressed"}')
    (loose / "deploy.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\n")
    (loose / "manifests.yaml").write_text("kind: Deployment\n---\nkind: Service\n")
    empty = root / "empty-run"
    empty.mkdir()
    paths = {
        "truncated": zst,
        "corrupt": corrupt / "guidellm-results.json.zst",
        "missing": missing / "guidellm.json.zst",
        "bad_point": bad_point / "point.json",
        "not_json": loose / "notes.json",
        "foreign": loose / "foreign.json",
        "list": loose / "list.json",
        "no_benchmarks": loose / "nobench.json",
        "bad_yaml": loose / "bad.yaml",
        "not_zstd": loose / "plain.json.zst",
        "k8s_manifest": loose / "deploy.yaml",
        "k8s_manifests": loose / "manifests.yaml",
    }
    return root, paths


EXPECTED_REASONS = {
    "truncated": "truncated zstd data",
    "corrupt": "corrupt zstd data",
    "missing": "GuideLLM result file is missing",
    "bad_point": "not valid JSON",
    "not_json": "not valid JSON",
    "foreign": "not a GuideLLM report (no 'benchmarks' list",
    "list": "not a GuideLLM report (the document is a JSON list",
    "no_benchmarks": "GuideLLM report holds no benchmarks",
    "bad_yaml": "not valid YAML",
    "not_zstd": "not zstd-compressed data",
    "k8s_manifest": "not a GuideLLM report (no 'benchmarks' list; top-level keys: apiVersion, kind)",
    "k8s_manifests": "not valid YAML at line 2 (expected a single document in the stream, but found another",
}


def test_damaged_inputs_are_named_and_skipped(damaged_tree, run_analyze, tmp_path: Path) -> None:
    root, paths = damaged_tree
    empty_dir = tmp_path / "nothing-here"
    empty_dir.mkdir()
    run = run_analyze(root, empty_dir, figures=True)
    assert run.exit_code == 1
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    for key, path in paths.items():
        wanted = f"kvbench: {path}: {EXPECTED_REASONS[key]}"
        assert any(line.startswith(wanted) for line in lines), f"{key}: {wanted!r} not in\n{run.stderr}"
    assert f"kvbench: {empty_dir}: no GuideLLM results found in this directory" in lines
    # The empty directory inside the tree is simply not a result; the tree itself has results.
    assert not any(line.startswith(f"kvbench: {root / 'empty-run'}") for line in lines)

    # Outputs are still written from the good inputs.
    metrics = run.csv("complete_metrics.csv")
    ok = metrics[metrics["status"] == "ok"]
    assert len(ok) == 7
    errors = metrics[metrics["status"] == "error"]
    # Points whose identity is known keep a row with the reason (loose files do not).
    assert sorted(errors["scenario"]) == ["lmcache-redis", "lmcache-valkey", "no-offload"]
    assert errors["output_tok_s_successful"].isna().all()
    assert errors["reason"].str.len().gt(0).all()
    peaks = run.csv("peak_throughput_all.csv")
    assert sorted(zip(peaks["model"], peaks["scenario"], strict=True)) == [
        ("Qwen3-0.6B", "no-offload"),
        ("Qwen3-14B", "lmcache-local"),
        ("Qwen3-14B", "no-offload"),
    ]
    # Two runs (the original tree and the kvbench run): each gets its own figures, named after it.
    for run_name in ("1x2xL40S_upstream-llm-d-0.4.0", "Qwen3-0.6B-local-1a2b3c4d"):
        assert (run.out / f"peak_throughput_all_scenarios_{run_name}.png").is_file(), run_name
    assert not (run.out / "peak_throughput_all_scenarios.png").exists()
    report = (run.out / "report.md").read_text()
    assert "Inputs that could not be read" in report
    assert str(paths["truncated"]) in report


def test_only_bad_inputs_still_writes_outputs(tmp_path: Path, run_analyze) -> None:
    (tmp_path / "a.json").write_text("{")
    run = run_analyze(tmp_path / "a.json", figures=True)
    assert run.exit_code == 1
    assert run.stderr.startswith(f"kvbench: {tmp_path / 'a.json'}: not valid JSON")
    assert "Traceback" not in run.stderr
    assert run.csv("complete_metrics.csv").empty
    assert "No usable results" in (run.out / "report.md").read_text()


def test_strict_stops_at_first_bad_file(damaged_tree, run_analyze) -> None:
    root, _ = damaged_tree
    run = run_analyze(root, "--strict")
    assert run.exit_code == 1
    assert "Traceback" not in run.stderr
    bad_lines = [line for line in run.stderr.splitlines() if line.startswith(f"kvbench: {root}")]
    assert len(bad_lines) == 1
    assert "stopped at the first bad input (--strict)" in run.stderr
    assert not (run.out / "complete_metrics.csv").exists()


def test_strict_with_good_inputs_succeeds(tmp_path: Path, run_analyze) -> None:
    write_original_point(tmp_path / "t", "Qwen3-8B", "no-offload", Level(50, 100.0))
    run = run_analyze(tmp_path / "t", "--strict")
    assert run.exit_code == 0, run.stderr
    assert len(run.csv("complete_metrics.csv")) == 1
