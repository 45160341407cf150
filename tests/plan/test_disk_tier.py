"""Disk-tier scenarios: lmcache-disk resolves for every configured LMCache, native-offload-disk is skipped
with its reason where vLLM has no file-backed spec, and both take the CPU scenarios' byte budget."""

from __future__ import annotations

import pytest

from kvbench.plan import PlanError, build_plan
from kvbench.plan.resolve import disk_front_gib
from kvbench.records import problems
from tests.plan.catalogs import catalog, request

GIB = 1 << 30
CUDA_PRESETS = ("llm-d-v0.4.0", "llm-d-v0.5.0")


def gpu_plan(preset: str, target: str = "nodes", **vllm) -> dict:
    wiring = {"server_host": "localhost", "epp_service": "kvbench-pool-epp"}
    return build_plan(
        request(
            model="Qwen3-8B",
            platform="cuda",
            preset=preset,
            target=target,
            scenarios="native-offload,lmcache-local,lmcache-disk,native-offload-disk",
            vllm={"tensor_parallel_size": 2, "kv_offload_gib": 39.0625, **vllm},
            wiring=wiring,
        )
    )


def by_name(plan: dict) -> dict[str, dict]:
    return {s["name"]: s for s in plan["scenarios"]}


@pytest.mark.parametrize("target", ["nodes", "kubernetes"])
@pytest.mark.parametrize("preset", CUDA_PRESETS)
def test_lmcache_disk_resolves_with_a_small_cpu_tier_in_front_of_the_same_budget(preset, target):
    s = by_name(gpu_plan(preset, target))
    disk, local = s["lmcache-disk"], s["lmcache-local"]
    assert disk["supported"] and disk["skip_reason"] is None
    cfg = disk["lmcache"]
    root = catalog()["targets"][target]["kv_disk_path"]
    assert disk["disk_tier"]["path"] == f"{root}/lmcache-disk"
    assert cfg["local_disk"] == f"file://{root}/lmcache-disk/"
    # The disk holds the budget the CPU tier of lmcache-local holds (GiB per TP rank).
    assert (
        cfg["max_local_disk_size"]
        == local["lmcache"]["max_local_cpu_size"]
        == pytest.approx(39.0625 / 2, abs=1e-4)
    )
    assert disk["disk_tier"]["budget_bytes"] == local["capacity"]["budget_bytes"] == int(39.0625 * GIB)
    # The CPU tier in front is an eighth of it: most hits must come from the disk.
    assert cfg["local_cpu"] is True
    assert cfg["max_local_cpu_size"] == pytest.approx(39.0625 / 8 / 2, abs=1e-4)
    assert cfg["max_local_cpu_size"] < cfg["max_local_disk_size"] / 4
    # Without O_DIRECT a chunk read back soon after it was written comes from the page cache (memory).
    assert cfg["extra_config"] == {"use_odirect": True}
    assert cfg["save_unfull_chunk"] is False
    assert disk["lmcache_connector"] == "local_disk"
    assert disk["vllm"]["env"]["LMCACHE_CONFIG_FILE"]


@pytest.mark.parametrize("preset", CUDA_PRESETS)
def test_native_offload_disk_is_skipped_with_the_reason_where_vllm_has_no_file_spec(preset):
    plan = gpu_plan(preset)
    assert problems(plan, "plan") == []
    s = by_name(plan)["native-offload-disk"]
    version = catalog()["presets"][preset]["vllm"]
    assert not s["supported"]
    assert "no file-backed offloading spec" in s["skip_reason"] and version in s["skip_reason"]
    assert s["disk_tier"] is None  # nothing to probe, nothing to mount
    segment = next(g for g in plan["schedule"] if g["scenario"] == "native-offload-disk")
    assert segment["supported"] is False
    # The CPU scenario of the same connector still runs: only the file-backed variant is missing.
    assert by_name(plan)["native-offload"]["supported"]


def test_disk_scenarios_are_skipped_for_the_platform_on_cpu():
    plan = build_plan(request(scenarios="no-offload,lmcache-disk,native-offload-disk"))
    s = by_name(plan)
    assert "degraded mode" in s["lmcache-disk"]["skip_reason"]
    assert "CUDA" in s["native-offload-disk"]["skip_reason"]


def test_disk_scenarios_stay_out_of_the_default_matrix():
    names = [s["name"] for s in build_plan(request())["scenarios"]]
    assert "lmcache-disk" not in names and "native-offload-disk" not in names


def test_the_front_tier_is_at_least_one_gib_and_never_more_than_the_budget():
    assert disk_front_gib(80) == pytest.approx(10)
    assert disk_front_gib(4) == pytest.approx(1)
    assert disk_front_gib(0.5) == pytest.approx(0.5)


def test_a_target_without_a_disk_path_fails_naming_it():
    req = request(model="Qwen3-8B", platform="cuda", preset="llm-d-v0.5.0", scenarios="lmcache-disk")
    del req["catalog"]["targets"]["nodes"]["kv_disk_path"]
    with pytest.raises(PlanError, match="kv_disk_path"):
        build_plan(req)


def test_a_bad_version_specifier_is_named():
    req = request(model="Qwen3-8B", platform="cuda", preset="llm-d-v0.5.0", scenarios="native-offload-disk")
    req["catalog"]["scenarios"]["native-offload-disk"]["unsupported_versions"][0]["vllm"] = "<<0.15"
    with pytest.raises(PlanError, match="native-offload-disk: bad vllm specifier"):
        build_plan(req)
