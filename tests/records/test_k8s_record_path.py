"""A Kubernetes results tree produced by the Kubernetes record path from canned inputs (a real rendered plan
plus the real GuideLLM sample files) analyses with the right scenarios and no bad-input warnings.

The tree is built with the calls the Kubernetes target makes (`kvbench plan` for target kubernetes, then
`kvbench record point|scenario|manifest` as each step finishes), plus what only that target leaves beside
the records: treatment.json, diagnostics/ (pod YAML, events, container logs), server/<pod>.log and
pcp/<node>/ archives. None of those may be taken for a GuideLLM result.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.records.builders import (
    SweepOptions,
    add_kubernetes_extras,
    analyze,
    kubernetes_cuda_request,
    plan_run,
    sweep,
)

PODS = ("kvbench-vllm-0", "kvbench-vllm-1")
SCENARIOS = ["no-offload", "native-offload", "lmcache-redis", "llm-d-valkey"]


@pytest.fixture(scope="module")
def kubernetes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    results = tmp_path_factory.mktemp("k8s") / "results"
    plan, run_dir = plan_run(results, kubernetes_cuda_request(scenarios=SCENARIOS))
    sweep(run_dir, plan, SweepOptions(servers=PODS, throughput_scale={"lmcache-redis": 1.25}))
    add_kubernetes_extras(run_dir, plan)
    return run_dir, plan


def test_kubernetes_tree_has_the_shape_of_a_nodes_run(kubernetes_run: tuple[Path, dict]) -> None:
    run_dir, plan = kubernetes_run
    assert plan["target"] == "kubernetes"
    for name in ("plan.json", "manifest.json", "SHA256SUMS", "timeline.jsonl"):
        assert (run_dir / name).is_file(), name
    for point in plan["points"]:
        assert (run_dir / point["dir"] / "point.json").is_file()
        assert (run_dir / point["dir"] / "guidellm.json.zst").is_file()
    for scenario in SCENARIOS:
        assert (run_dir / scenario / "treatment.json").is_file()
        assert (run_dir / scenario / "diagnostics" / "pods.yaml").is_file()


def test_kubernetes_tree_analyses_with_the_right_scenarios(
    kubernetes_run: tuple[Path, dict], tmp_path: Path
) -> None:
    run_dir, plan = kubernetes_run
    result = analyze(run_dir.parent, out=tmp_path / "out", figures=True)
    assert result.exit_code == 0, result.stderr
    assert result.bad_input_lines() == []
    assert "Traceback" not in result.stderr
    metrics = result.csv("complete_metrics.csv")
    # Scenario and run come from point.json: not "guidellm", not the sample's labels (scenario=mock,
    # run=sample-sweep), and the second scenario is not a "repetition 2".
    assert list(dict.fromkeys(metrics["scenario"])) == SCENARIOS
    assert set(metrics["run"]) == {plan["run_id"]}
    assert set(metrics["model"]) == {"Qwen3-8B"}
    assert set(metrics["repetition"]) == {1}
    assert set(metrics["status"]) == {"ok"}
    assert set(metrics["layout"]) == {"kvbench"}
    assert all(path.endswith("/guidellm.json.zst") for path in metrics["source_file"])
    for scenario in SCENARIOS:
        assert list(metrics.loc[metrics["scenario"] == scenario, "concurrency"]) == [1, 4, 16]
    peaks = result.csv("peak_throughput_all.csv")
    assert list(peaks["scenario"]) == SCENARIOS
    assert set(peaks["run"]) == {plan["run_id"]}
    delta = peaks.set_index("scenario")["delta_vs_baseline_pct"]
    assert delta["lmcache-redis"] == pytest.approx(25.0)
    assert delta["native-offload"] == pytest.approx(0.0)
    report = (result.out / "report.md").read_text()
    assert "Inputs that could not be read" not in report
    assert (result.out / "peak_throughput_all_scenarios.png").is_file()


def test_kubernetes_configuration_and_evidence_become_columns(
    kubernetes_run: tuple[Path, dict], tmp_path: Path
) -> None:
    run_dir, plan = kubernetes_run
    metrics = analyze(run_dir, out=tmp_path / "out").csv("complete_metrics.csv")
    by_scenario = metrics.groupby("scenario").first()
    assert set(metrics["target"]) == {"kubernetes"}
    assert set(metrics["platform"]) == {"cuda"}
    assert set(metrics["preset"]) == {"llm-d-v0.5.0"}
    assert set(metrics["vllm_version"]) == {"0.14.1"}
    assert set(metrics["guidellm_version"]) == {"0.8.1"}
    assert set(metrics["tensor_parallel_size"]) == {2}
    budget = next(s for s in plan["scenarios"] if s["name"] == "native-offload")["capacity"][
        "cpu_bytes_to_use"
    ]
    assert by_scenario.at["native-offload", "connector"] == "OffloadingConnector"
    assert by_scenario.at["native-offload", "cpu_offload_bytes"] == budget
    assert by_scenario.at["lmcache-redis", "connector"] == "LMCacheConnectorV1"
    assert by_scenario.at["lmcache-redis", "lmcache_connector"] == "redis"
    assert by_scenario.at["lmcache-redis", "lmcache_version"] == "0.3.13"
    assert by_scenario.at["lmcache-redis", "cpu_offload_bytes"] == budget
    assert by_scenario.at["llm-d-valkey", "index_store"] == "valkey"
    assert by_scenario.at["llm-d-valkey", "router"] == "precise-prefix-cache-scorer"
    for scenario in ("no-offload", "llm-d-valkey"):
        assert pd_isna(by_scenario.at[scenario, "connector"]) and pd_isna(
            by_scenario.at[scenario, "cpu_offload_bytes"]
        )
    # Evidence summed over both vLLM pods: hits 10c + (10c + 1), external hits 7c each.
    for _, row in metrics.iterrows():
        c = row["concurrency"]
        assert row["prefix_cache_hits_delta"] == 20 * c + 1
        assert row["external_prefix_cache_hits_delta"] == 14 * c
        assert row["index_keys_after"] == c
        assert row["servers"] == ";".join(PODS)
        assert row["seed"] == row["seed_reported"] == plan["workload"]["seed"] + c
    assert set(metrics["client_saturated_suspect"]) == {False}
    assert set(metrics["cache_reset_verified"]) == {True}


def pd_isna(value: object) -> bool:
    return value is None or value != value  # NaN is the only value unequal to itself


@pytest.mark.parametrize("part", ["scenario", "point_dir", "point_json"])
def test_parts_of_a_kubernetes_run_keep_their_identity(
    kubernetes_run: tuple[Path, dict], tmp_path: Path, part: str
) -> None:
    """A scenario directory, a point directory or a point.json given alone still analyses from its records,
    and the run's extras beside them stay out."""
    run_dir, plan = kubernetes_run
    path = {
        "scenario": run_dir / "lmcache-redis",
        "point_dir": run_dir / "lmcache-redis" / "c0004-r1",
        "point_json": run_dir / "lmcache-redis" / "c0004-r1" / "point.json",
    }[part]
    result = analyze(path, out=tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert result.bad_input_lines() == []
    metrics = result.csv("complete_metrics.csv")
    assert set(metrics["scenario"]) == {"lmcache-redis"}
    assert set(metrics["run"]) == {plan["run_id"]}
    assert len(metrics) == (3 if part == "scenario" else 1)


def test_the_target_extras_alone_are_not_results(kubernetes_run: tuple[Path, dict], tmp_path: Path) -> None:
    """diagnostics/ given alone (pod YAML, events, logs) holds no GuideLLM result, and says so."""
    run_dir, _ = kubernetes_run
    scenario = run_dir / "no-offload"
    assert json.loads((scenario / "treatment.json").read_text())["valid"] is True
    result = analyze(scenario / "diagnostics", out=tmp_path / "diag")
    assert result.exit_code == 1
    assert result.bad_input_lines() == [
        f"kvbench: {scenario / 'diagnostics'}: no GuideLLM results found in this directory"
    ]
