"""inventory/gpu-local (one offline GPU host) is consistent with the catalog: the model it makes with
roles/tiny_model has the geometry the catalog sizes the KV tiers from, its preset exists and pins the releases
that fit torch 2.11, and every install reads from a wheelhouse."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HOST = yaml.safe_load((REPO / "inventory/gpu-local/hosts.yml").read_text())["all"]["hosts"]["localhost"]
MODELS = yaml.safe_load((REPO / "group_vars/all/models.yml").read_text())["kvbench_models"]
PRESETS = yaml.safe_load((REPO / "group_vars/all/versions.yml").read_text())["kvbench_version_presets"]


def test_the_made_model_has_the_catalog_geometry() -> None:
    entry = MODELS[HOST["model"]]
    assert HOST["tiny_model_layers"] == entry["layers"] == 36
    assert HOST["tiny_model_kv_heads"] == entry["kv_heads"] == 8
    assert HOST["tiny_model_head_dim"] == entry["head_dim"] == 128
    # 2 (K and V) x layers x KV heads x head_dim x 2 bytes (bf16): Qwen3-8B's 147,456 bytes per token
    assert 2 * entry["layers"] * entry["kv_heads"] * entry["head_dim"] * entry["kv_dtype_bytes"] == 147456
    assert HOST["tiny_model_weights"] is False and "dummy" in HOST["vllm_extra_args"]
    assert HOST["tiny_model_pad_tokenizer"] is True


def test_the_preset_fits_the_node_pytorch_and_installs_are_offline() -> None:
    preset = PRESETS[HOST["preset"]]
    assert (preset["vllm"], preset["lmcache"]) == ("0.26.0", "0.5.3")
    for role in ("vllm", "lmcache", "guidellm"):
        assert HOST[f"{role}_wheelhouse"], role
        assert HOST[f"{role}_wheelhouse_closure"] is True, role
    assert HOST["platform"] == "cuda" and HOST["kvbench_pcp"] is False
