"""The guidellm role, driven by real ansible-playbook runs on this machine (connection local).

Every point runs the command line kvbench.plan.guidellm.build_argv makes for the venv's GuideLLM release
(the one implementation `kvbench plan` also uses), handed to the role's run_point entry point. Client-side
wiring runs against GuideLLM's own mock server. Both venvs are made by the role itself, once per module:
0.8.1 into KVBENCH_GUIDELLM_VENV (default .work/state/venvs/guidellm-0.8.1, shared with the local sweep)
and 0.5.3 into KVBENCH_GUIDELLM053_VENV (default .work/state/venvs/guidellm-0.5.3): minutes the first
time, seconds afterwards. One point runs against a real vLLM CPU server (marker e2e: `make test-e2e`, which
CI runs) with the vLLM venv and the tiny model the session fixtures of tests/roles/conftest.py make with
their roles. No test here skips.
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

from kvbench.plan.guidellm import PointArgs, build_argv, report_seed, turns_sent, warnings
from tests.conftest import run_with_vars

REPO = Path(__file__).resolve().parents[2]
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
# A tokenizer for the mock-server points when the sweep already made its tiny model (else one is trained).
TINY_MODEL = first_existing("KVBENCH_TINY_MODEL", STATE / "models/tiny-qwen3")
SECRET = "kvbench-test-SECRET-4711"
# Seeds given to build_argv; GuideLLM must record exactly these in its own report.
SEED_081, SEED_053 = 4893, 7321

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


def install_with_role(workdir: Path, version: str, venv: Path) -> None:
    """Install GuideLLM `version` into `venv` with the role, then check that a second run changes nothing."""
    extra = {"guidellm_venv": str(venv), "guidellm_version": version, "guidellm_python": "/usr/bin/python3"}
    result_file = workdir / f"install-{version}.json"
    first = ansible_playbook("guidellm_install", extra | {"result_file": str(result_file)}, workdir)
    assert first.returncode == 0, first.stdout[-4000:]
    assert json.loads(result_file.read_text())["guidellm_version_running"] == version
    second = ansible_playbook("guidellm_install", extra, workdir)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "changed=0" in second.stdout, f"the install of {version} is not idempotent"


@pytest.fixture(scope="module")
def venv_081(workdir: Path) -> Path:
    install_with_role(workdir, "0.8.1", VENV_081)
    return VENV_081


@pytest.fixture(scope="module")
def venv_053(workdir: Path) -> Path:
    install_with_role(workdir, "0.5.3", VENV_053)
    return VENV_053


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


def point(
    workdir: Path,
    name: str,
    *,
    venv: Path,
    version: str,
    target: str,
    tokenizer: Path | str,
    runner: dict[str, Any] | None = None,
    **fields: Any,
) -> tuple[dict[str, Any], PointArgs]:
    """Extra vars of one run_point call: the argv build_argv makes for `version`, plus runner settings.

    Returns them with the PointArgs the argv was built from (fields override the defaults below).
    """
    out = workdir / name / "c0004-r1"
    out.parent.mkdir(parents=True, exist_ok=True)  # for result_file; the role makes `out` itself
    defaults: dict[str, Any] = {
        "executable": str(venv / "bin" / "guidellm"),
        "target_url": target,
        "model": "mock",
        "tokenizer": str(tokenizer),
        "concurrency": 4,
        "duration_s": 5,
        "prompt_tokens": 32,
        "output_tokens": 8,
        "prefix_tokens": 64,
        "prefix_count": 2,
        "turns": 2,
        "seed": SEED_081,
        "warmup": 1,
        "output_path": str(out / "guidellm.json"),
    }
    args = PointArgs(**(defaults | fields))
    extra = {
        "guidellm_venv": str(venv),
        "guidellm_argv": build_argv(version, args),
        "guidellm_expected_version": version,
        "guidellm_output_dir": str(out),
        "guidellm_duration_s": args.duration_s,
        "result_file": str(workdir / name / "result.json"),
    }
    return extra | (runner or {}), args


def load_report(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


def test_point_against_mock_server(workdir: Path, venv_081: Path, mock_server: str, tokenizer: Path) -> None:
    extra, args = point(
        workdir,
        "mock",
        venv=venv_081,
        version="0.8.1",
        target=mock_server + "/v1",
        tokenizer=tokenizer,
        labels=(("kvbench_point", "c0004-r1"),),
        runner={"guidellm_api_key": SECRET, "guidellm_environment": {"GUIDELLM__KVBENCH_PROBE": "1"}},
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode == 0, run.stdout[-4000:]
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result["ok"] is True and result["rc"] == 0 and result["version"] == "0.8.1"
    assert result["command"] == extra["guidellm_argv"], "run_point must run the plan's argv as given"
    out = Path(extra["guidellm_output_dir"])
    assert result["json_path"] == str(out / "guidellm.json")
    report = load_report(out / "guidellm.json")
    # The seed GuideLLM recorded is the seed the argv was built with.
    assert report_seed(report) == args.seed == SEED_081
    assert report["config"]["spec"]["seed"] == {"kind": "static", "value": SEED_081}
    bench = report["benchmarks"]
    assert len(bench) == 1 and bench[0]["config"]["strategy"]["streams"] == 4
    assert bench[0]["metrics"]["request_totals"]["successful"] > 0
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
    extra, _ = point(
        workdir,
        "closed",
        venv=venv_081,
        version="0.8.1",
        target=f"http://127.0.0.1:{port}",
        tokenizer=tokenizer,
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode != 0
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result["ok"] is False and result["rc"] not in (0, None)
    assert "could not connect" in result["reason"].lower()
    assert f"GuideLLM point in {extra['guidellm_output_dir']} failed" in run.stdout
    log = (Path(extra["guidellm_output_dir"]) / "guidellm.log").read_text()
    assert "ConnectError" in log or "connection attempts failed" in log
    assert not (Path(extra["guidellm_output_dir"]) / "guidellm.json").exists()


def test_hung_point_is_killed(workdir: Path, venv_081: Path, mock_server: str, tokenizer: Path) -> None:
    # No margin at all: GuideLLM cannot even start within the 2-s budget, so the runner kills it.
    extra, _ = point(
        workdir,
        "hung",
        venv=venv_081,
        version="0.8.1",
        target=mock_server,
        tokenizer=tokenizer,
        duration_s=2,
        runner={"guidellm_timeout_margin_s": 0},
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode != 0
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result["rc"] == 124 and "did not finish within" in result["reason"]
    leftovers = subprocess.run(["pgrep", "-f", extra["guidellm_output_dir"]], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "GuideLLM processes survived the kill"


def test_venv_of_another_release_fails_the_point(workdir: Path, venv_081: Path) -> None:
    """A command line built for 0.5.3 never runs on the 0.8.1 venv: the point fails naming both releases."""
    extra, _ = point(
        workdir,
        "other-release",
        venv=venv_081,
        version="0.5.3",
        target="http://127.0.0.1:9",
        tokenizer=workdir / "no-tokenizer",
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode != 0
    assert "GuideLLM 0.8.1 in" in run.stdout, run.stdout[-3000:]
    assert "built this command line for GuideLLM 0.5.3" in run.stdout, run.stdout[-3000:]
    assert json.loads(Path(extra["result_file"]).read_text()) == {"missing": True}
    assert not Path(extra["guidellm_output_dir"]).exists(), "nothing may run before the release check"


@pytest.mark.e2e
def test_point_against_real_vllm(workdir: Path, venv_081: Path, vllm_venv: Path, tiny_model: Path) -> None:
    """One point against a real vLLM CPU server serving the tiny model (both from tests/roles/conftest.py)."""
    port = free_port()
    log = workdir / "vllm.log"
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
                "VLLM_CACHE_ROOT": str(workdir / "vllm-cache"),
                "VLLM_CPU_KVCACHE_SPACE": "1",
                "HF_HUB_OFFLINE": "1",
            },
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 300, server, log)
        extra, args = point(
            workdir,
            "vllm",
            venv=venv_081,
            version="0.8.1",
            target=f"http://127.0.0.1:{port}",
            tokenizer=tiny_model,
            model="tiny",
            duration_s=8,
            prefix_tokens=256,
        )
        run = ansible_playbook("guidellm_point", extra, workdir)
        assert run.returncode == 0, run.stdout[-4000:]
    finally:
        stop(server)
    report = load_report(Path(extra["guidellm_output_dir"]) / "guidellm.json")
    assert report_seed(report) == args.seed
    bench = report["benchmarks"][0]
    assert bench["config"]["strategy"]["streams"] == 4
    assert bench["metrics"]["request_totals"]["successful"] > 0
    turns = {t["turn_index"]: t["request_totals"]["successful"] for t in bench["metrics"]["turns"]}
    assert turns.get(1, 0) > 0, turns
    assert "POST /v1/chat/completions" in log.read_text()


def test_053_install_needs_no_cuda(venv_053: Path) -> None:
    """The role's 0.5.3 install (the venv_053 fixture, idempotent) holds a CPU torch and no nvidia-* wheel."""
    script = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    )
    python = str(venv_053 / "bin" / "python")
    listed = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    names = json.loads(listed.stdout)
    assert names.get("guidellm") == "0.5.3"
    assert "torch" in names and "+cu" not in names["torch"], names.get("torch")
    assert not [n for n in names if n.startswith("nvidia-")], sorted(names)


