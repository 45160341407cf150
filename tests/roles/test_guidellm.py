"""The guidellm role, driven by real ansible-playbook runs on this machine (connection local).

Client-side wiring runs against GuideLLM's own mock server; one point runs against a real vLLM CPU
server when a tiny model and a vLLM venv exist (KVBENCH_TINY_MODEL, KVBENCH_VLLM_VENV; by default what
the tiny_model and vllm roles make, or .work/tiny-model and .work/venvs/vllm). The 0.8.1 venv is made by
the role itself (KVBENCH_GUIDELLM_VENV, default the role's /opt/kvbench/venvs/guidellm-0.8.1 or an
existing .work/venvs/guidellm-0.8.1: minutes the first time, seconds afterwards); the 0.5.3 point runs
when a 0.5.3 venv exists (KVBENCH_GUIDELLM053_VENV; make it with the role: guidellm_version=0.5.3).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import run_with_vars

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
PLAYBOOKS = REPO / "tests" / "roles" / "playbooks"


def first_existing(env: str, *candidates: Path) -> Path:
    """The path named by env, else the first candidate that exists, else the first candidate."""
    if os.environ.get(env):
        return Path(os.environ[env])
    return next((c for c in candidates if c.exists()), candidates[0])


# What the local sweep (inventory/local, kvbench_home=.work/state) makes, shared with these tests.
STATE = REPO / ".work" / "state"
VENV_081 = first_existing("KVBENCH_GUIDELLM_VENV", STATE / "venvs/guidellm-0.8.1")
VENV_053 = first_existing("KVBENCH_GUIDELLM053_VENV", STATE / "venvs/guidellm-0.5.3")
TINY_MODEL = first_existing("KVBENCH_TINY_MODEL", STATE / "models/tiny-qwen3")
VLLM_VENV = first_existing("KVBENCH_VLLM_VENV", STATE / "venvs/vllm")
SECRET = "kvbench-test-SECRET-4711"

pytestmark = pytest.mark.roles


def ansible_playbook(playbook: str, extra_vars: dict[str, Any], workdir: Path) -> subprocess.CompletedProcess:
    return run_with_vars(PLAYBOOKS / f"{playbook}.yml", extra_vars, workdir)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"server exited with {proc.returncode} before serving {url}: {log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready within {timeout_s} s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("guidellm")


@pytest.fixture(scope="module")
def venv_081(workdir: Path) -> Path:
    """Install GuideLLM 0.8.1 with the role, then check that a second run changes nothing."""
    extra = {
        "guidellm_venv": str(VENV_081),
        "guidellm_version": "0.8.1",
        "guidellm_python": "/usr/bin/python3",
    }
    first = ansible_playbook(
        "guidellm_install", extra | {"result_file": str(workdir / "install.json")}, workdir
    )
    assert first.returncode == 0, first.stdout[-4000:]
    assert json.loads((workdir / "install.json").read_text())["guidellm_version_running"] == "0.8.1"
    second = ansible_playbook("guidellm_install", extra, workdir)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "changed=0" in second.stdout, "the install is not idempotent"
    return VENV_081


@pytest.fixture(scope="module")
def tokenizer(workdir: Path, venv_081: Path) -> Path:
    """The tiny model's tokenizer if present, else a byte-level BPE trained here on local text."""
    if (TINY_MODEL / "tokenizer.json").is_file():
        return TINY_MODEL
    target = workdir / "tokenizer"
    script = (
        "import glob, sys\n"
        "from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders\n"
        "from transformers import PreTrainedTokenizerFast\n"
        "tok = Tokenizer(models.BPE())\n"
        "tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)\n"
        "tok.decoder = decoders.ByteLevel()\n"
        "files = sorted(glob.glob('/usr/share/doc/*/copyright'))[:200]\n"
        "special = ['<|endoftext|>', '<|im_end|>']\n"
        "tok.train(files, trainers.BpeTrainer(vocab_size=4096, special_tokens=special,\n"
        "          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))\n"
        "PreTrainedTokenizerFast(tokenizer_object=tok, eos_token='<|im_end|>').save_pretrained(sys.argv[1])\n"
    )
    subprocess.run(
        [str(venv_081 / "bin" / "python"), "-c", script, str(target)],
        check=True,
        capture_output=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    return target


@pytest.fixture(scope="module")
def mock_server(workdir: Path, venv_081: Path) -> Iterator[str]:
    """GuideLLM's own OpenAI-compatible simulator (client-side wiring only)."""
    port = free_port()
    log = workdir / "mock-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(venv_081 / "bin" / "guidellm"),
                "mock-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--model",
                "mock",
                "--ttft-ms",
                "10",
                "--itl-ms",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def point_vars(workdir: Path, name: str, **overrides: Any) -> dict[str, Any]:
    base = {
        "guidellm_venv": str(VENV_081),
        "guidellm_model": "mock",
        "guidellm_output_dir": str(workdir / name / "c0004-r1"),
        "guidellm_concurrency": 4,
        "guidellm_repetition": 1,
        "guidellm_duration_s": 5,
        "guidellm_prompt_tokens": 32,
        "guidellm_output_tokens": 8,
        "guidellm_prefix_tokens": 64,
        "guidellm_prefix_count": 2,
        "guidellm_turns": 2,
        "guidellm_warmup": 1,
        "result_file": str(workdir / name / "result.json"),
    }
    return base | overrides


def load_report(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


def test_point_against_mock_server(workdir: Path, mock_server: str, tokenizer: Path) -> None:
    extra = point_vars(
        workdir,
        "mock",
        guidellm_target=mock_server + "/v1",
        guidellm_tokenizer=str(tokenizer),
        guidellm_api_key=SECRET,
        guidellm_labels={"kvbench_point": "c0004-r1"},
        guidellm_environment={"GUIDELLM__KVBENCH_PROBE": "1"},
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode == 0, run.stdout[-4000:]
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result["ok"] is True and result["rc"] == 0 and result["version"] == "0.8.1"
    # Fresh data per level: seed = base + 1000 * concurrency + repetition - 1.
    assert result["seed"] == 889 + 4000 and result["seed_base"] == 889
    out = Path(extra["guidellm_output_dir"])
    assert result["json_path"] == str(out / "guidellm.json")
    report = load_report(out / "guidellm.json")
    bench = report["benchmarks"]
    assert len(bench) == 1 and bench[0]["config"]["strategy"]["streams"] == 4
    assert bench[0]["metrics"]["request_totals"]["successful"] > 0
    assert report["config"]["spec"]["seed"]["value"] == 889 + 4000
    assert report["config"]["spec"]["data"][0]["turns"] == 2
    assert report["config"]["metadata"]["labels"] == {"kvbench_point": "c0004-r1"}
    # Multi-turn requests really went out: the second turn has its own successful requests.
    turns = {t["turn_index"]: t["request_totals"]["successful"] for t in bench[0]["metrics"]["turns"]}
    assert turns.get(1, 0) > 0, turns
    assert result["report"]["benchmarks"][0]["turns"]["1"] == turns[1]
    # Client evidence is there and plausible.
    client = result["client"]
    assert client["cores"] >= 1 and 0 <= client["cpu_busy_pct"] <= 100 and client["guidellm_cpu_s"] > 0
    assert isinstance(client["saturated_suspect"], bool)
    assert result["report"]["benchmarks"][0]["scheduler"]["request_start_delay_avg"] is not None
    # The API key went through the private scenario file: not in argv, report, log or Ansible output.
    assert SECRET not in json.dumps(result["command"])
    assert SECRET not in (out / "guidellm.json").read_text()
    assert SECRET not in (out / "guidellm.log").read_text()
    assert SECRET not in run.stdout
    assert report["config"]["spec"]["backend"]["api_key"] == "**********"
    # The environment reaches GuideLLM (it names GUIDELLM__* variables it does not know).
    assert "GUIDELLM__KVBENCH_PROBE" in (out / "guidellm.log").read_text()


def test_closed_port_fails_with_reason(workdir: Path, venv_081: Path, tokenizer: Path) -> None:
    port = free_port()  # bound and released: nothing listens there
    extra = point_vars(
        workdir, "closed", guidellm_target=f"http://127.0.0.1:{port}", guidellm_tokenizer=str(tokenizer)
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode != 0
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result["ok"] is False and result["rc"] not in (0, None)
    assert "could not connect" in result["reason"].lower()
    assert "point at 4 streams failed" in run.stdout
    log = (Path(extra["guidellm_output_dir"]) / "guidellm.log").read_text()
    assert "ConnectError" in log or "connection attempts failed" in log
    assert not (Path(extra["guidellm_output_dir"]) / "guidellm.json").exists()


def test_hung_point_is_killed(workdir: Path, mock_server: str, tokenizer: Path) -> None:
    # No margin at all: GuideLLM cannot even start within the 2-s budget, so the runner kills it.
    extra = point_vars(
        workdir,
        "hung",
        guidellm_target=mock_server,
        guidellm_tokenizer=str(tokenizer),
        guidellm_duration_s=2,
        guidellm_timeout_margin_s=0,
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode != 0
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result["rc"] == 124 and "did not finish within" in result["reason"]
    leftovers = subprocess.run(["pgrep", "-f", extra["guidellm_output_dir"]], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "GuideLLM processes survived the kill"


def test_point_against_real_vllm(workdir: Path, venv_081: Path) -> None:
    python = VLLM_VENV / "bin" / "python"
    if not (TINY_MODEL / "config.json").is_file() or not python.is_file():
        pytest.skip(f"needs a tiny model at {TINY_MODEL} and a vLLM venv at {VLLM_VENV}")
    port = free_port()
    log = workdir / "vllm.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(python),
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--model",
                str(TINY_MODEL),
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
                "VLLM_CACHE_ROOT": str(workdir / "vllm-cache"),
                "VLLM_CPU_KVCACHE_SPACE": "1",
                "HF_HUB_OFFLINE": "1",
            },
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 300, server, log)
        extra = point_vars(
            workdir,
            "vllm",
            guidellm_target=f"http://127.0.0.1:{port}",
            guidellm_model="tiny",
            guidellm_tokenizer=str(TINY_MODEL),
            guidellm_duration_s=8,
            guidellm_prefix_tokens=256,
        )
        run = ansible_playbook("guidellm_point", extra, workdir)
        assert run.returncode == 0, run.stdout[-4000:]
    finally:
        stop(server)
    report = load_report(Path(extra["guidellm_output_dir"]) / "guidellm.json")
    bench = report["benchmarks"][0]
    assert bench["config"]["strategy"]["streams"] == 4
    assert bench["metrics"]["request_totals"]["successful"] > 0
    turns = {t["turn_index"]: t["request_totals"]["successful"] for t in bench["metrics"]["turns"]}
    assert turns.get(1, 0) > 0, turns
    assert "POST /v1/chat/completions" in log.read_text()


def test_point_with_guidellm_053(workdir: Path, mock_server: str, tokenizer: Path) -> None:
    if not (VENV_053 / "bin" / "guidellm").is_file():
        pytest.skip(f"no GuideLLM 0.5.3 venv at {VENV_053} (make it with the role, guidellm_version=0.5.3)")
    extra = point_vars(
        workdir,
        "v053",
        guidellm_venv=str(VENV_053),
        guidellm_target=mock_server,
        guidellm_tokenizer=str(tokenizer),
        guidellm_turns=5,
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode == 0, run.stdout[-4000:]
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result["version"] == "0.5.3" and result["cli"] == "v0.5"
    assert result["turns_requested"] == 5 and result["turns_sent"] == 1
    assert any("ignores turns=5" in w and "0.6.0" in w for w in result["warnings"])
    assert any("--sample-requests" in w for w in result["warnings"])
    assert "WARNING: GuideLLM 0.5.3 ignores turns=5" in run.stdout
    assert result["command"][1:3] == ["benchmark", "run"]
    report = load_report(Path(extra["guidellm_output_dir"]) / "guidellm.json")
    assert report["metadata"]["version"] == 1 and report["args"]["random_seed"] == 889 + 4000
    bench = report["benchmarks"][0]
    assert bench["config"]["strategy"]["streams"] == 4
    assert bench["metrics"]["request_totals"]["successful"] > 0


def test_053_install_needs_no_cuda(venv_081: Path) -> None:
    """pip's own resolver: GuideLLM 0.5.3 over a CPU torch adds no torch and no nvidia-* wheel.

    About two minutes of resolving; skipped where the role already made a real 0.5.3 venv (its install
    asserts the same, and test_point_with_guidellm_053 runs it).
    """
    if (VENV_053 / "bin" / "guidellm").is_file():
        pytest.skip(f"a real GuideLLM 0.5.3 venv made by the role exists at {VENV_053}")
    proc = subprocess.run(
        [
            str(venv_081 / "bin" / "pip"),
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            "-",
            "guidellm==0.5.3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(proc.stdout)["install"]
    }
    assert names.get("guidellm") == "0.5.3"
    assert "torch" not in names and not [n for n in names if n.startswith("nvidia-")], names
