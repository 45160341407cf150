"""Render every scenario x model x preset once per session with the real render.yml (no cluster needed), and
compute, independently of Ansible, the plan each render must come from (kvbench.plan.build_plan)."""

from __future__ import annotations

import copy
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from kvbench.plan import build_plan
from tests.plan.catalogs import catalog, group_vars

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
MODELS = ("Qwen3-0.6B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B-AWQ")
PRESETS = ("llm-d-v0.4.0", "llm-d-v0.5.0")
# Recognisable fakes: no rendered file may contain them (secrets are only referenced, never written).
FAKE_HF_TOKEN = "hf_kvbenchFAKEtoken0123456789abcdef"
FAKE_REDIS_PASSWORD = "kvbenchFAKEredisPassword42"
FAKE_VALKEY_PASSWORD = "kvbenchFAKEvalkeyPassword42"


# What inventory/cluster.example and the k8s_* defaults give the plan: the gateway Service Istio creates for
# kvbench-gateway in namespace kvbench (port 80), the EPP Service, the store Services, the results volume.
CLUSTER_TP = 2  # inventory/cluster.example/hosts.yml
CLUSTER_REPLICAS = 2  # k8s_vllm_replicas of inventory/cluster.example (the plan takes it without -e replicas)
GATEWAY_URL = "http://kvbench-gateway-istio.kvbench.svc.cluster.local:80"
CLUSTER_WIRING = {
    "epp_service": "kvbench-pool-epp",
    "kv_events_port": 5557,
    "store_addresses": {"redis": "kvbench-redis:6379", "valkey": "kvbench-valkey:6379"},
}


def cluster_request(model: str, preset: str) -> dict[str, Any]:
    """The request render.yml makes for -i inventory/cluster.example -e target=kubernetes (catalogs)."""
    gv = copy.deepcopy(group_vars())
    return {
        "catalog": catalog(),
        "model": model,
        "target": "kubernetes",
        "platform": "cuda",
        "preset": preset,
        # render.yml renders every scenario of the catalog, the ones run only when named included
        "scenarios": list(catalog()["scenarios"]),
        "concurrency": gv["concurrency"],
        "repetitions": gv["repetitions"],
        "repetition_order": gv.get("repetition_order", "blocked"),
        "warm_cache": gv["warm_cache"],
        "run_id": "",
        "workload": {
            k: gv[k]
            for k in (
                "duration_s",
                "prompt_tokens",
                "output_tokens",
                "prefix_tokens",
                "prefix_count_per_stream",
                "turns",
                "seed",
            )
        },
        "vllm": {
            "tensor_parallel_size": CLUSTER_TP,
            "replicas": CLUSTER_REPLICAS,
            "max_num_seqs": gv["max_num_seqs"],
            "block_size": gv["block_size"],
            "hash_seed": gv["hash_seed"],
            "kv_offload_gib": gv["kv_offload_gib"],
            "port": gv.get("vllm_port", 8000),
        },
        "wiring": {"server_host": "localhost", **CLUSTER_WIRING},
        "guidellm": {
            "executable": "guidellm",
            "output_root": "/results/{run_id}",
            "target_url": GATEWAY_URL,
            "tokenizer": gv["kvbench_models"][model]["hf_id"],
            "version": gv["guidellm_release"],
            "request_timeout_s": gv.get("guidellm_request_timeout_s", 600),
            "warmup": gv.get("guidellm_warmup"),
            "cooldown": gv.get("guidellm_cooldown"),
            "request_samples": gv.get("guidellm_request_samples", 0),
            "labels": gv.get("guidellm_labels") or {},
        },
    }


@cache
def expected_plan(model: str, preset: str) -> dict[str, Any]:
    return build_plan(cluster_request(model, preset))


@dataclass(frozen=True)
class Render:
    model: str
    preset: str
    root: Path


def run_playbook(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the repository root (ansible.cfg there) and capture its output."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _render(model: str, preset: str, out: Path) -> Render:
    proc = run_playbook(
        "-i",
        "inventory/cluster.example",
        "playbooks/render.yml",
        "-e",
        f"model={model}",
        "-e",
        "target=kubernetes",
        "-e",
        f"preset={preset}",
        "-e",
        f"render_dir={out}",
        "-e",
        f"k8s_common_hf_token={FAKE_HF_TOKEN}",
        "-e",
        f"redis_password={FAKE_REDIS_PASSWORD}",
        "-e",
        f"valkey_password={FAKE_VALKEY_PASSWORD}",
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"render.yml failed for {model}/{preset}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        )
    return Render(model, preset, out)


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> list[Render]:
    """All models x presets, two ansible-playbook runs at a time."""
    base = tmp_path_factory.mktemp("k8s-render")
    combos = [(m, p, base / f"{m}--{p}") for m in MODELS for p in PRESETS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda c: _render(*c), combos))