def test_point_with_guidellm_053(workdir: Path, venv_053: Path, mock_server: str, tokenizer: Path) -> None:
    extra, args = point(
        workdir,
        "v053",
        venv=venv_053,
        version="0.5.3",
        target=mock_server,
        tokenizer=tokenizer,
        turns=5,
        seed=SEED_053,
    )
    # What 0.5.3 leaves out of this request is the plan's to say (kvbench.plan.guidellm), not the role's.
    assert turns_sent("0.5.3", args.turns) == 1
    notes = warnings("0.5.3", args)
    assert any("ignores turns=5" in w and "0.6.0" in w for w in notes), notes
    assert any("--sample-requests" in w for w in notes), notes
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode == 0, run.stdout[-4000:]
    result = json.loads(Path(extra["result_file"]).read_text())
    assert result["ok"] is True and result["version"] == "0.5.3"
    assert result["command"][1:3] == ["benchmark", "run"]
    report = load_report(Path(extra["guidellm_output_dir"]) / "guidellm.json")
    assert report["metadata"]["version"] == 1
    # The seed GuideLLM recorded is the seed the argv was built with.
    assert report_seed(report) == args.seed == SEED_053
    assert report["args"]["random_seed"] == SEED_053
    bench = report["benchmarks"][0]
    assert bench["config"]["strategy"]["streams"] == 4
    assert bench["metrics"]["request_totals"]["successful"] > 0


def test_api_key_is_refused_with_053(workdir: Path, venv_053: Path) -> None:
    """0.5.x writes its backend settings into its report, so run_point refuses an API key before running."""
    extra, _ = point(
        workdir,
        "v053-key",
        venv=venv_053,
        version="0.5.3",
        target="http://127.0.0.1:9",
        tokenizer=workdir / "no-tokenizer",
        runner={"guidellm_api_key": SECRET},
    )
    run = ansible_playbook("guidellm_point", extra, workdir)
    assert run.returncode != 0
    assert "guidellm_api_key needs 0.8.x" in run.stdout, run.stdout[-3000:]
    assert SECRET not in run.stdout and SECRET not in run.stderr
    assert not Path(extra["guidellm_output_dir"]).exists()
