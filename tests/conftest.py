"""Shared helpers: run the real ansible-playbook from the harness venv against this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_FILTER_PLUGINS": str(REPO / "plugins" / "filter"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PY_COLORS": "0",
        }
    )
    env.update(extra)
    return env


def run_playbook(
    playbook: str | Path, *args: str, timeout: int = 1800, **env: str
) -> subprocess.CompletedProcess:
    """ansible-playbook PLAYBOOK ARGS from the repo root; output captured as text."""
    cmd = [str(BIN / "ansible-playbook"), str(playbook), *args]
    return subprocess.run(
        cmd, cwd=REPO, env=ansible_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def repo() -> Path:
    return REPO
