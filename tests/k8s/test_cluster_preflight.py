"""Without a cluster, the kubernetes target stops at its preflight with one clear message (no traceback)."""

from __future__ import annotations

from pathlib import Path

from .conftest import REPO, run_playbook

NO_CLUSTER = "No reachable Kubernetes cluster"


def _env_args(tmp_path: Path) -> list[str]:
    # A kubeconfig path that does not exist: the state of this machine (no API server can run here).
    return [
        "-e",
        f"k8s_common_kubeconfig={tmp_path}/no-such-kubeconfig",
        "-e",
        f"results_dir={tmp_path}/results",
    ]


def test_k8s_scenario_playbook_fails_cleanly_without_a_cluster(tmp_path: Path) -> None:
    proc = run_playbook(
        "-i",
        "inventory/cluster.example",
        "playbooks/k8s_scenario.yml",
        "-e",
        "model=Qwen3-8B",
        "--check",
        *_env_args(tmp_path),
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert NO_CLUSTER in out and "no-such-kubeconfig" in out
    assert "Traceback" not in out


def test_sweep_check_fails_cleanly_without_a_cluster(tmp_path: Path) -> None:
    """sweep.yml plans (preflight.yml, in --check too), then playbooks/k8s_sweep.yml checks the cluster."""
    assert "preflight" in (REPO / "playbooks" / "k8s_sweep.yml").read_text()
    proc = run_playbook(
        "sweep.yml",
        "-e",
        "model=Qwen3-8B",
        "-e",
        "target=kubernetes",
        "--check",
        *_env_args(tmp_path),
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert NO_CLUSTER in out
    assert "Traceback" not in out
