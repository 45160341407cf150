"""kvbench.plan.capacity: the KV-capacity model from the catalog's model geometry, and memory_pressure."""

from __future__ import annotations

import pytest

from kvbench.plan import PlanError, build_plan
from kvbench.plan.capacity import (
    bytes_per_block,
    bytes_per_token,
    check_pressure,
    memory_pressure,
    probe_pieces,
    reload_time_s,
    working_set,
    working_sets,
)
from kvbench.records import problems
from tests.plan.catalogs import catalog, request

# Qwen3 0.6B/8B/14B/32B (bf16 KV): 28/36/40/64 layers, 8 KV heads, head_dim 128 (the models' config.json).
QWEN3_BYTES_PER_TOKEN = {
    "Qwen3-0.6B": 114_688,
    "Qwen3-8B": 147_456,
    "Qwen3-14B": 163_840,
    "Qwen3-32B-AWQ": 262_144,
}


@pytest.mark.parametrize(("model", "expected"), QWEN3_BYTES_PER_TOKEN.items())
def test_bytes_per_token_and_block_of_the_catalog_models(model: str, expected: int) -> None:
    entry = catalog()["models"][model]
    assert bytes_per_token(entry) == expected
    assert bytes_per_block(entry) == expected * 16  # vLLM's CUDA block size
    assert bytes_per_block(entry, 128) == expected * 128


def test_the_working_set_counts_each_prefix_once_and_every_live_conversation() -> None:
    workload = {"prefix_tokens": 10_000, "prefix_count_per_stream": 2, "turns": 5,
                "prompt_tokens": 128, "output_tokens": 128}  # fmt: skip
    level = working_set(workload, 50)
    assert level == {
        "concurrency": 50,
        "prefix_count": 100,
        "prefix_tokens": 1_000_000,
        "live_tokens": 50 * 5 * 256,
        "tokens": 1_000_000 + 64_000,
    }
    # GuideLLM 0.5.x sends one turn whatever `turns` says.
    assert working_set(workload, 50, turns_sent=1)["live_tokens"] == 50 * 256
    assert [s["concurrency"] for s in working_sets(workload, [650, 1, 50])] == [1, 50, 650]


def test_reload_time_of_one_prefix_at_a_bandwidth() -> None:
    model = catalog()["models"]["Qwen3-8B"]
    # 10,000 tokens x 147,456 B = 1.47456 GB; at 55 GB/s that is 26.8 ms.
    assert reload_time_s(10_000, model, 55.0) == pytest.approx(1.47456 / 55.0)
    assert reload_time_s(10_000, model, None) is None
    assert reload_time_s(10_000, model, 0.0) is None


def test_probe_pieces_are_what_one_gpu_moves() -> None:
    model = catalog()["models"]["Qwen3-8B"]
    pieces = {p["name"]: p["bytes"] for p in probe_pieces(model, 16, 1)}
    # The H200 figures of issue 9: 2.25 MiB per offload block, 32 KiB per layer's K or V of a block.
    assert pieces == {
        "offload_block": 2_359_296,
        "layer_piece": 32_768,
        "lmcache_chunk": 256 * 147_456,
        "one_gib": 1 << 30,
    }
    # TP=2 splits the 8 KV heads: each GPU moves half of every piece but the fixed 1 GiB.
    halves = {p["name"]: p["bytes"] for p in probe_pieces(model, 16, 2)}
    assert halves["offload_block"] == 2_359_296 // 2 and halves["layer_piece"] == 16_384
    assert halves["one_gib"] == 1 << 30


@pytest.mark.parametrize("value", [None, "", "off", 0, "0"])
def test_memory_pressure_unset(value: object) -> None:
    assert check_pressure(value) is None


@pytest.mark.parametrize("value", ["-0.1", 1.5, "a third", True, "nan"])
def test_memory_pressure_out_of_range_names_the_range(value: object) -> None:
    with pytest.raises(PlanError, match=r"greater than 0 and at most 1 .*got"):
        check_pressure(value)


def test_memory_pressure_sets_the_gpu_blocks_in_the_vllm_args_and_the_plan() -> None:
    plan = build_plan(request(memory_pressure="0.33", concurrency=[1, 4]))
    assert problems(plan, "plan") == []
    # tiny model on cpu: block 128; at c=4: 8 prefixes x 512 + 4 x 2 turns x 96 tokens = 4,864 tokens.
    pressure = plan["memory_pressure"]
    assert pressure["working_set_tokens"] == 8 * 512 + 4 * 2 * 96 == 4_864
    assert pressure["at_concurrency"] == 4 and pressure["block_size"] == 128
    assert pressure["num_gpu_blocks"] == 13  # ceil(0.33 x 4,864 / 128) = ceil(12.54)
    assert pressure["gpu_tokens"] == 13 * 128
    for scenario in plan["scenarios"]:
        args = scenario["vllm"]["args"]
        assert args[args.index("--num-gpu-blocks-override") + 1] == "13"
    assert plan["kv_capacity"]["working_sets"][-1]["tokens"] == 4_864


def test_without_memory_pressure_vllm_sizes_its_own_cache_and_the_run_id_is_unchanged() -> None:
    plain = build_plan(request())
    assert plain["memory_pressure"] is None
    assert all("--num-gpu-blocks-override" not in s["vllm"]["args"] for s in plain["scenarios"])
    pressed = build_plan(request(memory_pressure=0.5))
    assert pressed["run_id"] != plain["run_id"]  # another experiment, another run directory
    assert build_plan(request(memory_pressure="")) ["run_id"] == plain["run_id"]  # fmt: skip


def test_the_plan_rejects_memory_pressure_out_of_range() -> None:
    with pytest.raises(PlanError, match=r"memory_pressure must be .* at most 1"):
        build_plan(request(memory_pressure=2))


def test_a_gpu_cache_smaller_than_one_conversation_is_refused() -> None:
    # At c=4 the working set is 4,864 tokens; 0.01 of it is one 128-token block, below one conversation.
    with pytest.raises(PlanError, match=r"less than one conversation \(704 tokens\); use at least"):
        build_plan(request(memory_pressure=0.01))


def test_replicas_share_the_pressured_cache() -> None:
    model = catalog()["models"]["Qwen3-8B"]
    workload = {"prefix_tokens": 10_000, "prefix_count_per_stream": 2, "turns": 5,
                "prompt_tokens": 128, "output_tokens": 128}  # fmt: skip
    one = memory_pressure(0.33, model, workload, [8, 32], 16, 5)
    two = memory_pressure(0.33, model, workload, [8, 32], 16, 5, replicas=2)
    assert one is not None and two is not None
    assert one["working_set_tokens"] == 64 * 10_000 + 32 * 5 * 256
    assert two["num_gpu_blocks"] == pytest.approx(one["num_gpu_blocks"] / 2, abs=1)
    assert one["gpu_bytes"] == one["num_gpu_blocks"] * 16 * 147_456


def test_the_plan_carries_the_probe_pieces_of_its_model_and_scenarios() -> None:
    plan = build_plan(
        request(
            model="Qwen3-8B", platform="cuda", preset="llm-d-v0.5.0", scenarios="no-offload,lmcache-local"
        )
    )
    pieces = {p["name"]: p["bytes"] for p in plan["kv_capacity"]["probe_pieces"]}
    assert pieces["offload_block"] == 2_359_296 and pieces["lmcache_chunk"] == 256 * 147_456
    assert plan["kv_capacity"]["bytes_per_token"] == 147_456
    assert plan["kv_capacity"]["bytes_per_block"] == 147_456 * 16
