"""The disk_probe role through a real ansible-playbook run on this machine: figures for a disk folder
(O_DIRECT) and a tmpfs one (page cache, said so), a failed probe recorded, and the manifest flagging a slow
tier."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kvbench.disk_tier import disk_tiers, flagged_lines
from tests.conftest import run_with_vars
from tests.records.builders import checked, kubernetes_cuda_request, plan_run, record

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "roles" / "playbooks" / "disk_probe.yml"
FIGURES = ("seq_read_mib_s", "seq_write_mib_s", "rand_read_iops", "rand_write_iops")

pytestmark = pytest.mark.roles


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("disk-probe")
    shm = Path("/dev/shm") / f"kvbench-disk-probe-{tmp.name}"
    extra = {
        "disk_probe_paths": [str(tmp / "tier"), str(shm)],
        "disk_probe_script_dir": str(tmp / "libexec"),
        "disk_probe_size_mib": 16,
        "disk_probe_seconds_per_test": 0.5,
        "result_file": str(tmp / "result.json"),
    }
    try:
        result = run_with_vars(PLAYBOOK, extra, tmp, timeout=300)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        results = json.loads((tmp / "result.json").read_text())
        results["paths"] = extra["disk_probe_paths"]
        results["left"] = sorted(p.name for p in (tmp / "tier").iterdir())
        return results
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_a_disk_folder_is_measured_with_o_direct_and_left_clean(probed: dict) -> None:
    disk = probed["auto"][probed["paths"][0]]
    assert disk["status"] == "ok" and disk["path"] == probed["paths"][0]
    assert disk["tool"] in ("fio", "python")
    assert all(disk[f] > 0 for f in FIGURES), disk
    assert disk["o_direct"] is True
    assert disk["device"]  # a block device holds it
    assert disk["expected"]["seq_read_mib_s"] == 1000 and disk["slow_fraction"] == 0.5
    assert probed["left"] == []  # the scratch file is gone


def test_tmpfs_has_no_block_device_and_the_manifest_says_so(probed: dict) -> None:
    shm = probed["auto"][probed["paths"][1]]
    # Recent kernels let tmpfs take O_DIRECT; either way the probe records which it got.
    assert shm["status"] == "ok" and shm["device"] is None and isinstance(shm["o_direct"], bool)
    tier = disk_tiers({"h": {"disk_probe": {probed["paths"][1]: {**shm, "o_direct": False}}}})[0]
    assert tier["notes"] == [
        "measured through the page cache: the filesystem refused O_DIRECT",
        "no block device holds it (tmpfs or overlay): its reads, the disk-hit evidence, go uncounted",
    ]


def test_a_failed_probe_is_recorded_and_flagged(probed: dict) -> None:
    if shutil.which("fio"):
        pytest.skip("fio is installed here: the run that insists on it does not fail")
    failed = probed["fio"][probed["paths"][0]]
    assert failed["status"] == "failed" and "fio is not installed" in failed["reason"]
    tier = disk_tiers({"h": {"disk_probe": {probed["paths"][0]: failed}}})[0]
    assert tier["flagged"] and "probe failed" in tier["reasons"][0]


def test_the_manifest_flags_a_tier_far_below_its_expectation(probed: dict, tmp_path: Path) -> None:
    path = probed["paths"][0]
    measured = probed["auto"][path]
    slow = {
        **measured,
        "expected": {**measured["expected"], "rand_read_iops": measured["rand_read_iops"] * 10},
    }
    hosts = {"gpu-1": {"disk_probe": {path: slow}}, "gpu-2": {"disk_probe": {path: measured}}}
    _, run_dir = plan_run(tmp_path, kubernetes_cuda_request(scenarios=["lmcache-disk"], run_id="probe"))
    checked(record("manifest", run_dir, [], {"status": "running", "hosts": hosts}))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    tiers = {t["host"]: t for t in manifest["disk_tiers"]}
    flagged = tiers["gpu-1"]
    assert flagged["flagged"] and flagged["reasons"][0].startswith("rand_read_iops ")
    assert "below 50% of the expected" in flagged["reasons"][0]
    assert tiers["gpu-2"]["flagged"] is (  # the real figures against the NVMe expectation
        any(measured[f] < 0.5 * measured["expected"][f] for f in FIGURES)
    )
    assert flagged_lines(manifest["disk_tiers"])[0].startswith(f"disk tier `{path}` on gpu-1")
