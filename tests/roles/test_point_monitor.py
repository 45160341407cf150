"""The point monitor (roles/guidellm/files/point_monitor.py): the /metrics series and the liveness watchdog.

The parser and the watchdog's decisions are pure and tested here on their own. The watchdog itself is tested
against a real vLLM CPU server (the session fixtures of tests/roles/conftest.py) whose engine process is
stopped with SIGSTOP in the middle of a GuideLLM point run by the guidellm role: the API server goes on
answering /metrics, the engine makes no progress, and the monitor must stop the point and say why.
The sweep-level half (the point recorded failed, the next point on a restarted server) is in the nodes
target (roles/nodes_target/tasks/_point_evidence.yml); its record and report path is in
tests/records/test_point_health.py.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

from tests.roles.test_guidellm import (
    VENV_081,
    ansible_playbook,
    free_port,
    install_with_role,
    point,
    wait_http,
)

REPO = Path(__file__).resolve().parents[2]
MONITOR = REPO / "roles" / "guidellm" / "files" / "point_monitor.py"

pytestmark = pytest.mark.roles


def load_monitor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("point_monitor", MONITOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


pm = load_monitor()


@pytest.fixture(scope="module")
def guidellm_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GuideLLM 0.8.1 installed by its role (a no-op where the local sweep or test_guidellm made it)."""
    install_with_role(tmp_path_factory.mktemp("guidellm-install"), "0.8.1", VENV_081)
    return VENV_081


EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 3.0
vllm:num_requests_waiting{engine="0",model_name="tiny"} 1.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny"} 7.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="tiny"} 2.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3",model_name="tiny"} 4.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="tiny"} 12.5
vllm:odd{path="a b}c",engine="0"} 5
vllm:gone{engine="0"} NaN
process_cpu_seconds_total 4.2
"""


def test_parser_keeps_vllm_samples_with_their_labels_and_drops_buckets():
    samples = pm.parse_exposition(EXPOSITION)
    assert samples['vllm:num_requests_running{engine="0",model_name="tiny"}'] == 3.0
    assert samples['vllm:e2e_request_latency_seconds_sum{engine="0",model_name="tiny"}'] == 12.5
    assert samples['vllm:odd{path="a b}c",engine="0"}'] == 5.0  # a brace and a space inside a label value
    assert 'vllm:gone{engine="0"}' not in samples  # NaN measures nothing, and is not JSON
    assert not any("_bucket" in key for key in samples)
    assert not any(key.startswith("process_") for key in samples)
    assert pm.metric_sum(samples, "vllm:request_success_total") == 9.0
    assert pm.metric_sum(samples, "vllm:generation_tokens_total") is None


def sample(success: float, running: float, waiting: float = 0.0) -> dict[str, float]:
    return {
        'vllm:request_success_total{engine="0"}': success,
        'vllm:generation_tokens_total{engine="0"}': success * 8,
        'vllm:num_requests_running{engine="0"}': running,
        'vllm:num_requests_waiting{engine="0"}': waiting,
    }


def test_watchdog_fires_when_completions_stop_while_requests_are_outstanding():
    dog = pm.Watchdog(stall_timeout_s=5, started_t=0.0)
    url = "http://h/metrics"
    assert dog.observe(1, url, True, sample(0, 0)) is None  # idle: nothing outstanding
    assert dog.observe(20, url, True, sample(0, 4)) is None  # busy from now on, not stalled yet
    assert dog.observe(22, url, True, sample(3, 4)) is None  # progress
    assert dog.observe(26, url, True, sample(3, 4, 2)) is None  # 4 s without progress
    why = dog.observe(27, url, True, sample(3, 4, 2))
    assert why and "no completion" in why and "= 6" in why
    evidence = dog.evidence()
    assert evidence["last_progress_t"] == 22 and evidence["outstanding_requests"] == 6
    assert evidence["last_samples"][-1]["vllm:num_requests_waiting"] == 2


def test_watchdog_fires_during_the_load_when_a_stalled_engine_leaves_its_gauges_at_zero():
    dog = pm.Watchdog(stall_timeout_s=5, started_t=0.0, load_s=60)
    url = "http://h/metrics"
    assert dog.observe(1, url, True, sample(0, 0)) is None
    assert dog.observe(2, url, True, sample(4, 0)) is None  # load began; the engine publishes no more
    assert dog.observe(6, url, True, sample(4, 0)) is None
    why = dog.observe(8, url, True, sample(4, 0))
    assert why and "load generator sending" in why
    # After the load (first completion + load_s) a quiet engine with nothing outstanding is idle, not stalled.
    after = pm.Watchdog(stall_timeout_s=5, started_t=0.0, load_s=10)
    assert after.observe(1, url, True, sample(0, 0)) is None
    assert after.observe(2, url, True, sample(4, 0)) is None
    assert after.observe(11, url, True, sample(9, 0)) is None
    assert after.observe(30, url, True, sample(9, 0)) is None


def test_watchdog_is_quiet_while_idle_and_fires_when_metrics_stop_answering():
    dog = pm.Watchdog(stall_timeout_s=5, started_t=0.0)
    url = "http://h/metrics"
    for t in range(0, 30, 5):
        assert dog.observe(t, url, True, sample(9, 0)) is None  # no request outstanding: never a stall
    assert dog.observe(27, url, False, {}) is None  # 2 s after the last answer
    why = dog.observe(31, url, False, {})
    assert why and "did not answer" in why


@pytest.mark.e2e
def test_watchdog_stops_a_point_whose_engine_stalls(tmp_path, guidellm_venv, vllm_venv, tiny_model):
    """SIGSTOP on the engine process mid-point: the point fails with the watchdog's evidence, and the series
    holds the samples up to the stall."""
    port = free_port()
    log = tmp_path / "stall-vllm.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(vllm_venv / "bin" / "python"),
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--model",
                str(tiny_model),
                "--served-model-name",
                "tiny",
                "--enforce-eager",
                "--max-model-len",
                "4096",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ
            | {
                "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"),
                "VLLM_CPU_KVCACHE_SPACE": "1",
                "HF_HUB_OFFLINE": "1",
            },
        )
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    stopped: list[int] = []
    done = threading.Event()

    def stall_the_engine() -> None:
        """Once requests run and some have completed, stop every engine-core process of the server."""
        while not done.wait(0.5):
            try:
                with urllib.request.urlopen(metrics_url, timeout=2) as response:
                    samples = pm.parse_exposition(response.read().decode())
            except OSError:
                continue
            if (pm.metric_sum(samples, "vllm:num_requests_running") or 0) > 0 and (
                pm.metric_sum(samples, "vllm:request_success_total") or 0
            ) > 0:
                engine = subprocess.run(
                    ["pgrep", "-s", str(server.pid), "-f", "EngineCore"], capture_output=True, text=True
                )
                # Without setproctitle the engine is an unnamed child: every process but the API server.
                session = subprocess.run(["pgrep", "-s", str(server.pid)], capture_output=True, text=True)
                pids = engine.stdout.split() or [p for p in session.stdout.split() if int(p) != server.pid]
                for pid in map(int, pids):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
                if stopped:
                    return

    try:
        wait_http(f"http://127.0.0.1:{port}/health", 300, server, log)
        extra, _args = point(
            tmp_path,
            "stall",
            venv=guidellm_venv,
            version="0.8.1",
            target=f"http://127.0.0.1:{port}",
            tokenizer=tiny_model,
            model="tiny",
            duration_s=120,
            output_tokens=32,
            prefix_tokens=64,
            runner={
                "guidellm_metrics_urls": [metrics_url],
                "guidellm_metrics_interval_s": 0.5,
                "guidellm_stall_timeout_s": 5,
            },
        )
        staller = threading.Thread(target=stall_the_engine, daemon=True)
        staller.start()
        run = ansible_playbook("guidellm_point", extra, tmp_path)
    finally:
        done.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGCONT)
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=60)
    assert stopped, f"the engine was never stopped; vLLM log: {log.read_text()[-2000:]}"
    assert run.returncode != 0, run.stdout[-3000:]
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result.get("ok") is False, run.stdout[-4000:]
    assert "watchdog stopped GuideLLM: no completion" in result["reason"], result["reason"]
    monitor = result["monitor"]
    assert monitor["stalled"] is True and monitor["ok_samples"] > 0
    assert monitor["stall"]["outstanding_requests"] > 0 or monitor["stall"]["load_active"] is True
    assert monitor["stall"]["last_progress_t"] is not None
    out = Path(extra["guidellm_output_dir"])
    assert json.loads((out / "watchdog.json").read_text())["stall"]["reason"] == monitor["stall"]["reason"]
    with gzip.open(out / "metrics-series.jsonl.gz", "rt") as series:
        lines = [json.loads(line) for line in series]
    answered = [line for line in lines if line["ok"]]
    assert answered and all(line["source"] == "vllm" and line["url"] == metrics_url for line in lines)
    assert any(
        key.startswith("vllm:num_requests_running") and value > 0
        for line in answered
        for key, value in line["samples"].items()
    )
    assert not any("_bucket{" in key for line in answered for key in line["samples"])
    # The stall was caught while the level still had time to run: GuideLLM was stopped, not timed out.
    assert result["rc"] == pm.EXIT_STALLED
    assert "did not finish within" not in result["reason"]


def test_monitor_stops_its_command_when_metrics_stop_answering(tmp_path):
    """The monitor process itself: a URL nothing listens on, a command that would run for a minute."""
    url = f"http://127.0.0.1:{free_port()}/metrics"
    series, evidence = tmp_path / "series.jsonl.gz", tmp_path / "watchdog.json"
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    options = ["--url", url, "--series", str(series), "--evidence", str(evidence), "--interval", "0.2"]
    options += ["--stall-timeout", "1", "--load-duration", "60"]
    done = subprocess.run(
        [sys.executable, str(MONITOR), *options, "--", *command],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == pm.EXIT_STALLED, done.stderr
    result = json.loads(done.stdout)
    assert result["reason"].startswith("watchdog stopped GuideLLM: " + url + " did not answer")
    assert result["monitor"]["stalled"] is True and result["monitor"]["ok_samples"] == 0
    assert json.loads(evidence.read_text()) == result["monitor"]
    with gzip.open(series, "rt") as lines:
        scrapes = [json.loads(line) for line in lines]
    assert scrapes and all(s["ok"] is False and s["error"] and s["url"] == url for s in scrapes)
