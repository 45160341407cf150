"""Render-only mode for the kubernetes target: every scenario x model x preset, strict schema validation and
the scenario-critical settings, checked against the catalogs (not against the plan's own output)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import (
    FAKE_HF_TOKEN,
    FAKE_REDIS_PASSWORD,
    FAKE_VALKEY_PASSWORD,
    REPO,
    Render,
    run_playbook,
)
from .manifests import (
    CORE_GROUPS,
    container,
    deployment,
    env_of,
    epp_config,
    find,
    flags,
    load_docs,
    memory_gib,
    plugin,
    settings,
)

CATALOG = yaml.safe_load((REPO / "group_vars/all/scenarios.yml").read_text())["kvbench_scenarios"]
MODELS = yaml.safe_load((REPO / "group_vars/all/models.yml").read_text())["kvbench_models"]
PRESETS = yaml.safe_load((REPO / "group_vars/all/versions.yml").read_text())["kvbench_version_presets"]
WORKLOAD = yaml.safe_load((REPO / "group_vars/all/workload.yml").read_text())
VLLM_MEMORY_BASE_GIB = 64  # roles/k8s_vllm/defaults/main.yml
SCHEMAS = Path(__file__).parent / "schemas"
GIB = 1 << 30
MARKER = "${KVBENCH_STORE_PASSWORD}"  # analyzer/kvbench/plan/resolve.py STORE_PASSWORD_MARKER


def folders(renders: list[Render]) -> list[tuple[Render, str, Path]]:
    """Every rendered scenario; one the configured versions cannot run (unsupported_versions) has none."""
    return [
        (r, name, r.root / name)
        for r in renders
        for name in CATALOG
        if not CATALOG[name].get("unsupported_versions") or settings(r.root / name)["supported"]
    ]


def expected_capacity(model: str) -> dict[str, int]:
    """Equal-capacity sizing from the catalogs: TP=2, CUDA block size 16, the workload's budget."""
    m = MODELS[model]
    per_token = 2 * m["layers"] * m["kv_heads"] * m["head_dim"] * m["kv_dtype_bytes"]
    budget = int(float(WORKLOAD["kv_offload_gib"]) * GIB)
    return {
        "budget": budget,
        "blocks_per_worker": budget // (per_token * 16),
        "gib_per_rank": float(WORKLOAD["kv_offload_gib"]) / 2,
    }


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def test_every_scenario_has_a_folder_with_settings_and_manifests(renders: list[Render]) -> None:
    assert len(renders) == 8
    for render, name, folder in folders(renders):
        s = settings(folder)
        assert s["name"] == name and s["target"] == "kubernetes"
        assert s["supported"], (
            f"{render.model}/{render.preset}/{name} unsupported on cuda: {s['skip_reason']}"
        )
        kinds = {d["kind"] for d in load_docs(folder / "manifests.yaml")}
        assert {"Deployment", "Service", "InferencePool", "HTTPRoute", "DaemonSet", "Job"} <= kinds


