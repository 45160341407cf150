"""Order comes from the runs: models by the size their manifest records, scenarios in the manifest's order;
names no manifest orders fall back to the evaluation's order, and unknown ones come after."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from kvbench.naming import Ordering
from tests.records.builders import finished_run, kubernetes_cuda_request, nodes_cpu_request


def test_ordering_prefers_the_manifests_then_the_evaluation_then_names() -> None:
    ordering = Ordering.from_runs(
        {"house-model": 70.0, "Qwen3-8B": 8.0},
        [["llm-d-redis", "no-offload"], ["no-offload", "zeta-custom"]],
        ["run-b", "run-a"],
    )
    assert ordering.scenarios == ("llm-d-redis", "no-offload", "zeta-custom")
    names = ["alpha-custom", "native-offload", "zeta-custom", "no-offload", "llm-d-redis", "lmcache-local"]
    assert ordering.scenarios_of(names) == [
        "llm-d-redis",  # the manifests' order
        "no-offload",
        "zeta-custom",
        "native-offload",  # then the evaluation's order
        "lmcache-local",
        "alpha-custom",  # then unknown ones by name
    ]
    models = ["mystery", "house-model", "Qwen3-32B-AWQ", "Qwen3-8B", "SmolLM-135M"]
    # a size recorded in a manifest, else a known or parseable size; unknown sizes last
    assert ordering.models(models) == ["SmolLM-135M", "Qwen3-8B", "Qwen3-32B-AWQ", "house-model", "mystery"]
    assert Ordering.from_runs({"Qwen3-8B": 64.0}, [], []).models(["Qwen3-14B", "Qwen3-8B"]) == [
        "Qwen3-14B",
        "Qwen3-8B",
    ]
    assert [ordering.run_key(r)[:2] for r in ("run-b", "run-a", "run-c")] == [(0, 0), (0, 1), (1, 0)]


def test_scenario_order_is_the_manifests(tmp_path: Path, run_analyze) -> None:
    """Asked for llm-d-redis before no-offload, the run reports them in that order."""
    request = nodes_cpu_request(scenarios=["llm-d-redis", "no-offload"])
    finished_run(tmp_path / "results", request)
    result = run_analyze(tmp_path / "results")
    assert result.exit_code == 0, result.stderr
    assert list(dict.fromkeys(result.csv("complete_metrics.csv")["scenario"])) == [
        "llm-d-redis",
        "no-offload",
    ]
    assert list(result.csv("peak_throughput_all.csv")["scenario"]) == ["llm-d-redis", "no-offload"]
    report = (result.out / "report.md").read_text()
    assert report.index("| llm-d-redis |") < report.index("| no-offload |")


@pytest.mark.parametrize(
    ("lost", "order"),
    [
        (("manifest.json",), ["llm-d-redis", "no-offload"]),  # interrupted before the manifest: the plan
        (("manifest.json", "plan.json"), ["no-offload", "llm-d-redis"]),  # neither: the evaluation's order
    ],
)
def test_without_manifest_the_plan_then_the_evaluation_orders(
    tmp_path: Path, run_analyze, lost: tuple[str, ...], order: list[str]
) -> None:
    """A run whose manifest (and plan) were lost still analyses from its point records, offline."""
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request(scenarios=["llm-d-redis", "no-offload"]))
    for name in lost:
        (run_dir / name).unlink()
    result = run_analyze(tmp_path / "results")
    assert result.exit_code == 0, result.stderr
    peaks = result.csv("peak_throughput_all.csv")
    assert list(peaks["scenario"]) == order
    assert set(peaks["run"]) == {run_dir.name}


def test_a_damaged_plan_is_named_and_the_points_still_read(tmp_path: Path, run_analyze) -> None:
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request(scenarios=["no-offload"]))
    (run_dir / "manifest.json").unlink()
    (run_dir / "plan.json").write_text('{"kind": "kvbench.plan", "schema_version": 1}')
    result = run_analyze(tmp_path / "results")
    assert result.exit_code == 1
    assert f"kvbench: {run_dir / 'plan.json'}: not a valid kvbench plan record (schema 1): " in result.stderr
    assert "Traceback" not in result.stderr
    assert list(result.csv("complete_metrics.csv")["status"]) == ["ok"] * 3


def _request_for(model: str, params_b: float | None) -> dict:
    """A kubernetes request for a catalog model added here: Qwen3-8B's geometry, the given size."""
    request = kubernetes_cuda_request(model=model, scenarios=["no-offload", "lmcache-local"])
    entry = copy.deepcopy(request["catalog"]["models"]["Qwen3-8B"])
    entry["hf_id"] = f"example/{model}"
    if params_b is None:
        entry.pop("params_b")
    else:
        entry["params_b"] = params_b
    request["catalog"]["models"][model] = entry
    return request


def test_model_order_is_the_size_the_manifest_records(tmp_path: Path, run_analyze) -> None:
    """house-model says nothing of its size in its name: its manifest (from the catalog) says 70B. A model
    whose size nobody records comes last. The runs' order follows their models' sizes."""
    results = tmp_path / "results"
    finished_run(results, _request_for("mystery", None))
    finished_run(results, _request_for("house-model", 70.0))
    finished_run(results, _request_for("Qwen3-8B", 8.0))
    finished_run(results, nodes_cpu_request(scenarios=["no-offload"]))  # tiny-qwen3: 0.005B in the catalog
    result = run_analyze(results)
    assert result.exit_code == 0, result.stderr
    peaks = result.csv("peak_throughput_all.csv")
    assert list(dict.fromkeys(peaks["model"])) == ["tiny-qwen3", "Qwen3-8B", "house-model", "mystery"]
    metrics = result.csv("complete_metrics.csv")
    assert list(dict.fromkeys(metrics["model"])) == ["tiny-qwen3", "Qwen3-8B", "house-model", "mystery"]
    report = (result.out / "report.md").read_text()
    parts = [report.index(f"## Run `{run}`") for run in dict.fromkeys(peaks["run"])]
    assert parts == sorted(parts)
    assert [line for line in report.splitlines() if line.startswith("## Run")] == [
        f"## Run `{run}`" for run in dict.fromkeys(peaks["run"])
    ]
