"""The real catalogs (group_vars/all) as Ansible loads them, and requests for kvbench.plan built from them."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

GROUP_VARS = Path(__file__).resolve().parents[2] / "group_vars" / "all"


@cache
def group_vars() -> dict[str, Any]:
    """Every variable of group_vars/all, Jinja values left as plain strings."""
    merged: dict[str, Any] = {}
    for path in sorted(GROUP_VARS.glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def catalog() -> dict[str, Any]:
    found = group_vars()
    return copy.deepcopy(
        {
            "models": found["kvbench_models"],
            "scenarios": found["kvbench_scenarios"],
            "presets": found["kvbench_version_presets"],
            "platforms": found["kvbench_platforms"],
            "targets": found["kvbench_targets"],
        }
    )


def request(**overrides: Any) -> dict[str, Any]:
    """A nodes request like the demo's (tiny model, CPU), with `overrides` merged on top (one level deep)."""
    base: dict[str, Any] = {
        "model": "tiny-qwen3",
        "target": "nodes",
        "platform": "cpu",
        "preset": "cpu-local",
        "scenarios": [],
        "concurrency": [1, 4],
        "repetitions": 2,
        "repetition_order": "blocked",
        "warm_cache": False,
        "run_id": "",
        "workload": {
            "duration_s": 15,
            "prompt_tokens": 64,
            "output_tokens": 32,
            "prefix_tokens": 512,
            "prefix_count_per_stream": 2,
            "turns": 2,
            "seed": 889,
        },
        "vllm": {
            "tensor_parallel_size": 1,
            "max_num_seqs": 256,
            "block_size": "",
            "hash_seed": "0",
            "kv_offload_gib": 1,
            "port": 8000,
        },
        "wiring": {"server_host": "localhost", "epp_service": "kvbench-pool-epp"},
        "guidellm": {
            "version": "0.8.1",
            "executable": "/opt/venv/bin/guidellm",
            "tokenizer": "/models/tiny-qwen3",
            "target_url": "http://127.0.0.1:8000",
            "output_root": "/var/lib/kvbench/runs/{run_id}",
            "request_timeout_s": 600,
            "request_samples": 0,
        },
        "catalog": catalog(),
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base
