"""The pcp role, driven by real ansible-playbook runs: real pmcd, real pmlogger, real archives.

Each test uses its own state directory, service_unit directory, archive and logger name, and stops the
logger it started in a finalizer, also when an assertion fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.roles

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# A pmdumplog record header: "10:52:50.001739 1 metric".
RECORD = re.compile(r"^\d\d:\d\d:\d\d\.\d+\s+\d+\s+metrics?$", re.M)
PCP_ENV = {**os.environ, "PCP_PYTHON_PROG": "/usr/bin/python3"}


@dataclass
class Run:
    rc: int
    output: str

    @property
    def changed(self) -> int:
        found = RECAP.findall(self.output)
        assert found, f"no PLAY RECAP in the output:\n{self.output[-3000:]}"
        return int(found[-1][1])


@dataclass
class Logger:
    tmp: Path
    name: str
    pids: set[int] = field(default_factory=set)

    @property
    def archive(self) -> Path:
        return self.tmp / "archive" / "pcp"

    @property
    def service_dir(self) -> Path:
        return self.tmp / "services"

    def play(self, entries: list[str], **more: object) -> Run:
        extra = {
            "entries": entries,
            "pcp_state_dir": str(self.tmp / "state"),
            "pcp_logger_archive": str(self.archive),
            "pcp_logger_instance_name": self.name,
            "service_unit_dir": str(self.service_dir),
            **more,
        }
        vars_file = self.tmp / f"extra-{secrets.token_hex(4)}.json"
        vars_file.write_text(json.dumps(extra))
        env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1"}
        proc = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-v", str(PLAYBOOKS / "pcp_entry.yml"), "-e", f"@{vars_file}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.remember_pid()
        return Run(proc.returncode, proc.stdout + proc.stderr)

    def remember_pid(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.pids.add(int((self.service_dir / f"{self.name}.pid").read_text().split()[0]))


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def records(archive: Path, metric: str) -> int:
    proc = subprocess.run(
        ["pmdumplog", str(archive), metric], capture_output=True, text=True, timeout=60, check=False
    )
    return len(RECORD.findall(proc.stdout)) if proc.returncode == 0 else 0


@pytest.fixture
def logger(tmp_path: Path) -> Iterator[Logger]:
    if not Path("/usr/bin/pmlogger").exists():
        pytest.skip("PCP is not installed (run the pcp role once as root)")
    lg = Logger(tmp=tmp_path, name=f"kvbench-pmlogger-test-{secrets.token_hex(3)}")
    yield lg
    lg.remember_pid()
    if any(alive(pid) for pid in lg.pids):
        with contextlib.suppress(Exception):
            lg.play(["logger_stop"], pcp_logger_fail_on_missing=False)
    for pid in lg.pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_pmcd_and_a_logged_archive(logger: Logger) -> None:
    first = logger.play(["main"])
    assert first.rc == 0, first.output[-4000:]
    again = logger.play(["main"])
    assert again.rc == 0, again.output[-4000:]
    assert again.changed == 0, again.output[-4000:]

    metrics = [
        {"name": "kernel.all.cpu.*", "optional": False},
        {"name": "mem.util.free", "optional": False},
        {"name": "kvbench.no.such.metric", "optional": True},
    ]
    result = logger.tmp / "start.json"
    start = logger.play(
        ["logger_start"], pcp_logger_interval_s=1, pcp_logger_metrics=metrics, result_file=str(result)
    )
    assert start.rc == 0, start.output[-4000:]
    facts = json.loads(result.read_text())
    assert facts["pcp_logger_logged"] == ["kernel.all.cpu", "mem.util.free"]
    assert facts["pcp_logger_dropped"] == ["kvbench.no.such.metric"]
    config = (logger.tmp / "state" / f"{logger.name}.config").read_text()
    assert "kvbench.no.such.metric" not in config.split("{", 1)[1]

    # Bounded poll of the live archive until it holds 3 samples.
    deadline = time.monotonic() + 60
    while records(logger.archive, "mem.util.free") < 3:
        assert time.monotonic() < deadline, "the archive did not reach 3 samples within 60 s"
        time.sleep(0.25)

    result = logger.tmp / "stop.json"
    stop = logger.play(["logger_stop"], result_file=str(result))
    assert stop.rc == 0, stop.output[-4000:]
    check = json.loads(result.read_text())["pcp_archive_check"]
    assert check["metrics_present"] == ["kernel.all.cpu", "mem.util.free"]
    assert check["metrics_missing"] == []
    assert check["metrics_dropped"] == ["kvbench.no.such.metric"]
    assert check["samples_per_metric"]["mem.util.free"] >= 3
    assert check["samples"] >= 2  # counters: rate intervals, one fewer than records
    assert not any(alive(pid) for pid in logger.pids)

    # The archive exports: pmrep CSV has a header and a valued row per sample (pmrep's first row, at the
    # archive's start before the first record, may be empty).
    pmrep = subprocess.run(
        ["pmrep", "-a", str(logger.archive), "-o", "csv", "mem.util.free"],
        capture_output=True,
        text=True,
        env=PCP_ENV,
        timeout=60,
        check=True,
    )
    rows = [line for line in pmrep.stdout.splitlines() if line.strip()]
    assert rows[0].startswith("Time,")
    valued = [row for row in rows[1:] if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+", row)]
    assert len(valued) >= 3, rows[:6]

    # The same archive prefix is refused by the next logger_start.
    again = logger.play(["logger_start"], pcp_logger_interval_s=1, pcp_logger_metrics=metrics)
    assert again.rc != 0
    assert "exists already" in again.output


def test_a_required_metric_that_never_answers_fails_by_name(logger: Logger) -> None:
    run = logger.play(
        ["main", "logger_start"],
        pcp_logger_interval_s=1,
        pcp_logger_source_timeout_s=2,
        pcp_logger_metrics=[
            {"name": "mem.util.free", "optional": False},
            {"name": "kvbench.required.missing", "optional": False},
        ],
    )
    assert run.rc != 0
    assert "kvbench.required.missing" in run.output
    assert "gave no values within 2 s" in run.output
    assert not (logger.archive.parent / "pcp.meta").exists()


PROM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="tiny"} 3.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{model_name="tiny"} 42.0
"""
OPENMETRICS_CONFIG = Path("/var/lib/pcp/pmdas/openmetrics/config.d")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_openmetrics_endpoint_is_logged(logger: Logger) -> None:
    """A Prometheus text endpoint (vLLM's /metrics format, served by a static file) through the
    openmetrics PMDA into the archive."""
    name = f"kvbtest{secrets.token_hex(3)}"
    web = logger.tmp / "web"
    web.mkdir()
    (web / "metrics").write_text(PROM)
    port = free_port()
    server = subprocess.Popen(
        ["/usr/bin/python3", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(web)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = logger.tmp / "start.json"
        start = logger.play(
            ["main", "logger_start"],
            pcp_openmetrics_urls=[{"name": name, "url": f"http://127.0.0.1:{port}/metrics"}],
            pcp_logger_interval_s=1,
            pcp_logger_metrics=[{"name": "mem.util.free", "optional": False}],
            result_file=str(result),
        )
        assert start.rc == 0, start.output[-4000:]
        assert json.loads(result.read_text())["pcp_logger_logged"] == ["mem.util.free", f"openmetrics.{name}"]

        leaf = f"openmetrics.{name}.vllm.num_requests_running"
        deadline = time.monotonic() + 60
        while records(logger.archive, leaf) < 3:
            assert time.monotonic() < deadline, f"{leaf} did not reach 3 samples within 60 s"
            time.sleep(0.25)

        result = logger.tmp / "stop.json"
        stop = logger.play(["logger_stop"], result_file=str(result))
        assert stop.rc == 0, stop.output[-4000:]
        check = json.loads(result.read_text())["pcp_archive_check"]
        assert f"openmetrics.{name}" in check["metrics_present"]
        assert check["samples_per_metric"][f"openmetrics.{name}"] >= 3
    finally:
        server.terminate()
        server.wait(timeout=30)
        (OPENMETRICS_CONFIG / f"{name}.url").unlink(missing_ok=True)


def scenario_layout(logger: Logger) -> Path:
    """The logger's archive linked into <scenario>/pcp/<host>/, the layout the analyzer reads."""
    host_dir = logger.tmp / "scenario" / "pcp" / "localhost"
    host_dir.mkdir(parents=True, exist_ok=True)
    for path in logger.archive.parent.glob(logger.archive.name + ".*"):
        (host_dir / path.name).symlink_to(path)
    return host_dir.parent.parent


def test_default_sources_reach_the_analyzer(logger: Logger) -> None:
    """The default sources (all-CPU and per-CPU time, PSI, memory) pass the readiness gate, land in a 1 s
    archive, and kvbench's reader (PCP's Python API) summarises them."""
    from kvbench.ingest.metrics_pcp import read_scenario_archives
    from kvbench.metrics_summary import Window, pcp_summary

    result = logger.tmp / "start.json"
    start = logger.play(["main", "logger_start"], pcp_logger_interval_s=1, result_file=str(result))
    assert start.rc == 0, start.output[-4000:]
    logged = json.loads(result.read_text())["pcp_logger_logged"]
    assert {"kernel.all.cpu", "kernel.percpu.cpu", "hinv.ncpu", "mem.util"} <= set(logged)
    psi = Path("/proc/pressure/cpu").exists()
    assert ("kernel.all.pressure" in logged) == psi
    deadline = time.monotonic() + 60
    while records(logger.archive, "kernel.percpu.cpu.idle") < 4:
        assert time.monotonic() < deadline, "the archive did not reach 4 samples within 60 s"
        time.sleep(0.25)
    stop = logger.play(["logger_stop"])
    assert stop.rc == 0, stop.output[-4000:]

    frame, problems = read_scenario_archives(scenario_layout(logger))
    assert problems == []
    assert {"kernel.percpu.cpu.idle", "hinv.ncpu"} <= set(frame["metric"])
    window = Window(float(frame["t"].min()), float(frame["t"].max()))
    summary = pcp_summary(frame, window)
    assert summary["cpu_count"] == os.cpu_count()
    assert 0.0 <= summary["cpu_busy_mean"] <= summary["cpu_busy_max"] <= 1.0
    assert 0 <= summary["cpu_saturated_mean"] <= summary["cpu_count"]
    assert summary["mem_used_bytes_max"] > 0
    if psi:
        assert 0.0 <= summary["cpu_pressure_some"] <= 1.0


def test_the_redis_pmda_reads_a_store(logger: Logger) -> None:
    """PCP's redis PMDA pointed at a real Redis (no password: PCP 6.0's PMDA sends no AUTH)."""
    from kvbench.ingest.metrics_pcp import read_scenario_archives
    from kvbench.metrics_summary import Window, pcp_summary

    if not Path("/usr/bin/redis-server").exists():
        pytest.skip("redis-server is not installed")
    port = free_port()
    store = subprocess.Popen(
        [
            "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = logger.tmp / "start.json"
        start = logger.play(
            ["main", "logger_start"],
            pcp_redis_hosts=[f"127.0.0.1:{port}"],
            pcp_logger_interval_s=1,
            pcp_logger_metrics=[{"name": "mem.util.free", "optional": False}],
            result_file=str(result),
        )
        assert start.rc == 0, start.output[-4000:]
        assert json.loads(result.read_text())["pcp_logger_logged"] == ["mem.util.free", "redis"]
        deadline = time.monotonic() + 60
        while records(logger.archive, "redis.used_memory") < 3:
            assert time.monotonic() < deadline, "redis.used_memory did not reach 3 samples within 60 s"
            time.sleep(0.25)
        stop = logger.play(["logger_stop"])
        assert stop.rc == 0, stop.output[-4000:]
        frame, problems = read_scenario_archives(scenario_layout(logger))
        assert problems == []
        assert "redis.used_memory" in set(frame["metric"])
        summary = pcp_summary(frame, Window(float(frame["t"].min()), float(frame["t"].max())))
        assert summary["store_memory_bytes_max"] > 0
        assert summary["store_ops_per_s"] >= 0
    finally:
        store.terminate()
        store.wait(timeout=30)
        subprocess.run(
            ["./Remove"],
            cwd="/var/lib/pcp/pmdas/redis",
            env=PCP_ENV,
            capture_output=True,
            timeout=120,
            check=False,
        )
