"""Model order by size, scenario order of the evaluation, unknown names after the known ones."""

from __future__ import annotations

from pathlib import Path

from analyzer_fixtures import Level, write_original_point

from kvbench.naming import canonical_scenario, model_params_b, order_models, order_scenarios


def test_models_by_size_unknown_last() -> None:
    names = [
        "mystery-model",
        "Qwen3-32B-AWQ",
        "Llama-3.1-70B-Instruct",
        "Qwen3.6-27B-FP8",
        "Qwen3-0.6B",
        "Qwen3-14B",
        "SmolLM-135M",
        "Qwen3-8B",
    ]
    assert order_models(names) == [
        "SmolLM-135M",
        "Qwen3-0.6B",
        "Qwen3-8B",
        "Qwen3-14B",
        "Qwen3.6-27B-FP8",
        "Qwen3-32B-AWQ",
        "Llama-3.1-70B-Instruct",
        "mystery-model",
    ]
    assert model_params_b("Qwen3.6-27B-FP8") == 27.0
    assert model_params_b("mystery-model") is None


def test_scenarios_in_evaluation_order_unknown_after() -> None:
    names = [
        "zeta-custom",
        "llm-d-valkey",
        "native-offload-20k",
        "no-offload",
        "lmcache-valkey",
        "llm-d-inmem",
        "lmcache-local",
        "native-offload",
        "llm-d-redis",
        "lmcache-redis",
    ]
    assert order_scenarios(names) == [
        "no-offload",
        "native-offload",
        "lmcache-local",
        "lmcache-redis",
        "lmcache-valkey",
        "llm-d-redis",
        "llm-d-valkey",
        "llm-d-inmem",
        "native-offload-20k",
        "zeta-custom",
    ]


def test_scenario_spellings_of_the_original_evaluation() -> None:
    assert canonical_scenario("no-cpu-offload") == "no-offload"
    assert canonical_scenario("native-offload-10k") == "native-offload"
    # other capacities are other treatments and keep their names
    assert canonical_scenario("native-offload-20kcpu") == "native-offload-20kcpu"
    assert canonical_scenario("cpu+fs-offload-20k") == "cpu+fs-offload-20k"


def test_unknown_model_and_scenario_ordered_in_outputs(tmp_path: Path, run_analyze) -> None:
    for model in ("Qwen3.6-27B-FP8", "Qwen3-0.6B", "house-model"):
        for scenario in ("native-offload-20k", "no-offload", "llm-d-valkey"):
            write_original_point(tmp_path / "t", model, scenario, Level(50, 100.0))
    run = run_analyze(tmp_path / "t")
    peaks = run.csv("peak_throughput_all.csv")
    assert list(dict.fromkeys(peaks["model"])) == ["Qwen3-0.6B", "Qwen3.6-27B-FP8", "house-model"]
    assert list(peaks["scenario"][:3]) == ["no-offload", "llm-d-valkey", "native-offload-20k"]
