"""The kubernetes target's sweep end to end against a fake API server (tests/k8s/fake_cluster: a stand-in for
kubernetes.core that keeps objects in a JSON file and answers exec/log/cp with canned data, the copied report
being a real GuideLLM 0.8.1 report with the Job's own seed). It runs the real playbooks (k8s_sweep.yml, then
run.yml with roles/sweep and roles/k8s_scenario) on a real plan, writes the records through `kvbench record`,
and the results tree is then analysed by `kvbench analyze`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import (
    ANSIBLE_PLAYBOOK,
    FAKE_HF_TOKEN,
    FAKE_REDIS_PASSWORD,
    FAKE_VALKEY_PASSWORD,
    REPO,
    cluster_request,
)

FAKE = Path(__file__).parent / "fake_cluster"
REPORT = REPO / "tests" / "analyzer" / "data" / "guidellm-0.8.1-concurrent-1-4-16.json.zst"
PYTHON = REPO / ".venv" / "bin" / "python"
SECRETS = (FAKE_REDIS_PASSWORD, FAKE_VALKEY_PASSWORD, FAKE_HF_TOKEN)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("fake-cluster")
    request = cluster_request("Qwen3-8B", "llm-d-v0.5.0")
    request.update(scenarios=["no-offload", "llm-d-redis"], concurrency=[1, 4], repetitions=1)
    request["workload"]["duration_s"] = 10
    planned = subprocess.run(
        [str(PYTHON), "-m", "kvbench", "plan", "--results-dir", str(base / "results")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    answer = json.loads(planned.stdout)
    kubeconfig = base / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    extra = {
        "kvbench_plan": answer["plan"],
        "kvbench_run_dir": answer["run_dir"],
        "kvbench_recorded": answer["recorded"],
        "k8s_common_kubeconfig": str(kubeconfig),
        "k8s_common_context": "fake-context",
        "k8s_common_hf_token": FAKE_HF_TOKEN,
        "redis_password": FAKE_REDIS_PASSWORD,
        "valkey_password": FAKE_VALKEY_PASSWORD,
    }
    (base / "extra.json").write_text(json.dumps(extra))
    state = base / "cluster.json"
    env = dict(
        os.environ,
        ANSIBLE_NOCOLOR="1",
        # The fake kubernetes.core, and this repository as kvbench.harness (ansible.cfg's collections_path).
        ANSIBLE_COLLECTIONS_PATH=f"{FAKE}:{REPO / 'collections'}",
        KVBENCH_FAKE_CLUSTER=str(state),
        KVBENCH_FAKE_SECRETS=",".join(SECRETS),
        KVBENCH_FAKE_REPORT=str(REPORT),
    )
    proc = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            "inventory/cluster.example",
            "playbooks/k8s_sweep.yml",
            "playbooks/run.yml",
            "-e",
            f"@{base / 'extra.json'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return {
        "plan": answer["plan"],
        "run_dir": Path(answer["run_dir"]),
        "state": json.loads(state.read_text()),
        "kubeconfig": str(kubeconfig),
        "out": proc.stdout,
        "base": base,
    }


def test_every_point_is_recorded_ok_with_the_seed_guidellm_used(swept: dict) -> None:
    run_dir, plan = swept["run_dir"], swept["plan"]
    assert len(plan["points"]) == 4
    for point in plan["points"]:
        folder = run_dir / point["dir"]
        record = json.loads((folder / "point.json").read_text())
        assert record["status"] == "ok", (point["id"], record["reason"])
        assert record["guidellm"]["seed"] == record["guidellm"]["seed_reported"] == point["seed"]
        assert record["guidellm"]["argv"] == point["argv"]
        assert record["guidellm"]["version"] == "0.8.1"
        assert set(record["phases"]) == {"cache_reset", "benchmark", "copy", "collection"}
        assert record["servers"] == ["kvbench-vllm-fake-0", "kvbench-vllm-fake-1"]
        assert record["evidence"]["cache_reset_verified"] is True
        assert record["evidence"]["server_restarted"] is False
        assert record["evidence"]["prefix_cache_queries_delta"] > 0
        for server in record["servers"]:
            for when in ("before", "after"):
                assert (folder / "metrics" / f"{server}-{when}.prom").is_file()
            assert (folder / f"server-{server}.log").is_file()
        assert (folder / "guidellm.json").is_file() and (folder / "guidellm.log").is_file()
        index = point["scenario"] == "llm-d-redis"
        assert (record["evidence"]["index_keys_before"] is not None) is index
        assert (record["evidence"]["index_keys_after"] is not None) is index


def test_scenarios_and_manifest_are_recorded(swept: dict) -> None:
    run_dir = swept["run_dir"]
    for name in ("no-offload", "llm-d-redis"):
        record = json.loads((run_dir / name / "scenario.json").read_text())
        assert record["status"] == "ran" and record["server_starts"] == 2, record
        notes = record["notes"]
        assert notes["treatment"]["valid"] is True
        assert not [k for k in notes if k.endswith("_warning")], notes
        assert (run_dir / name / "treatment" / "segment-01.json").is_file() or (
            run_dir / name / "treatment" / "segment-02.json"
        ).is_file()
        assert sorted(p.name for p in (run_dir / name / "server").iterdir()) == [
            "kvbench-vllm-fake-0.log",
            "kvbench-vllm-fake-1.log",
        ]
        assert {p.name for p in (run_dir / name / "pcp").iterdir()} == {"gpu0", "gpu1"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["versions"]["guidellm"] == "0.8.1"
    assert set(manifest["hosts"]) == {"gpu0", "gpu1"}


def test_no_secret_reaches_the_results_and_files_are_not_writable_by_others(swept: dict) -> None:
    for path in swept["run_dir"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{secret[:10]}... in {path}"
            assert path.stat().st_mode & 0o022 == 0, path
    # The fake logs did carry them: the redaction is what removed them.
    log = next(swept["run_dir"].rglob("server/*.log")).read_text()
    assert "<redacted>" in log


def test_every_api_call_used_the_kubeconfig_and_context_of_module_defaults(swept: dict) -> None:
    calls = swept["state"]["calls"]
    assert len(calls) > 50
    assert {c["kubeconfig"] for c in calls} == {swept["kubeconfig"]}
    assert {c["context"] for c in calls} == {"fake-context"}


def test_the_cluster_is_left_clean(swept: dict) -> None:
    left = [k for k in swept["state"]["objects"] if not k.startswith(("Secret/", "PersistentVolumeClaim/"))]
    assert left == [] or all(k.startswith("Namespace/") for k in left), left


def test_checksums_cover_the_evidence(swept: dict) -> None:
    run_dir = swept["run_dir"]
    sums = {}
    for line in (run_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    for point in swept["plan"]["points"]:
        for name in ("guidellm.json", "guidellm.log", "point.json"):
            rel = f"{point['dir']}/{name}"
            assert sums[rel] == hashlib.sha256((run_dir / rel).read_bytes()).hexdigest(), rel


def test_the_results_tree_analyses_cleanly(swept: dict) -> None:
    out = swept["base"] / "analysis"
    proc = subprocess.run(
        [str(PYTHON), "-m", "kvbench", "analyze", str(swept["run_dir"]), "-o", str(out), "--no-figures"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "complete_metrics.csv").read_text()
    assert "no-offload" in table and "llm-d-redis" in table
