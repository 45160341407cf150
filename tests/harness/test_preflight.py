"""Bad requests fail on the controller before any host is touched, naming the bad value and the valid ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_playbook

# A serving host that cannot be reached: if any play got past the preflight it would fail as unreachable.
UNREACHABLE = """
all:
  children:
    gpu_nodes:
      hosts:
        gpu1: {{ansible_host: 127.0.0.1, ansible_port: 1, ansible_connection: ssh}}
    {extra}
  hosts:
    localhost: {{ansible_connection: local, ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"}}
"""


@pytest.fixture
def inventory(tmp_path: Path):
    def make(with_loadgen: bool = True) -> str:
        extra = "loadgen:\n      hosts:\n        gpu1:" if with_loadgen else ""
        path = tmp_path / "hosts.yml"
        path.write_text(UNREACHABLE.format(extra=extra))
        return str(path)

    return make


def sweep(inventory: str, *extra: str):
    args = ["-i", inventory]
    for item in extra:
        args += ["-e", item]
    return run_playbook("sweep.yml", *args, timeout=300)


def assert_stopped_in_preflight(result, *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for text in expected:
        assert text in output, f"{text!r} not in output:\n{output[-3000:]}"
    assert "Prepare the serving hosts" not in output
    assert "UNREACHABLE" not in output
    assert "Traceback" not in output


def test_unknown_model_names_the_valid_models(inventory):
    result = sweep(inventory(), "model=NoSuchModel")
    assert_stopped_in_preflight(result, "NoSuchModel", "Qwen3-32B-AWQ", "Qwen3-0.6B")


def test_unknown_scenario_names_the_valid_scenarios(inventory):
    result = sweep(inventory(), "model=Qwen3-8B", "scenarios=no-offload,lmcache-bogus")
    assert_stopped_in_preflight(result, "lmcache-bogus", "native-offload", "llm-d-valkey")


@pytest.mark.parametrize("levels", ["1,0,50", "1,-4", "[]", "1,abc"])
def test_bad_concurrency_is_refused(inventory, levels):
    result = sweep(inventory(), "model=Qwen3-8B", f"concurrency={levels}")
    assert_stopped_in_preflight(result, "concurrency")


def test_missing_inventory_group_is_named(inventory):
    result = sweep(inventory(with_loadgen=False), "model=Qwen3-8B")
    assert_stopped_in_preflight(result, "'loadgen'", "gpu_nodes")


def test_unknown_preset_names_the_valid_presets(inventory):
    result = sweep(inventory(), "model=Qwen3-8B", "preset=llm-d-v9")
    assert_stopped_in_preflight(result, "llm-d-v9", "llm-d-v0.4.0", "llm-d-v0.5.0")


def test_sweep_passes_syntax_check():
    result = run_playbook("sweep.yml", "--syntax-check", "-e", "model=Qwen3-32B-AWQ", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
