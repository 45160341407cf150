"""Multi-replica routing: `replicas` and `tensor_parallel_size` are sweep options in the plan (2 x TP1 against
1 x TP2 on the same GPUs), and the cluster render with 2 and 4 replicas validates against the schemas, each
scenario routed by the scorer its catalog entry names."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest

from kvbench.plan import PlanError, build_plan

from .conftest import FAKE_HF_TOKEN, REPO, cluster_request, run_playbook
from .manifests import (
    CORE_GROUPS,
    container,
    deployment,
    epp_config,
    find,
    flags,
    load_docs,
    plugin,
    settings,
)
from .test_render import SCHEMAS, strict

SCENARIOS = ("no-offload", "lmcache-disk", "llm-d-inmem", "llm-d-redis")
SCORER = {
    "no-offload": "prefix-cache-scorer",
    "lmcache-disk": "prefix-cache-scorer",
    "llm-d-inmem": "precise-prefix-cache-scorer",
    "llm-d-redis": "precise-prefix-cache-scorer",
}
# replicas x tensor-parallel size, the GPUs of the comparison
SHAPES = ((2, 1), (4, 1))


def shaped_plan(replicas: int, tp: int, target: str = "kubernetes") -> dict:
    request = cluster_request("Qwen3-14B", "llm-d-v0.5.0")
    request["scenarios"] = ",".join(SCENARIOS)
    request["target"] = target
    request["vllm"].update(replicas=replicas, tensor_parallel_size=tp)
    return build_plan(request)


def test_two_tp1_replicas_and_one_tp2_replica_use_the_same_gpus_as_different_runs() -> None:
    wide, tall = shaped_plan(2, 1), shaped_plan(1, 2)
    for plan, replicas, tp in ((wide, 2, 1), (tall, 1, 2)):
        assert plan["vllm"]["replicas"] == replicas
        for s in plan["scenarios"]:
            assert s["replicas"] == replicas and s["capacity"]["tensor_parallel_size"] == tp
            args = s["vllm"]["args"]
            assert args[args.index("--tensor-parallel-size") + 1] == str(tp)
        assert plan["vllm"]["replicas"] * plan["vllm"]["tensor_parallel_size"] == 2
    assert wide["plan_hash"] != tall["plan_hash"] and wide["run_id"] != tall["run_id"]


def test_more_than_one_replica_on_the_nodes_target_fails_naming_kubernetes() -> None:
    with pytest.raises(PlanError, match="replicas=2 needs the kubernetes target"):
        shaped_plan(2, 1, target="nodes")


@pytest.mark.parametrize("bad", [0, -1, "two"])
def test_a_bad_replica_count_is_named(bad) -> None:
    request = cluster_request("Qwen3-14B", "llm-d-v0.5.0")
    request["vllm"]["replicas"] = bad
    with pytest.raises(PlanError, match="replicas must be a whole number"):
        build_plan(request)


@pytest.fixture(scope="module")
def shaped_renders(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], Path]:
    out = {}
    for replicas, tp in SHAPES:
        folder = tmp_path_factory.mktemp(f"replicas-{replicas}x{tp}")
        proc = run_playbook(
            "-i",
            "inventory/cluster.example",
            "playbooks/render.yml",
            "-e",
            "model=Qwen3-14B",
            "-e",
            "target=kubernetes",
            "-e",
            "preset=llm-d-v0.5.0",
            "-e",
            f"scenarios={','.join(SCENARIOS)}",
            "-e",
            f"replicas={replicas}",
            "-e",
            f"tensor_parallel_size={tp}",
            "-e",
            f"render_dir={folder}",
            "-e",
            f"k8s_common_hf_token={FAKE_HF_TOKEN}",
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        out[(replicas, tp)] = folder
    return out


def test_each_shape_renders_its_replicas_with_their_gpus_and_scorer(shaped_renders) -> None:
    for (replicas, tp), root in shaped_renders.items():
        plan = json.loads((root / "plan.json").read_text())
        assert plan["vllm"]["replicas"] == replicas
        for name in SCENARIOS:
            assert settings(root / name)["replicas"] == replicas
            docs = load_docs(root / name / "manifests.yaml")
            dep = deployment(docs, "vllm")
            assert dep["spec"]["replicas"] == replicas
            vllm = container(dep, "vllm")
            assert vllm["resources"]["limits"]["nvidia.com/gpu"] == str(tp)
            assert flags(vllm["args"])["tensor-parallel-size"] == str(tp)
            cfg = epp_config(docs)
            other = ({"prefix-cache-scorer", "precise-prefix-cache-scorer"} - {SCORER[name]}).pop()
            assert plugin(cfg, SCORER[name]) is not None and plugin(cfg, other) is None, name
            # The pool selects every replica's pods.
            pool = find(docs, "InferencePool")
            labels = dep["spec"]["template"]["metadata"]["labels"]
            assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_disk_tier_is_a_volume_of_each_replica(shaped_renders) -> None:
    for root in shaped_renders.values():
        s = settings(root / "lmcache-disk")
        dep = deployment(load_docs(root / "lmcache-disk" / "manifests.yaml"), "vllm")
        pod = dep["spec"]["template"]["spec"]
        mount = next(m for m in container(dep, "vllm")["volumeMounts"] if m["name"] == "kv-disk")
        assert s["disk_tier"]["path"].startswith(mount["mountPath"] + "/")
        volume = next(v for v in pod["volumes"] if v["name"] == "kv-disk")
        size_gi = float(volume["emptyDir"]["sizeLimit"].removesuffix("Gi"))
        assert size_gi * (1 << 30) >= s["disk_tier"]["budget_bytes"]


def test_the_shapes_pass_kubernetes_validate_and_the_crd_schemas(shaped_renders) -> None:
    files = [str(root / name / "manifests.yaml") for root in shaped_renders.values() for name in SCENARIOS]
    core = sum(1 for f in files for d in load_docs(Path(f)) if d["apiVersion"] in CORE_GROUPS)
    proc = subprocess.run(
        [str(REPO / ".venv/bin/kubernetes-validate"), "--strict", "-k", "1.30.0", *files],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert len(re.findall(r"passed for resource", out)) == core
    schemas = {}
    for path in SCHEMAS.glob("*.json"):
        data = json.loads(path.read_text())
        schemas[(data["apiVersion"], data["kind"])] = strict(data["openAPIV3Schema"])
    for f in files:
        for doc in load_docs(Path(f)):
            if doc["apiVersion"] not in CORE_GROUPS:
                jsonschema.validate(doc, schemas[(doc["apiVersion"], doc["kind"])])
