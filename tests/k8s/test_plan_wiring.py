"""The kubernetes target renders from the one plan: the Jobs run exactly the plan's points, the scenarios
are the plan's, the EPP binds its own KV-event socket only, secrets are only referenced, fetched logs are
redacted, and the roles keep their contracts (kubeconfig through module_defaults, no private fact shared
across files)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import (
    FAKE_HF_TOKEN,
    FAKE_REDIS_PASSWORD,
    FAKE_VALKEY_PASSWORD,
    GATEWAY_URL,
    REPO,
    Render,
    expected_plan,
    run_playbook,
)
from .manifests import container, deployment, env_of, epp_config, load_docs, plugin

ROLES = sorted((REPO / "roles").glob("k8s_*"))
K8S_MODULE = re.compile(r"^\s*(?:- )?kubernetes\.core\.\w+:\s*$", re.M)
SECRET_ENV = re.compile(r"PASSWORD|TOKEN|AUTH", re.I)
MODULE = REPO / "plugins" / "modules" / "kvbench_files.py"


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", str(text))[:3])


def test_jobs_run_exactly_the_points_of_the_plan(renders: list[Render]) -> None:
    """The plan computed here from the catalogs (build_plan): one Job per planned point, args == argv."""
    for render in renders:
        plan = expected_plan(render.model, render.preset)
        written = json.loads((render.root / "plan.json").read_text())
        assert written["plan_hash"] == plan["plan_hash"] and written["run_id"] == plan["run_id"], render
        duration = plan["workload"]["duration_s"]
        for scenario in [s for s in plan["scenarios"] if s["supported"]]:  # skipped: no manifests
            points = [p for p in plan["points"] if p["scenario"] == scenario["name"]]
            docs = load_docs(render.root / scenario["name"] / "manifests.yaml")
            jobs = {j["metadata"]["name"]: j for j in docs if j["kind"] == "Job"}
            assert sorted(jobs) == sorted(f"kvbench-guidellm-{p['slug']}" for p in points)
            for point in points:
                job = jobs[f"kvbench-guidellm-{point['slug']}"]
                guidellm = container(job, "guidellm")
                assert guidellm["args"] == point["argv"], (render, point["id"])
                assert guidellm["args"][0] == "guidellm"
                # The wrapper only makes the output folder, then execs the argv unchanged.
                assert guidellm["command"][:2] == ["/bin/sh", "-c"]
                assert guidellm["command"][2].endswith('exec "$@"')
                env = env_of(guidellm)
                assert env["KVBENCH_RESULTS"]["value"] == point["output_dir"]
                assert point["output_dir"] == f"/results/{plan['run_id']}/{point['dir']}"
                assert env["PATH"]["value"].startswith("/opt/app-root/bin:")
                assert job["metadata"]["annotations"]["kvbench.io/point-id"] == point["id"]
                assert job["metadata"]["annotations"]["kvbench.io/seed"] == str(point["seed"])
                assert job["metadata"]["labels"]["kvbench.io/point"] == point["slug"]
                assert job["spec"]["activeDeadlineSeconds"] == duration + 900
                text = " ".join(point["argv"])
                assert GATEWAY_URL in text and f"{point['output_dir']}/guidellm.json" in text
                assert str(point["seed"]) in text


def test_settings_are_the_plans_scenarios(renders: list[Render]) -> None:
    for render in renders:
        plan = expected_plan(render.model, render.preset)
        for scenario in plan["scenarios"]:
            written = json.loads((render.root / scenario["name"] / "settings.json").read_text())
            assert written == scenario, (render, scenario["name"])
            if scenario["lmcache"] is None:
                continue
            # The LMCache file of the pod is the plan's dictionary (the password as the marker).
            docs = load_docs(render.root / scenario["name"] / "manifests.yaml")
            cm = next(
                d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kvbench-lmcache"
            )
            assert yaml.safe_load(next(iter(cm["data"].values()))) == scenario["lmcache"]


def test_vllm_runs_the_plans_argv(renders: list[Render]) -> None:
    for render in renders:
        plan = expected_plan(render.model, render.preset)
        for scenario in [s for s in plan["scenarios"] if s["supported"]]:  # skipped: no manifests
            docs = load_docs(render.root / scenario["name"] / "manifests.yaml")
            vllm = container(deployment(docs, "vllm"), "vllm")
            assert vllm["args"] == scenario["vllm"]["args"]
            env = env_of(vllm)
            for key, value in scenario["vllm"]["env"].items():
                assert env[key]["value"] == value


def test_epp_binds_its_socket_and_dials_no_pod(renders: list[Render]) -> None:
    """kv-cache >= 0.5.0 defaults discoverPods to true (llm-d-kv-cache v0.5.0 pkg/kvevents/pool.go,
    DefaultConfig): set false there; 0.4.0 has no such key (pkg/kvcache/kvevents/pool.go): left out."""
    for render in renders:
        plan = expected_plan(render.model, render.preset)
        new = version_tuple(plan["versions"]["kv_cache"]) >= (0, 5)
        for name in ("llm-d-inmem", "llm-d-redis", "llm-d-valkey"):
            cfg = epp_config(load_docs(render.root / name / "manifests.yaml"))
            events = plugin(cfg, "precise-prefix-cache-scorer")["parameters"]["kvEventsConfig"]
            assert events["zmqEndpoint"] == "tcp://*:5557"
            if new:
                assert events["discoverPods"] is False, (render, name)
            else:
                assert "discoverPods" not in events, (render, name)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec)
    return list(pod.get("initContainers", [])) + list(pod.get("containers", []))


def test_secrets_reach_pods_only_through_secret_key_refs(renders: list[Render]) -> None:
    for render in renders:
        for path in render.root.rglob("*"):
            if path.is_file():
                text = path.read_text()
                for secret in (FAKE_HF_TOKEN, FAKE_REDIS_PASSWORD, FAKE_VALKEY_PASSWORD):
                    assert secret not in text, f"{secret[:12]}... written into {path}"
        # A scenario the configured versions cannot run (native-offload-disk) has settings, no manifests.
        for folder in (p for p in render.root.iterdir() if (p / "manifests.yaml").is_file()):
            docs = load_docs(folder / "manifests.yaml")
            assert not [d for d in docs if d["kind"] == "Secret"]
            for doc in docs:
                for cont in _containers(doc):
                    for env in cont.get("env", []):
                        if SECRET_ENV.search(env["name"]):
                            assert "value" not in env, (folder, cont["name"], env["name"])
                            assert set(env["valueFrom"]) == {"secretKeyRef"}, (folder, env)
                            assert env["valueFrom"]["secretKeyRef"]["name"] in (
                                "kvbench-store-auth",
                                "kvbench-hf-token",
                            )
                    # A password on a command line is only ever the Kubernetes reference to that env var.
                    args = cont.get("args", [])
                    if "--requirepass" in args:
                        assert args[args.index("--requirepass") + 1] == "$(KVBENCH_STORE_PASSWORD)"


def test_entry_points_of_the_sweep_contract_exist() -> None:
    tasks = REPO / "roles" / "k8s_scenario" / "tasks"
    for entry in ("scenario_start", "point", "scenario_stop", "stop_all", "describe", "preflight", "wiring"):
        assert (tasks / f"{entry}.yml").is_file(), entry
    specs = yaml.safe_load((REPO / "roles/k8s_scenario/meta/argument_specs.yml").read_text())[
        "argument_specs"
    ]
    assert {"scenario_start", "point", "scenario_stop", "stop_all", "describe"} <= set(specs)
    assert specs["point"]["options"]["sweep_point"]["required"] is True
    point = (tasks / "_point.yml").read_text()
    # point never fails: everything is inside one block with a rescue, and the outcome is set in `always`.
    body = yaml.safe_load(point)
    measure = next(t for t in body if t.get("name") == "Measure the point")
    assert measure["rescue"] and measure["always"]
    assert any("k8s_scenario_point_outcome" in json.dumps(t) for t in measure["always"])


def _task_files() -> list[Path]:
    return [p for role in ROLES for p in sorted((role / "tasks").glob("*.yml"))]


def test_kubeconfig_and_context_are_set_once_through_module_defaults() -> None:
    wrapper = REPO / "roles" / "k8s_scenario" / "tasks" / "_cluster.yml"
    block = yaml.safe_load(wrapper.read_text())[0]
    defaults = block["module_defaults"]["group/kubernetes.core.k8s"]
    assert set(defaults) == {"kubeconfig", "context"}
    assert "k8s_common_kubeconfig" in defaults["kubeconfig"] and "k8s_common_context" in defaults["context"]
    for path in _task_files():
        if path == wrapper:
            continue
        for task_line in re.findall(r"^\s+(kubeconfig|context):", path.read_text(), re.M):
            pytest.fail(f"{path.relative_to(REPO)} sets {task_line}: only _cluster.yml's module_defaults may")
    # Every entry point that talks to the cluster runs its tasks through the wrapper.
    tasks = REPO / "roles" / "k8s_scenario" / "tasks"
    for entry in ("preflight", "scenario_start", "point", "scenario_stop", "stop_all"):
        include = yaml.safe_load((tasks / f"{entry}.yml").read_text())[0]
        assert include["ansible.builtin.include_tasks"] == "_cluster.yml"
        assert include["vars"]["__k8s_scenario_body"] == f"_{entry}.yml"
    # And no other file of k8s_scenario is an entry point that calls the API server directly.
    public = {p.stem for p in tasks.glob("*.yml") if not p.name.startswith("_")}
    for name in public - {"preflight", "scenario_start", "point", "scenario_stop", "stop_all"}:
        assert not K8S_MODULE.search((tasks / f"{name}.yml").read_text()), name


def test_no_private_fact_is_shared_across_files() -> None:
    """A `__` fact (set_fact or register) is read only in the file that sets it."""
    facts: dict[str, Path] = {}
    for path in _task_files():
        for task in _walk(yaml.safe_load(path.read_text()) or []):
            names = list((task.get("ansible.builtin.set_fact") or {}).keys())
            if isinstance(task.get("register"), str):
                names.append(task["register"])
            for name in names:
                if name.startswith("__"):
                    assert facts.setdefault(name, path) == path, f"{name} set in {facts[name]} and {path}"
    texts = {p: p.read_text() for role in ROLES for p in role.rglob("*") if p.suffix in (".yml", ".j2")}
    for name, home in facts.items():
        for path, text in texts.items():
            if path == home or re.search(rf"\b{re.escape(name)}\b", text) is None:
                continue
            # A template is part of the task file that renders it (documented at its top).
            assert path.suffix == ".j2", (
                f"{name} (set in {home.relative_to(REPO)}) is read in {path.relative_to(REPO)}"
            )


def _walk(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for task in tasks:
        out.append(task)
        for key in ("block", "rescue", "always"):
            out.extend(_walk(task.get(key) or []))
    return out


def test_durations_in_seconds_end_in_s() -> None:
    for role in ROLES:
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
        for key in defaults:
            if re.search(r"(timeout|margin|grace|period|deadline|delay)", key):
                assert key.endswith("_s"), f"{role.name}: {key}"


def test_every_fetched_file_is_written_through_the_redacting_module() -> None:
    """Logs, diagnostics, reports and metrics are written by kvbench_files with redact, nothing else."""
    writes = 0
    for path in _task_files():
        if path.name in ("render.yml", "render_nodes.yml"):
            continue  # rendered files hold no secret (tested above); redacting them would hide a leak
        for task in _walk(yaml.safe_load(path.read_text()) or []):
            assert "ansible.builtin.copy" not in task and "ansible.builtin.template" not in task, (
                path,
                task.get("name"),
            )
            files = task.get("kvbench.harness.kvbench_files")
            if files is not None:
                assert files.get("redact") == "{{ k8s_scenario_redact_values }}", (path, task["name"])
                writes += 1
    assert writes > 0, "no task calls kvbench.harness.kvbench_files"
    defaults = (REPO / "roles/k8s_scenario/defaults/main.yml").read_text()
    for value in ("redis_password", "valkey_password", "k8s_common_hf_token"):
        assert value in defaults


def _run_module(tmp_path: Path, args: dict[str, Any]) -> dict[str, Any]:
    argfile = tmp_path / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(argfile)], capture_output=True, text=True, check=False, timeout=120
    )
    return json.loads(proc.stdout)


def test_the_module_redacts_before_writing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "s").mkdir(parents=True)
    log = (
        f"LMCache config: remote_url=redis://:{FAKE_REDIS_PASSWORD}@kvbench-redis:6379\n"
        f'{{"address": "valkey://:{FAKE_VALKEY_PASSWORD}@kvbench-valkey:6379"}}\n'
        f"HF_TOKEN={FAKE_HF_TOKEN}\n"
    )
    staged = run / "s" / ".report.part"
    staged.write_text(f"report {FAKE_VALKEY_PASSWORD}")
    staged.chmod(0o600)
    result = _run_module(
        tmp_path,
        {
            "files": {str(run / "s" / "server.log"): log},
            "moves": {str(staged): str(run / "s" / "guidellm.json")},
            "redact": [FAKE_REDIS_PASSWORD, FAKE_VALKEY_PASSWORD, FAKE_HF_TOKEN, ""],
            "sums_dir": str(run),
        },
    )
    assert not result.get("failed"), result
    # The module's own output never echoes a secret (no_log on redact).
    assert FAKE_REDIS_PASSWORD not in json.dumps(result)
    for name in ("server.log", "guidellm.json"):
        path = run / "s" / name
        text = path.read_text()
        assert "<redacted>" in text
        for secret in (FAKE_REDIS_PASSWORD, FAKE_VALKEY_PASSWORD, FAKE_HF_TOKEN):
            assert secret not in text
        assert path.stat().st_mode & 0o777 == 0o644
    assert not staged.exists()
    sums = (run / "SHA256SUMS").read_text()
    assert "s/server.log" in sums and "s/guidellm.json" in sums


def test_the_module_refuses_relative_paths(tmp_path: Path) -> None:
    result = _run_module(tmp_path, {"files": {"relative.log": "x"}, "redact": ["x"]})
    assert result.get("failed") and "absolute" in result["msg"]


def test_entry_point_computations_on_canned_api_answers(tmp_path: Path) -> None:
    """What scenario_start/scenario_stop/describe compute from API answers, on canned answers (no cluster)."""
    plan = expected_plan("Qwen3-8B", "llm-d-v0.5.0")
    (tmp_path / "plan.json").write_text(json.dumps({"kvbench_plan": plan}))
    out = tmp_path / "out.json"
    proc = run_playbook(
        "-i",
        "inventory/cluster.example",
        "tests/k8s/playbooks/offline_entry_points.yml",
        "-e",
        f"@{tmp_path / 'plan.json'}",
        "-e",
        f"out_file={out}",
        "-e",
        "model=Qwen3-8B",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    got = json.loads(out.read_text())
    # The segment's scenario only, the teardown in reverse apply order without PVCs.
    assert {d["metadata"]["labels"].get("kvbench.io/scenario") for d in got["objects"]["vllm"]} <= {
        "llm-d-redis",
        None,
    }
    assert got["teardown"][0] == "Pod" and got["teardown"][-1] == "Deployment"
    assert "PersistentVolumeClaim" not in got["teardown"]
    assert got["pcp_targets"] == [
        {"name": "epp0", "node": "gpu1", "url": "http://10.0.0.6:9090/metrics"},
        {"name": "vllm0", "node": "gpu1", "url": "http://10.0.0.5:8000/metrics"},
    ]
    gpu1 = got["hosts"]["gpu1"]
    assert gpu1["memory_gib"] == 1008.0 and len(gpu1["gpus"]) == 2
    assert gpu1["gpus"][0] == {
        "name": "NVIDIA-H200",
        "memory_mib": None,
        "driver": "570.1",
        "cuda": None,
        "pcie_link": None,
    }
    assert [d["file"] for d in got["diag"]] == [
        "kvbench-vllm-abc-1-vllm.log",
        "kvbench-vllm-abc-1-vllm.previous.log",
    ]
    assert "kvbench-vllm-abc-1/vllm: args differ from the rendered ones" in got["spec_problems"]
    assert got["treatment"]["valid"] is True and got["treatment"]["checks"] == {"redis_dbsize_grew": True}
    assert got["run_facts"]["versions"]["kv_cache"] == "0.5.0"
    assert got["wiring"]["guidellm"] == {
        "executable": "guidellm",
        "output_root": "/results/{run_id}",
        "target_url": GATEWAY_URL,
        "tokenizer": "Qwen/Qwen3-8B",
    }
    assert got["wiring"]["wiring"]["epp_service"] == "kvbench-pool-epp"
    point = next(p for p in plan["points"] if p["scenario"] == "llm-d-redis")
    assert set(got["points"]) == {p["id"] for p in plan["points"] if p["scenario"] == "llm-d-redis"}
    assert got["points"][point["id"]] == {
        "job": f"kvbench-guidellm-{point['slug']}",
        "output_dir": point["output_dir"],
    }
