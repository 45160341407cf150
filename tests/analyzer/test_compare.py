"""`kvbench compare RUN_A RUN_B`: per-cell deltas with intervals, cells of one run only, and the
configuration differences stated first."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from noisy_runs import Noise, noisy_run

from tests.records.builders import IN_PROCESS, kubernetes_cuda_request


def _run(results: Path, run_id: str, noise: Noise, **request: object) -> Path:
    return noisy_run(results, kubernetes_cuda_request(repetitions=3, run_id=run_id, **request), noise)


def test_compare_two_presets(tmp_path: Path) -> None:
    """Run B (llm-d v0.5.0) is truly 10 % faster with lmcache-redis than run A (v0.4.0); native-offload
    never engaged in B, so its cells are A's only."""
    run_a = _run(tmp_path / "a", "preset-a", Noise(1, cv=0.01), preset="llm-d-v0.4.0")
    noise_b = Noise(2, cv=0.01, effects={"lmcache-redis": 1.10}, zero_counters=frozenset({"native-offload"}))
    run_b = _run(tmp_path / "b", "preset-b", noise_b)
    out = tmp_path / "cmp"
    result = IN_PROCESS(["compare", str(run_a), str(run_b), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert text == (out / "compare.md").read_text() + "\n"
    assert text.index("## Configuration differences") < text.index("## Verdict") < text.index("## Per-cell")
    for line in (
        "| preset | llm-d-v0.4.0 | llm-d-v0.5.0 |",
        "| vLLM | 0.11.2 | 0.14.1 |",
        "| LMCache | 0.3.8 | 0.3.13 |",
    ):
        assert line in text, line
    assert "| scenarios measured in one run only |" not in text  # measured in both, invalid in B

    deltas = pd.read_csv(out / "compare_deltas.csv")
    assert set(deltas["run_a"]) == {"preset-a"} and set(deltas["run_b"]) == {"preset-b"}
    both = deltas[deltas["present_in"] == "both"]
    assert len(both) == 3 * 4  # no-offload, lmcache-redis, llm-d-valkey x (3 levels + peak)
    assert set(both[both["significant"]]["scenario"]) == {"lmcache-redis"}
    fast = both[(both["scenario"] == "lmcache-redis") & (both["concurrency"] == "peak")].iloc[0]
    assert fast["ci_low_pct"] <= 10.0 <= fast["ci_high_pct"]
    assert fast["n_a"] == fast["n_b"] == 3
    only = deltas[deltas["present_in"] != "both"]
    assert set(zip(only["scenario"], only["present_in"], strict=True)) == {("native-offload", "only A")}

    assert "**Significantly faster in B:**" in text
    assert "Qwen3-8B / lmcache-redis / peak (c=16 → c=16): +" in text
    assert "| Qwen3-8B | lmcache-redis | c=16 |" in text
    assert "## Cells in only one run\n\n- Qwen3-8B / native-offload / c=1: only A" in text
    assert "- **Invalid in B (`preset-b`), never counted:**" in text
    assert "![B vs A: per-cell change](compare_heatmap.png)" in text
    assert (out / "compare_heatmap.png").stat().st_size > 20_000


def test_one_configuration_run_twice_shows_no_difference(tmp_path: Path) -> None:
    """Two runs of the same configuration (two groups of repetitions of it): nothing is significant, and the
    only configuration difference is none."""
    run_a = _run(tmp_path / "a", "same-a", Noise(11))
    run_b = _run(tmp_path / "b", "same-b", Noise(12))
    result = IN_PROCESS(["compare", str(run_a), str(run_b)])
    assert result.exit_code == 0, result.stderr
    assert "None in the recorded configuration" in result.stdout
    assert "Significantly" not in result.stdout
    assert "**Indistinguishable (16 cells):**" in result.stdout


def test_compare_flags_different_guidellm_versions(tmp_path: Path) -> None:
    """Run A measured with GuideLLM 0.5.3, run B with 0.8.1 (single-turn, which both send)."""
    requests = []
    for run_id, version in (("g-a", "0.5.3"), ("g-b", "0.8.1")):
        request = kubernetes_cuda_request(repetitions=3, run_id=run_id, guidellm_version=version)
        request["workload"]["turns"] = 1
        requests.append(request)
    run_a = noisy_run(tmp_path / "a", requests[0], Noise(1, report_version="0.5.3"))
    run_b = noisy_run(tmp_path / "b", requests[1], Noise(2))
    result = IN_PROCESS(["compare", str(run_a), str(run_b), "--out", str(tmp_path / "o"), "--no-figures"])
    assert result.exit_code == 0, result.stderr
    assert "| GuideLLM | 0.5.3 | 0.8.1 |" in result.stdout
    assert "| GuideLLM dialect | 0.5 | 0.7 |" in result.stdout
    assert "**⚠ GuideLLM versions differ between the runs (0.5.3, 0.8.1):**" in result.stdout
    deltas = pd.read_csv(tmp_path / "o" / "compare_deltas.csv")
    both = deltas[deltas["present_in"] == "both"]
    assert len(both) == 16 and not both["comparable"].any()
    assert not (tmp_path / "o" / "compare_heatmap.png").exists()


def test_compare_wants_one_run_on_each_side(tmp_path: Path) -> None:
    run_a = _run(tmp_path / "two", "one", Noise(1))
    _run(tmp_path / "two", "other", Noise(2))
    result = IN_PROCESS(["compare", str(run_a.parent), str(run_a)])
    assert result.exit_code == 2
    assert "must hold exactly one run to compare (found: one, other)" in result.stderr
