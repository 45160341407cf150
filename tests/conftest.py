"""Shared helpers: run the real ansible-playbook from the harness venv against this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


def run_with_vars(
    playbook: str | Path, extra_vars: dict, workdir: Path, inventory: str = "localhost,", timeout: int = 1800
) -> subprocess.CompletedProcess:
    """ansible-playbook on this machine (connection local) with extra vars passed as a JSON file, never argv,
    so secrets in them stay out of the process list. JSON results make the output easy to search."""
    workdir.mkdir(parents=True, exist_ok=True)
    vars_file = workdir / f"vars-{Path(playbook).stem}-{time.monotonic_ns()}.json"
    vars_file.write_text(json.dumps({"ansible_python_interpreter": str(BIN / "python"), **extra_vars}))
    env = ansible_env(
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    cmd = [str(BIN / "ansible-playbook"), "-i", inventory, "-c", "local", "-e", f"@{vars_file}"]
    return subprocess.run(
        [*cmd, str(playbook)], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def repo() -> Path:
    return REPO
