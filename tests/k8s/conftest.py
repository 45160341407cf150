"""Render every scenario x model x preset once per session with the real render.yml (no cluster needed)."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
MODELS = ("Qwen3-0.6B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B-AWQ")
PRESETS = ("llm-d-v0.4.0", "llm-d-v0.5.0")
# Recognisable fakes: no rendered file may contain them (secrets are only referenced, never written).
FAKE_HF_TOKEN = "hf_kvbenchFAKEtoken0123456789abcdef"
FAKE_REDIS_PASSWORD = "kvbenchFAKEredisPassword42"
FAKE_VALKEY_PASSWORD = "kvbenchFAKEvalkeyPassword42"


@dataclass(frozen=True)
class Render:
    model: str
    preset: str
    root: Path


def run_playbook(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the repository root (ansible.cfg there) and capture its output."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _render(model: str, preset: str, out: Path) -> Render:
    proc = run_playbook(
        "-i",
        "inventory/cluster.example",
        "playbooks/render.yml",
        "-e",
        f"model={model}",
        "-e",
        "target=kubernetes",
        "-e",
        f"preset={preset}",
        "-e",
        f"render_dir={out}",
        "-e",
        f"k8s_common_hf_token={FAKE_HF_TOKEN}",
        "-e",
        f"redis_password={FAKE_REDIS_PASSWORD}",
        "-e",
        f"valkey_password={FAKE_VALKEY_PASSWORD}",
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"render.yml failed for {model}/{preset}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        )
    return Render(model, preset, out)


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> list[Render]:
    """All models x presets, two ansible-playbook runs at a time."""
    base = tmp_path_factory.mktemp("k8s-render")
    combos = [(m, p, base / f"{m}--{p}") for m in MODELS for p in PRESETS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda c: _render(*c), combos))
