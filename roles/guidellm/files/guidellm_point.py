#!/usr/bin/env python3
"""Run GuideLLM for one load point and report what happened as one JSON object on stdout.

Installed by the kvbench `guidellm` role into the GuideLLM venv and run with that venv's python.
It starts the GuideLLM argv given after `--` with its console output in the log file, kills it
(whole process group) after the timeout, samples the host's /proc/stat meanwhile (client-saturation
evidence) and summarises the JSON report (levels, request counts, turns, scheduler delays).
Standard library only. Exit status: GuideLLM's, 124 on timeout, 127 when it cannot start, 3 when
it exited 0 but left no readable JSON report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXIT_TIMEOUT = 124
EXIT_NOT_STARTED = 127
EXIT_NO_REPORT = 3
SCHEDULER_FIELDS = (
    "queued_time_avg",
    "request_start_delay_avg",
    "request_targeted_start_delay_avg",
    "resolve_start_delay_avg",
    "finalized_delay_avg",
    "processed_delay_avg",
)


def read_cpu_times() -> tuple[int, int]:
    """Return (total, idle) jiffies of all CPUs from /proc/stat (idle includes iowait)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]), idle


def busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    total = after[0] - before[0]
    if total <= 0:
        return None
    return round(100.0 * (total - (after[1] - before[1])) / total, 1)


