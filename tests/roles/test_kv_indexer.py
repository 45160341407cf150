"""Role kv_indexer against a real vLLM CPU server publishing KV events over ZMQ.

One vLLM start. Indexers with an in-memory store and, when redis-server is installed, a Redis store with a
password (a throwaway redis-server on a free port). Asserts the index fills from BlockStored events and
empties on AllBlocksCleared (vLLM's prefix-cache reset), and that the password never shows up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_vllm import (  # the shared helpers and session fixtures of the serving roles
    VLLM_PACKAGE,
    ansible_playbook,
    changed_count,
    completion,
    free_port,
    ok,
)

# Real vLLM server starts: slow, so in the e2e group (CI runs it after `make test`).
pytestmark = [pytest.mark.roles, pytest.mark.e2e]

PASSWORD = "idx-pw-0d2c9a"


def wait_status(path: Path, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the indexer's status file until predicate(status) holds; fail with the last status."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            status = {}
        if status and predicate(status):
            return status
        time.sleep(0.5)
    raise AssertionError(f"{path}: condition not met within {timeout} s; last status {status}")


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[str | None]:
    """A throwaway password-protected redis-server, or None when the binary is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    pidfile = data / "redis.pid"
    conf = data / "redis.conf"  # the password goes in a file, not on a command line
    conf.write_text(
        f"bind 127.0.0.1\nport {port}\ndaemonize yes\npidfile {pidfile}\ndir {data}\n"
        f'save ""\nappendonly no\nrequirepass {PASSWORD}\n'
    )
    conf.chmod(0o600)
    subprocess.run([binary, str(conf)], check=True, capture_output=True)
    deadline = time.monotonic() + 20
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        if pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().strip()], check=False)


def redis_dbsize(address: str) -> int:
    port = address.rsplit(":", 1)[1]
    out = subprocess.run(
        ["redis-cli", "-p", port, "DBSIZE"],
        env={**os.environ, "REDISCLI_AUTH": PASSWORD},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def test_indexer_tracks_kv_events(
    vllm_venv: Path, tiny_model: Path, redis_store: str | None, tmp_path: Path
) -> None:
    pid = os.getpid()
    port, ev_port, replay_port = free_port(), free_port(), free_port()
    services = str(tmp_path / "services")
    libexec = str(tmp_path / "libexec")
    kv_events = {
        "enable_kv_cache_events": True,
        "publisher": "zmq",
        "endpoint": f"tcp://*:{ev_port}",
        "replay_endpoint": f"tcp://*:{replay_port}",
        "topic": "kv@127.0.0.1@tiny",
    }
    vllm = {
        "vllm_install_method": "none",
        "vllm_package": VLLM_PACKAGE,
        "vllm_venv": str(vllm_venv),
        "vllm_model_path": str(tiny_model),
        "vllm_served_model_name": "tiny",
        "vllm_host": "127.0.0.1",
        "vllm_port": port,
        "vllm_service_name": f"kvbench-vllm-idx-{pid}",
        "vllm_work_dir": str(tmp_path / "vllm"),
        "vllm_args": [
            "--max-num-seqs",
            "8",
            "--block-size",
            "128",
            "--enforce-eager",
            "--kv-events-config",
            json.dumps(kv_events, separators=(",", ":")),
            "--prefix-caching-hash-algo",
            "sha256_cbor",
        ],
        "vllm_env": {"VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1"},
        "vllm_ready_timeout_s": 300,
        "vllm_reset_verify": False,
        "service_unit_dir": services,
        "result_file": str(tmp_path / "vllm-facts.json"),
    }
    common = {
        "kv_indexer_python": str(vllm_venv / "bin" / "python"),
        "kv_indexer_script_dir": libexec,
        "kv_indexer_endpoint": f"tcp://127.0.0.1:{ev_port}",
        "kv_indexer_replay_endpoint": f"tcp://127.0.0.1:{replay_port}",
        "service_unit_dir": services,
    }
    indexers: dict[str, dict[str, Any]] = {
        "inmem": {
            **common,
            "kv_indexer_store": "inmem",
            "kv_indexer_service_name": f"kvbench-kv-indexer-mem-{pid}",
            "kv_indexer_work_dir": str(tmp_path / "idx-mem"),
        },
    }
    if redis_store is not None:
        indexers["redis"] = {
            **common,
            "kv_indexer_store": "redis",
            "kv_indexer_store_address": redis_store,
            "kv_indexer_password": PASSWORD,
            "kv_indexer_service_name": f"kvbench-kv-indexer-redis-{pid}",
            "kv_indexer_work_dir": str(tmp_path / "idx-redis"),
        }
    outputs: list[str] = []

    def indexer(kind: str, entries: list[str]) -> dict[str, Any]:
        result_file = tmp_path / f"idx-{kind}.json"
        extra = {**indexers[kind], "entries": entries, "result_file": str(result_file)}
        out = ok(ansible_playbook("kv_indexer_entry.yml", extra, tmp_path))
        outputs.append(out)
        return {"stdout": out, **json.loads(result_file.read_text())}

    def status_file(kind: str) -> Path:
        return Path(indexers[kind]["kv_indexer_work_dir"]) / "status.json"

    try:
        # Install step is idempotent (script in place, nothing else).
        indexer("inmem", ["main"])
        assert changed_count(indexer("inmem", ["main"])["stdout"]) == 0
        for kind in indexers:
            indexer(kind, ["start"])
        outputs.append(
            ok(ansible_playbook("vllm_entry.yml", {**vllm, "entries": ["start", "wait_ready"]}, tmp_path))
        )

        for k in range(3):  # three distinct prompts of three full 128-token blocks each
            completion(port, "tiny", [200 + 7 * k + (i % 250) for i in range(400)])
        for kind in indexers:
            status = wait_status(status_file(kind), lambda s: s["index_keys"] >= 9 and s["block_stored"] >= 3)
            assert status["decode_errors"] == 0 and status["store_errors"] == 0, status
            assert status["topics"] == ["kv@127.0.0.1@tiny"]
        facts = indexer("inmem", ["stats"])["kv_indexer_stats"]
        assert facts["events"] > 0 and facts["index_keys"] >= 9
        if redis_store is not None:
            assert redis_dbsize(redis_store) >= 18  # request keys + engine:<hash> keys, llm-d's layout

        # vLLM's prefix-cache reset publishes AllBlocksCleared: the index must empty.
        ok(ansible_playbook("vllm_entry.yml", {**vllm, "entries": ["reset_prefix_cache"]}, tmp_path))
        completion(port, "tiny", "flush the event queue", max_tokens=1)
        for kind in indexers:
            wait_status(status_file(kind), lambda s: s["all_blocks_cleared"] >= 1 and s["index_keys"] == 0)
    finally:
        stop_out = ok(ansible_playbook("vllm_entry.yml", {**vllm, "entries": ["stop"]}, tmp_path))
        for kind in indexers:
            indexer(kind, ["stop"])
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True).stdout
    survivors = [line for line in ps.splitlines() if "kv_event_indexer.py" in line and str(tmp_path) in line]
    assert not survivors, f"indexers survived their stop: {survivors}"
    assert PASSWORD not in ps
    for kind, cfg in indexers.items():
        log = (Path(cfg["kv_indexer_work_dir"]) / "kv-indexer.log").read_text()
        assert PASSWORD not in log, kind
    assert all(PASSWORD not in out for out in [*outputs, stop_out])
