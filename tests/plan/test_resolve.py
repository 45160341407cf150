"""The resolver turns catalog entries into the settings real components read, per version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kvbench.plan import resolve as resolver

REPO = Path(__file__).resolve().parents[2]

CATALOG = {}
for name in ("models", "scenarios", "versions", "platforms"):
    CATALOG.update(yaml.safe_load((REPO / "group_vars" / "all" / f"{name}.yml").read_text()))


def resolve(
    scenario: str,
    model: str = "Qwen3-32B-AWQ",
    preset: str = "llm-d-v0.5.0",
    platform: str = "cuda",
    target: str = "nodes",
    **settings,
):
    base = {
        "served_model_name": model,
        "tensor_parallel_size": 2,
        "kv_offload_gib": 39.0625,
        "stores": CATALOG["kvbench_targets"][target]["store_addresses"],
        "hash_seed": "42",
    }
    base.update(settings)
    return resolver.resolve_scenario(
        scenario,
        catalog=CATALOG["kvbench_scenarios"],
        model=CATALOG["kvbench_models"][model],
        versions=CATALOG["kvbench_version_presets"][preset],
        platform=platform,
        target=target,
        settings=base,
        platforms=CATALOG["kvbench_platforms"],
        targets=CATALOG["kvbench_targets"],
    )


def arg(resolved: dict, flag: str) -> str:
    args = resolved["vllm"]["args"]
    return args[args.index(flag) + 1]


@pytest.mark.parametrize(
    ("model", "bytes_per_token", "gib_10k_blocks"),
    [
        ("Qwen3-0.6B", 114_688, 17.1),
        ("Qwen3-8B", 147_456, 22.0),
        ("Qwen3-14B", 163_840, 24.4),
        ("Qwen3-32B-AWQ", 262_144, 39.1),
    ],
)
def test_kv_bytes_per_token_matches_the_reference_table(model, bytes_per_token, gib_10k_blocks):
    entry = CATALOG["kvbench_models"][model]
    assert resolver.kv_bytes_per_token(entry, 2) == bytes_per_token
    assert round(10_000 * 16 * bytes_per_token / 2**30, 1) == gib_10k_blocks


def test_replicated_kv_heads_count_once_per_rank():
    tiny = {"layers": 2, "kv_heads": 2, "head_dim": 64, "kv_dtype_bytes": 2}
    assert resolver.kv_bytes_per_token(tiny, 1) == 2 * 2 * 2 * 64 * 2
    # 2 KV heads on 4 ranks: every rank stores one full head.
    assert resolver.kv_bytes_per_token(tiny, 4) == 2 * 2 * 4 * 64 * 2


def test_native_offload_uses_blocks_per_worker_before_0_14():
    r = resolve("native-offload", preset="llm-d-v0.4.0")
    cfg = json.loads(arg(r, "--kv-transfer-config"))
    assert cfg["kv_connector"] == "OffloadingConnector"
    # The evaluation's "10,000 blocks = 39 GB" holds for 32B with 16-token blocks.
    assert cfg["kv_connector_extra_config"] == {"num_cpu_blocks": 10_000, "eviction_policy": "lru"}


def test_native_offload_uses_total_bytes_from_0_14():
    r = resolve("native-offload", preset="llm-d-v0.5.0")
    extra = json.loads(arg(r, "--kv-transfer-config"))["kv_connector_extra_config"]
    assert extra == {"cpu_bytes_to_use": int(39.0625 * 2**30)}
    assert "num_cpu_blocks" not in extra


def test_equal_capacity_across_offload_scenarios():
    """One byte budget: blocks x block bytes, total bytes and GiB per rank x ranks all describe it."""
    for model in ("Qwen3-0.6B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B-AWQ"):
        old = resolve("native-offload", model=model, preset="llm-d-v0.4.0")
        new = resolve("native-offload", model=model, preset="llm-d-v0.5.0")
        lm = resolve("lmcache-local", model=model, preset="llm-d-v0.5.0")
        cap = old["capacity"]
        blocks = old["vllm"]["kv_transfer_config"]["kv_connector_extra_config"]["num_cpu_blocks"]
        block_bytes = cap["bytes_per_token"] * cap["block_size"]
        budget = new["vllm"]["kv_transfer_config"]["kv_connector_extra_config"]["cpu_bytes_to_use"]
        assert budget - block_bytes < blocks * block_bytes <= budget
        assert lm["lmcache"]["max_local_cpu_size"] * 2 == pytest.approx(budget / 2**30, abs=1e-3)


def test_lmcache_scenarios_use_the_v1_connector_and_a_config_file():
    for name in ("lmcache-local", "lmcache-redis", "lmcache-valkey"):
        r = resolve(name)
        cfg = json.loads(arg(r, "--kv-transfer-config"))
        assert cfg == {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
        assert r["vllm"]["env"]["LMCACHE_CONFIG_FILE"].endswith(".yaml")
        # None of the evaluation's invented keys.
        assert not {"backend", "redis_url", "valkey_url", "cpu_blocks"} & set(r["lmcache"])
    # The password is a marker the lmcache role replaces on the host: resolved settings are recorded.
    assert (
        resolve("lmcache-redis")["lmcache"]["remote_url"]
        == "redis://:${KVBENCH_STORE_PASSWORD}@127.0.0.1:6379"
    )


def test_valkey_connector_depends_on_lmcache_version():
    new = resolve("lmcache-valkey", preset="llm-d-v0.5.0")
    # The evaluation's image carries LMCache 0.3.8 (no Valkey connector); pip installs on nodes take 0.3.9.
    old = resolve("lmcache-valkey", preset="llm-d-v0.4.0", target="kubernetes")
    assert resolve("lmcache-valkey", preset="llm-d-v0.4.0")["lmcache_connector"] == "valkey"
    assert new["lmcache"]["remote_url"].startswith("valkey://")
    assert new["lmcache_connector"] == "valkey"
    assert old["lmcache"]["remote_url"].startswith("redis://")
    assert old["lmcache_connector"] == "redis-protocol-to-valkey"


@pytest.mark.parametrize("store", ["inmem", "redis", "valkey"])
def test_index_scenarios_publish_kv_events_hashed_like_the_index(store):
    r = resolve(f"llm-d-{store}", block_size=64)
    events = json.loads(arg(r, "--kv-events-config"))
    assert events["enable_kv_cache_events"] is True and events["publisher"] == "zmq"
    assert arg(r, "--prefix-caching-hash-algo") == "sha256_cbor"
    assert arg(r, "--block-size") == str(r["index"]["block_size"]) == "64"
    assert r["vllm"]["env"]["PYTHONHASHSEED"] == r["index"]["hash_seed"] == "42"
    assert r["index"]["store"] == store
    assert (r["index"]["address"] is None) == (store == "inmem")


def test_kubernetes_topic_names_the_pod_and_endpoint_the_epp():
    r = resolve("llm-d-redis", target="kubernetes", epp_service="kvbench-epp")
    events = r["vllm"]["kv_events_config"]
    assert events["topic"] == "kv@$(POD_IP)@Qwen3-32B-AWQ"
    assert events["endpoint"] == "tcp://kvbench-epp:5557"


def test_cpu_platform_skips_what_it_cannot_run_with_a_reason():
    for name in ("native-offload", "lmcache-local", "lmcache-redis", "lmcache-valkey"):
        r = resolve(name, platform="cpu", preset="cpu-local")
        assert r["supported"] is False
        assert r["skip_reason"]
    ok = resolve("no-offload", platform="cpu", preset="cpu-local", block_size="")
    assert ok["supported"] and arg(ok, "--block-size") == "128"
    assert "--enforce-eager" in ok["vllm"]["args"]


def test_unknown_names_and_uncovered_versions_fail_with_the_valid_choices():
    with pytest.raises(Exception, match=r"unknown scenario 'nope'.*no-offload"):
        resolve("nope")
    catalog = {
        "x": {
            "platforms": ["cuda"],
            "kv_transfer": {"kv_connector": "OffloadingConnector"},
            "kv_connector_extra_config": [{"vllm": ">=0.14", "config": {}}],
        }
    }
    with pytest.raises(Exception, match=r"no settings for vllm 0.11.2 \(catalog covers: >=0.14\)"):
        resolver.resolve_scenario(
            "x",
            catalog=catalog,
            model=CATALOG["kvbench_models"]["Qwen3-8B"],
            versions={"vllm": "0.11.2"},
            platform="cuda",
            target="nodes",
            settings={},
            platforms=CATALOG["kvbench_platforms"],
            targets=CATALOG["kvbench_targets"],
        )


def test_placeholders_keep_types_and_reject_unknown_names():
    assert resolver.fill({"a": "{n}", "b": "x{n}y"}, {"n": 3}, "t") == {"a": 3, "b": "x3y"}
    with pytest.raises(Exception, match=r"unknown placeholder \{m\}"):
        resolver.fill("{m}", {"n": 1}, "t")


def test_csv_list_accepts_command_line_forms():
    assert resolver.csv_list("1,50, 100") == ["1", "50", "100"]
    assert resolver.csv_list("[1, 4]") == [1, 4]
    assert resolver.csv_list(["a"]) == ["a"]
    assert resolver.csv_list("") == []