def test_core_kinds_pass_kubernetes_validate_strict(renders: list[Render]) -> None:
    files = [str(folder / "manifests.yaml") for _, _, folder in folders(renders)]
    core_docs = sum(1 for f in files for d in load_docs(Path(f)) if d["apiVersion"] in CORE_GROUPS)
    proc = subprocess.run(
        [str(REPO / ".venv/bin/kubernetes-validate"), "--strict", "-k", "1.30.0", *files],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "ERROR" not in out and "failed" not in out.lower(), out[-4000:]
    passed = len(re.findall(r"passed for resource", out))
    assert passed == core_docs, f"{passed} documents passed, {core_docs} core documents rendered"
    # Anything it could not check must be one of the kinds validated below against their CRD schemas.
    unknown = set(re.findall(r"Couldn't find schema for kind (\w+)", out))
    assert unknown <= {"InferencePool", "HTTPRoute", "Gateway", "DestinationRule", "Route"}, unknown


def strict(schema: Any) -> Any:
    """The API server's strict field validation: unknown keys are errors where the schema lists properties."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict]:
    out = {}
    for path in SCHEMAS.glob("*.json"):
        data = json.loads(path.read_text())
        out[(data["apiVersion"], data["kind"])] = strict(data["openAPIV3Schema"])
    return out


def test_custom_resources_match_their_crd_schemas(renders: list[Render], crd_schemas: dict) -> None:
    checked: set[str] = set()
    for render, name, folder in folders(renders):
        for doc in load_docs(folder / "manifests.yaml"):
            if doc["apiVersion"] in CORE_GROUPS:
                continue
            key = (doc["apiVersion"], doc["kind"])
            assert key in crd_schemas, f"no schema for {key} ({render.model}/{render.preset}/{name})"
            jsonschema.validate(doc, crd_schemas[key])
            checked.add(doc["kind"])
    assert checked == {"InferencePool", "HTTPRoute", "Gateway", "DestinationRule"}


def test_schema_check_rejects_an_unknown_field(crd_schemas: dict) -> None:
    pool = {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "p"},
        "spec": {
            "targetPorts": [{"number": 8000}],
            "selector": {"matchLabels": {"a": "b"}},
            "endpointPickerRef": {"name": "e", "port": {"number": 9002}},
            "targetPortNumber": 8000,
        },
    }
    with pytest.raises(jsonschema.ValidationError, match="targetPortNumber"):
        jsonschema.validate(pool, crd_schemas[("inference.networking.k8s.io/v1", "InferencePool")])


def vllm_parts(folder: Path) -> tuple[list[dict], dict, dict[str, str], dict[str, dict]]:
    docs = load_docs(folder / "manifests.yaml")
    vllm = container(deployment(docs, "vllm"), "vllm")
    return docs, vllm, flags(vllm["args"]), env_of(vllm)


def test_native_offload_uses_the_key_of_the_vllm_version(renders: list[Render]) -> None:
    for render in renders:
        _, _, f, _ = vllm_parts(render.root / "native-offload")
        kv = json.loads(f["kv-transfer-config"])
        assert kv["kv_connector"] == "OffloadingConnector"
        extra = kv["kv_connector_extra_config"]
        cap = expected_capacity(render.model)
        if version_tuple(PRESETS[render.preset]["vllm"]) >= (0, 14):
            assert extra == {"cpu_bytes_to_use": cap["budget"]}, extra
        else:
            assert extra["num_cpu_blocks"] == cap["blocks_per_worker"], extra
            assert "cpu_bytes_to_use" not in extra


def lmcache_file(docs: list[dict], vllm: dict, dep: dict) -> dict:
    """Follow LMCACHE_CONFIG_FILE to the volume mounted there and back to the ConfigMap it comes from."""
    path = env_of(vllm)["LMCACHE_CONFIG_FILE"]["value"]
    directory, name = path.rsplit("/", 1)
    mount = next(m for m in vllm["volumeMounts"] if m["mountPath"] == directory)
    pod = dep["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    if "configMap" in volume:
        cm_name = volume["configMap"]["name"]
    else:  # written by the init container from the ConfigMap template, the password marker filled in
        init = next(
            c for c in pod["initContainers"] if any(m["mountPath"] == directory for m in c["volumeMounts"])
        )
        code, src, dst, marker = init["args"]
        assert dst == path and marker == MARKER and "KVBENCH_STORE_PASSWORD" in code
        assert init["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "kvbench-store-auth"
        src_dir, src_name = src.rsplit("/", 1)
        tmpl = next(m for m in init["volumeMounts"] if m["mountPath"] == src_dir)
        assert src_name == name
        cm_name = next(v for v in pod["volumes"] if v["name"] == tmpl["name"])["configMap"]["name"]
    return yaml.safe_load(find(docs, "ConfigMap", cm_name)["data"][name])


def test_lmcache_scenarios_mount_their_config(renders: list[Render]) -> None:
    for render in renders:
        new_lmcache = version_tuple(PRESETS[render.preset]["lmcache"]) >= (0, 3, 9)
        cap = expected_capacity(render.model)
        for name, scheme in (
            ("lmcache-local", None),
            ("lmcache-redis", "redis"),
            ("lmcache-valkey", "valkey"),
        ):
            docs, vllm, f, _ = vllm_parts(render.root / name)
            assert json.loads(f["kv-transfer-config"]) == {
                "kv_connector": "LMCacheConnectorV1",
                "kv_role": "kv_both",
            }
            cfg = lmcache_file(docs, vllm, deployment(docs, "vllm"))
            assert cfg["max_local_cpu_size"] == pytest.approx(cap["gib_per_rank"], rel=1e-3)
            if scheme is None:
                assert cfg["local_cpu"] is True and "remote_url" not in cfg
                continue
            expect = (
                scheme if (scheme == "redis" or new_lmcache) else "redis"
            )  # old LMCache: Valkey as redis://
            assert cfg["remote_url"].startswith(f"{expect}://"), cfg["remote_url"]
            assert cfg["remote_url"].endswith(f"kvbench-{scheme}:6379")
            assert cfg["local_cpu"] is False
            # The password reaches LMCache only through the marker the init container fills in.
            assert MARKER in cfg["remote_url"] or MARKER in json.dumps(cfg.get("extra_config", {}))


def test_precise_scorer_matches_the_pods(renders: list[Render]) -> None:
    for render in renders:
        kv_cache_new = version_tuple(PRESETS[render.preset]["kv_cache"]) >= (0, 5)
        for name, store in (("llm-d-inmem", "inmem"), ("llm-d-redis", "redis"), ("llm-d-valkey", "valkey")):
            docs, _, f, env = vllm_parts(render.root / name)
            cfg = epp_config(docs)
            assert cfg["kind"] == "EndpointPickerConfig"
            params = plugin(cfg, "precise-prefix-cache-scorer")["parameters"]
            indexer = params["indexerConfig"]
            tp = params["tokenProcessorConfig"] if kv_cache_new else indexer["tokenProcessorConfig"]
            assert ("tokenProcessorConfig" in params) is kv_cache_new
            assert ("tokenProcessorConfig" in indexer) is not kv_cache_new
            assert tp["blockSize"] == int(f["block-size"])
            assert tp["hashSeed"] == env["PYTHONHASHSEED"]["value"]
            events = json.loads(f["kv-events-config"])
            served = f["served-model-name"]
            assert served == MODELS[render.model]["hf_id"]
            assert events["topic"] == f"kv@$(POD_IP)@{served}"
            assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            assert f["prefix-caching-hash-algo"] == "sha256_cbor"
            epp_svc = find(docs, "Service", "kvbench-pool-epp")
            host, port = events["endpoint"].removeprefix("tcp://").rsplit(":", 1)
            assert host == epp_svc["metadata"]["name"]
            assert int(port) in [p["port"] for p in epp_svc["spec"]["ports"]]
            assert params["kvEventsConfig"]["zmqEndpoint"] == f"tcp://*:{port}"
            assert events["topic"].startswith(params["kvEventsConfig"]["topicFilter"])
            index = indexer["kvBlockIndexConfig"]
            if store == "inmem":
                assert index["inMemoryConfig"], index
                assert "redisConfig" not in index and "valkeyConfig" not in index
            else:
                section = index[f"{store}Config"]
                assert section["address"] == f"{store}://:$(KVBENCH_STORE_PASSWORD)@kvbench-{store}:6379"
                epp_env = env_of(container(deployment(docs, "epp"), "epp"))
                ref = epp_env["KVBENCH_STORE_PASSWORD"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "kvbench-store-auth", "key": f"{store}-password"}
                # kv-cache < 0.5.0 picks the in-memory default first unless nulled (llm-d-kv-cache PR #227).
                assert ("inMemoryConfig" in index and index["inMemoryConfig"] is None) is not kv_cache_new
            assert ("modelName" in indexer["tokenizersPoolConfig"]) is kv_cache_new
            epp_flags = flags(container(deployment(docs, "epp"), "epp")["args"])
            assert epp_flags["kv-cache-usage-percentage-metric"] == "vllm:kv_cache_usage_perc"


def test_offload_scenarios_route_with_the_approximate_scorer(renders: list[Render]) -> None:
    for render in renders:
        for name in ("no-offload", "native-offload", "lmcache-local", "lmcache-redis", "lmcache-valkey"):
            docs, _, f, _ = vllm_parts(render.root / name)
            cfg = epp_config(docs)
            assert plugin(cfg, "prefix-cache-scorer") is not None
            assert plugin(cfg, "precise-prefix-cache-scorer") is None
            assert "kv-events-config" not in f


def test_vllm_pod_spec(renders: list[Render]) -> None:
    for render, name, folder in folders(renders):
        docs, vllm, f, env = vllm_parts(folder)
        dep = deployment(docs, "vllm")
        pod = dep["spec"]["template"]["spec"]
        limits, requests = vllm["resources"]["limits"], vllm["resources"]["requests"]
        assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == f["tensor-parallel-size"] == "2"
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert any(m["mountPath"] == "/dev/shm" for m in vllm["volumeMounts"])
        cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
        assert (
            cache["persistentVolumeClaim"]["claimName"]
            == find(docs, "PersistentVolumeClaim", "kvbench-model-cache")["metadata"]["name"]
        )
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "kvbench-hf-token", "key": "HF_TOKEN"}
        for probe in ("startupProbe", "readinessProbe"):
            assert vllm[probe]["httpGet"]["path"] == "/health"
        assert pod["terminationGracePeriodSeconds"] >= 120
        assert vllm["command"] == ["vllm", "serve", MODELS[render.model]["hf_id"]]
        # The CPU KV tier is pinned host memory of the pod: the limit must cover it.
        tier_gib = float(WORKLOAD["kv_offload_gib"]) if ("kv-transfer-config" in f) else 0.0
        if settings(folder)["disk_tier"]:  # only the small CPU tier in front of the disk is memory
            tier_gib = settings(folder)["disk_tier"]["front_gib"]
        assert memory_gib(limits["memory"]) >= VLLM_MEMORY_BASE_GIB + tier_gib, (name, limits)
        assert dep["spec"]["replicas"] == 2  # inventory/cluster.example


def test_routing_objects_point_at_each_other(renders: list[Render]) -> None:
    for _, _, folder in folders(renders):
        docs = load_docs(folder / "manifests.yaml")
        pool = find(docs, "InferencePool")
        pod_labels = deployment(docs, "vllm")["spec"]["template"]["metadata"]["labels"]
        assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert (
            pool["spec"]["endpointPickerRef"]["name"]
            == find(docs, "Service", "kvbench-pool-epp")["metadata"]["name"]
        )
        route = find(docs, "HTTPRoute")
        backend = route["spec"]["rules"][0]["backendRefs"][0]
        assert (backend["kind"], backend["name"]) == ("InferencePool", pool["metadata"]["name"])
        assert route["spec"]["parentRefs"][0]["name"] == find(docs, "Gateway")["metadata"]["name"]


def test_guidellm_jobs_avoid_gpu_nodes_and_write_to_the_results_volume(renders: list[Render]) -> None:
    for _, name, folder in folders(renders):
        docs = load_docs(folder / "manifests.yaml")
        jobs = [d for d in docs if d["kind"] == "Job"]
        assert jobs
        for job in jobs:
            pod = job["spec"]["template"]["spec"]
            term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
                "nodeSelectorTerms"
            ][0]
            assert term["matchExpressions"][0] == {
                "key": "nvidia.com/gpu.present",
                "operator": "DoesNotExist",
            }
            claim = next(v for v in pod["volumes"] if v["name"] == "results")["persistentVolumeClaim"][
                "claimName"
            ]
            assert claim == find(docs, "PersistentVolumeClaim", "kvbench-results")["metadata"]["name"]
            out = json.loads(
                container(job, "guidellm")["args"][container(job, "guidellm")["args"].index("--output") + 1]
            )
            run_id = json.loads((folder.parent / "plan.json").read_text())["run_id"]
            assert out["path"].startswith(f"/results/{run_id}/{name}/c")
        reader = find(docs, "Pod", "kvbench-results-reader")
        assert reader["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "kvbench-results"


def test_no_secret_is_written(renders: list[Render]) -> None:
    for render in renders:
        for path in render.root.rglob("*"):
            if path.is_file():
                text = path.read_text()
                for secret in (FAKE_HF_TOKEN, FAKE_REDIS_PASSWORD, FAKE_VALKEY_PASSWORD):
                    assert secret not in text, f"{secret[:12]}... written into {path}"
        docs = load_docs(render.root / "llm-d-redis" / "manifests.yaml")
        assert not [d for d in docs if d["kind"] == "Secret"]


def test_render_refuses_unknown_names_before_rendering(tmp_path: Path) -> None:
    for extra, expect in (
        (["-e", "model=Qwen9-1T"], "Qwen3-8B"),
        (["-e", "model=Qwen3-8B", "-e", "scenarios=no-offload,warp-drive"], "warp-drive"),
    ):
        proc = run_playbook(
            "playbooks/render.yml",
            *extra,
            "-e",
            "target=kubernetes",
            "-e",
            f"render_dir={tmp_path}/r",
            timeout=300,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert expect in out and "Traceback" not in out
        assert not (tmp_path / "r").exists()


def test_issue_command_renders_with_the_default_inventory(tmp_path: Path) -> None:
    """The command of the issue, without -i: the local CPU inventory's preset has no images, so the cluster
    render falls back to the newest llm-d preset (k8s_common_fallback_preset) and says so in the header."""
    proc = run_playbook(
        "playbooks/render.yml",
        "-e",
        "model=Qwen3-8B",
        "-e",
        "target=kubernetes",
        "-e",
        f"render_dir={tmp_path}",
        "-e",
        "scenarios=llm-d-valkey",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    text = (tmp_path / "llm-d-valkey" / "manifests.yaml").read_text()
    assert text.startswith("# kvbench llm-d-valkey / Qwen3-8B / llm-d-v0.5.0:")
    assert "ghcr.io/llm-d/llm-d-inference-scheduler:v0.5.0" in text


def test_nodes_target_renders_node_configs(tmp_path: Path) -> None:
    proc = run_playbook(
        "-i",
        "inventory/cluster.example",
        "playbooks/render.yml",
        "-e",
        "model=Qwen3-14B",
        "-e",
        "target=nodes",
        "-e",
        "preset=llm-d-v0.4.0",
        "-e",
        f"render_dir={tmp_path}",
        "-e",
        "scenarios=native-offload,lmcache-valkey,llm-d-redis",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    s = json.loads((tmp_path / "llm-d-redis" / "settings.json").read_text())
    assert s["target"] == "nodes"
    argv = json.loads((tmp_path / "llm-d-redis" / "vllm.argv.json").read_text())
    events = json.loads(argv[argv.index("--kv-events-config") + 1])
    assert events["endpoint"].startswith("tcp://*:")
    assert "$(POD_IP)" not in events["topic"]
    assert "PYTHONHASHSEED=0" in (tmp_path / "llm-d-redis" / "vllm.env").read_text().splitlines()
    lm = yaml.safe_load((tmp_path / "lmcache-valkey" / "lmcache.yaml").read_text())
    # Nodes install LMCache from pip (lmcache_pip when the image's release has no wheel): >= 0.3.9 has valkey://.
    preset = PRESETS["llm-d-v0.4.0"]
    installed = version_tuple(preset.get("lmcache_pip") or preset["lmcache"])
    assert lm["remote_url"].startswith("valkey://" if installed >= (0, 3, 9) else "redis://"), lm[
        "remote_url"
    ]
    unit = (tmp_path / "native-offload" / "kvbench-vllm.service").read_text()
    assert "OffloadingConnector" in unit and "num_cpu_blocks" in unit
