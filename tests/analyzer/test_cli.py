"""The installed `kvbench` command: usage errors, --baseline, exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from analyzer_fixtures import SAMPLE_053, Level, write_original_point


def _kvbench() -> list[str]:
    script = Path(sys.executable).parent / "kvbench"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kvbench"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze"], "Missing argument 'RESULTS...'"),
        (["analyze", str(SAMPLE_053)], "Missing option '--out'"),
        (["analyze", "/nonexistent/results", "--out", "x"], "does not exist"),
        (["analyze", str(SAMPLE_053), "--out", "x", "--no-such-option"], "No such option"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run([*_kvbench(), *args], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_out_is_a_file_is_a_usage_error(tmp_path: Path, run_analyze) -> None:
    target = tmp_path / "file"
    target.write_text("")
    run = run_analyze(SAMPLE_053, out=target)
    assert run.exit_code == 2


def test_installed_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good"
    write_original_point(good, "Qwen3-8B", "no-offload", Level(50, 100.0))
    proc = subprocess.run(
        [*_kvbench(), "analyze", str(good), "--out", str(tmp_path / "o1"), "--no-figures"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o1" / "peak_throughput_all.csv").is_file()
    assert "read 1 result file(s), 1 usable row(s)" in proc.stderr
    broken = tmp_path / "broken.json.zst"
    broken.write_bytes(SAMPLE_053.read_bytes()[:1000])
    proc = subprocess.run(
        [*_kvbench(), "analyze", str(good), str(broken), "--out", str(tmp_path / "o2"), "--no-figures", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"kvbench: {broken}: truncated zstd data")
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "o2" / "complete_metrics.csv").is_file()


def test_baseline_option_changes_the_reference(tmp_path: Path, run_analyze) -> None:
    for scenario, value in (("no-offload", 100.0), ("native-offload", 80.0), ("lmcache-local", 120.0)):
        write_original_point(tmp_path / "t", "Qwen3-8B", scenario, Level(50, value))
    default = (
        run_analyze(tmp_path / "t", out=tmp_path / "d").csv("peak_throughput_all.csv").set_index("scenario")
    )
    assert default.at["lmcache-local", "delta_vs_baseline_pct"] == pytest.approx(20.0)
    assert default.at["no-offload", "delta_vs_baseline_pct"] == 0.0
    run = run_analyze(tmp_path / "t", "--baseline", "native-offload", out=tmp_path / "n")
    assert run.exit_code == 0
    peaks = run.csv("peak_throughput_all.csv").set_index("scenario")
    assert set(peaks["baseline_scenario"]) == {"native-offload"}
    assert peaks.at["lmcache-local", "delta_vs_baseline_pct"] == pytest.approx(50.0)
    assert peaks.at["no-offload", "delta_vs_baseline_pct"] == pytest.approx(25.0)
    assert peaks.at["native-offload", "delta_vs_baseline_pct"] == 0.0
    # an old spelling of a scenario is accepted for --baseline too
    legacy = run_analyze(tmp_path / "t", "--baseline", "no-cpu-offload", out=tmp_path / "l")
    assert set(legacy.csv("peak_throughput_all.csv")["baseline_scenario"]) == {"no-offload"}
    # a baseline absent from the results is reported, and the deltas stay empty
    missing = run_analyze(tmp_path / "t", "--baseline", "llm-d-valkey", out=tmp_path / "m")
    assert missing.exit_code == 0
    assert "baseline scenario 'llm-d-valkey' is not in the results" in missing.stderr
    assert missing.csv("peak_throughput_all.csv")["delta_vs_baseline_pct"].isna().all()


def test_module_entry_point_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kvbench", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("kvbench, version ")


def test_results_tree_with_spaces_and_copy(tmp_path: Path, run_analyze) -> None:
    tree = tmp_path / "fetched results (laptop)"
    write_original_point(tree, "Qwen3-0.6B", "no-offload", Level(1, 50.0))
    shutil.copytree(tree, tmp_path / "copy")
    run = run_analyze(tree)
    assert run.exit_code == 0
    assert run.csv("complete_metrics.csv")["source_file"].iloc[0].startswith(str(tree))
