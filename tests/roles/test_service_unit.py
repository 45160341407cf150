"""service_unit: one process, started, found, stopped with its children, without leaking secrets."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_playbook

pytestmark = pytest.mark.roles

PLAYBOOK = "tests/roles/playbooks/service_unit.yml"
SECRET = "kvbench-unit-secret-4711"


def apply(svc_dir: Path, state: str) -> subprocess.CompletedProcess:
    result = run_playbook(
        PLAYBOOK,
        "-v",
        "-e",
        f"svc_dir={svc_dir}",
        "-e",
        f"svc_state={state}",
        "-e",
        f"secret={SECRET}",
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    return result


def changed(result: subprocess.CompletedProcess) -> int:
    return int(re.search(r"changed=(\d+)", result.stdout).group(1))


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def svc_dir(tmp_path):
    yield tmp_path
    pidfile = tmp_path / "kvbench-test-sleeper.pid"
    if pidfile.exists() and group_alive(int(pidfile.read_text())):
        os.killpg(int(pidfile.read_text()), 9)


def test_start_is_idempotent_and_stop_ends_the_process_group(svc_dir):
    first = apply(svc_dir, "started")
    assert "running=True" in first.stdout
    pgid = int((svc_dir / "kvbench-test-sleeper.pid").read_text())
    assert group_alive(pgid)

    second = apply(svc_dir, "started")
    assert changed(second) == 0
    assert int((svc_dir / "kvbench-test-sleeper.pid").read_text()) == pgid

    stopped = apply(svc_dir, "stopped")
    assert "running=False" in stopped.stdout
    assert not group_alive(pgid)
    assert changed(apply(svc_dir, "stopped")) == 0


def test_environment_reaches_the_process_but_stays_in_a_private_file(svc_dir):
    apply(svc_dir, "started")
    env_file = svc_dir / "kvbench-test-sleeper.env"
    assert env_file.stat().st_mode & 0o077 == 0
    assert SECRET in env_file.read_text()
    # The process saw the environment (it logs only the secret's length).
    assert f"token={len(SECRET)}" in (svc_dir / "kvbench-test-sleeper.log").read_text()
    assert SECRET not in (svc_dir / "kvbench-test-sleeper.sh").read_text()


def test_a_changed_definition_restarts_the_process(svc_dir):
    apply(svc_dir, "started")
    before = int((svc_dir / "kvbench-test-sleeper.pid").read_text())
    result = run_playbook(
        PLAYBOOK,
        "-e",
        f"svc_dir={svc_dir}",
        "-e",
        "svc_state=started",
        "-e",
        "secret=another-value",
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    after = int((svc_dir / "kvbench-test-sleeper.pid").read_text())
    assert after != before and not group_alive(before) and group_alive(after)