class CpuSampler(threading.Thread):
    """Sample the host's busy percentage every `interval` seconds until stopped."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        previous = read_cpu_times()
        while not self._stop_event.wait(self.interval):
            current = read_cpu_times()
            value = busy_pct(previous, current)
            if value is not None:
                self.samples.append(value)
            previous = current

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def kill_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Terminate the process group of proc (GuideLLM and its worker processes)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(path: Path, lines: int = 15) -> list[str]:
    try:
        data = path.read_bytes()[-16384:]
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def last_error(lines: list[str]) -> str | None:
    """The last line of a log tail that reads like a raised exception ("FooError: text")."""
    for line in reversed(lines):
        head = line.strip().split(":", 1)[0]
        if head and " " not in head and head.endswith(("Error", "Exception", "Exit", "Interrupt")):
            return line.strip()[:500]
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def summarize_benchmark(bench: dict[str, Any]) -> dict[str, Any]:
    """Pick the fields the harness needs from one GuideLLM benchmark (0.5 and 0.8 layouts)."""
    strategy = (bench.get("config") or {}).get("strategy") or {}
    sched = bench.get("scheduler_metrics") or {}
    metrics = bench.get("metrics") or {}
    totals = metrics.get("request_totals") or {}
    made = sched.get("requests_made") or {}
    summary: dict[str, Any] = {
        "strategy": strategy.get("type_"),
        "streams": strategy.get("streams", strategy.get("max_concurrency")),
        "worker_count": strategy.get("worker_count"),
        "duration_s": _number(bench.get("duration")),
        "requests": {key: totals.get(key) for key in ("successful", "errored", "incomplete", "total")},
        "requests_made": {key: made.get(key) for key in ("successful", "errored", "incomplete", "total")},
        "scheduler": {key: _number(sched.get(key)) for key in SCHEDULER_FIELDS},
    }
    generation_delay = sched.get("generation_delay")
    if isinstance(generation_delay, dict):
        summary["scheduler"]["generation_delay_mean"] = _number(generation_delay.get("mean"))
        p95 = (generation_delay.get("percentiles") or {}).get("p95")
        summary["scheduler"]["generation_delay_p95"] = _number(p95)
    turns = metrics.get("turns")
    if isinstance(turns, list):
        # 0.8: one entry per turn index with its own request totals.
        summary["turns"] = {
            str(turn.get("turn_index")): (turn.get("request_totals") or {}).get("successful")
            for turn in turns
            if isinstance(turn, dict)
        }
    warnings = bench.get("warnings")
    if isinstance(warnings, list):
        summary["warnings"] = [w.get("code") for w in warnings if isinstance(w, dict)]
    return summary


def summarize_report(path: Path) -> dict[str, Any]:
    """Read a GuideLLM JSON report; raise ValueError naming the file when it is not one."""
    try:
        report = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON report ({err})") from err
    if not isinstance(report, dict) or not isinstance(report.get("benchmarks"), list):
        raise ValueError(f"{path}: JSON without a 'benchmarks' list: not a GuideLLM report")
    metadata = report.get("metadata") or {}
    return {
        "format_version": metadata.get("version"),
        "guidellm_version": metadata.get("guidellm_version"),
        "bytes": path.stat().st_size,
        "benchmarks": [summarize_benchmark(b) for b in report["benchmarks"] if isinstance(b, dict)],
    }


def client_evidence(
    args: argparse.Namespace,
    cpu_before: tuple[int, int],
    cpu_after: tuple[int, int],
    samples: list[float],
    wall_s: float,
    child_cpu_s: float,
    load_before: tuple[float, float, float],
    report: dict[str, Any] | None,
) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    host_busy = busy_pct(cpu_before, cpu_after)
    cores_used = round(child_cpu_s / wall_s, 2) if wall_s > 0 else None
    reasons: list[str] = []
    if host_busy is not None and host_busy >= args.busy_threshold:
        reasons.append(f"loadgen host CPU {host_busy}% busy on average (threshold {args.busy_threshold}%)")
    delays = [
        b["scheduler"].get("request_start_delay_avg")
        for b in (report or {}).get("benchmarks", [])
        if b["scheduler"].get("request_start_delay_avg") is not None
    ]
    if delays and max(delays) > args.start_delay_threshold:
        reasons.append(
            f"GuideLLM started requests {max(delays):.3f} s late on average "
            f"(threshold {args.start_delay_threshold} s)"
        )
    ordered = sorted(samples)
    return {
        "cores": cores,
        "cpu_busy_pct": host_busy,
        "cpu_busy_pct_max": max(samples) if samples else None,
        "cpu_busy_pct_p90": ordered[int(0.9 * (len(ordered) - 1))] if ordered else None,
        "cpu_samples": len(samples),
        "cpu_sample_interval_s": args.sample_interval,
        "loadavg_1m_before": load_before[0],
        "loadavg_1m_after": os.getloadavg()[0],
        "guidellm_cpu_s": round(child_cpu_s, 2),
        "guidellm_cores_used": cores_used,
        "guidellm_cpu_pct_of_host": round(100.0 * cores_used / cores, 1) if cores_used is not None else None,
        "saturated_suspect": bool(reasons),
        "saturated_reasons": reasons,
    }


def run(args: argparse.Namespace, argv: list[str]) -> tuple[int, dict[str, Any]]:
    json_path, log_path = Path(args.json), Path(args.log)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    # A report left by an earlier attempt must not pass for this run's.
    with contextlib.suppress(FileNotFoundError):
        json_path.unlink()
    result: dict[str, Any] = {"json_path": str(json_path), "log_path": str(log_path)}
    started = datetime.now(timezone.utc)
    load_before = os.getloadavg()
    cpu_before = read_cpu_times()
    sampler = CpuSampler(args.sample_interval)
    t0 = time.monotonic()
    reason = None
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as err:
            reason = f"cannot start {argv[0]}: {err}"
            return EXIT_NOT_STARTED, result | {"rc": EXIT_NOT_STARTED, "reason": reason, "report": None}

        def forward(signum: int, _frame: Any) -> None:
            kill_group(proc, grace_s=5.0)
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        sampler.start()
        try:
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            rc = EXIT_TIMEOUT
            reason = f"GuideLLM did not finish within {args.timeout:.0f} s (duration + margin): killed"
    sampler.stop()
    wall_s = time.monotonic() - t0
    cpu_after = read_cpu_times()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report: dict[str, Any] | None = None
    if rc == 0 or json_path.exists():
        try:
            report = summarize_report(json_path)
        except ValueError as err:
            if rc == 0:
                rc, reason = EXIT_NO_REPORT, f"GuideLLM exited 0 but wrote no usable report: {err}"
    tail = log_tail(log_path) if rc != 0 else []
    if rc != 0 and reason is None:
        cause = last_error(tail)
        reason = f"GuideLLM exited with status {rc}" + (f": {cause}" if cause else "") + f" (log: {log_path})"
    result |= {
        "rc": rc,
        "reason": reason,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "ended_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "wall_s": round(wall_s, 2),
        "report": report,
        "client": client_evidence(
            args,
            cpu_before,
            cpu_after,
            sampler.samples,
            wall_s,
            usage.ru_utime + usage.ru_stime,
            load_before,
            report,
        ),
        "log_tail": tail,
    }
    return rc, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="report path GuideLLM is told to write")
    parser.add_argument("--log", required=True, help="file that receives GuideLLM's console output")
    parser.add_argument("--timeout", type=float, required=True, help="seconds before GuideLLM is killed")
    parser.add_argument("--sample-interval", type=float, default=1.0)
    parser.add_argument("--busy-threshold", type=float, default=90.0)
    parser.add_argument("--start-delay-threshold", type=float, default=0.1)
    parser.add_argument("--secret-file", help="file removed after the run (a private scenario file)")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- guidellm argv")
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        parser.error("no GuideLLM command given after --")
    try:
        rc, result = run(args, argv)
    finally:
        if args.secret_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.secret_file)
    print(json.dumps(result, sort_keys=True))
    return rc


if __name__ == "__main__":
    sys.exit(main())
