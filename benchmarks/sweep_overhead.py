#!/usr/bin/env python3
"""Where a sweep's time goes: per-point and per-server-start overhead by phase, from run directories.

    .venv/bin/python benchmarks/sweep_overhead.py RUN_DIR [RUN_DIR ...]
    .venv/bin/python benchmarks/sweep_overhead.py --run [--scenarios no-offload,llm-d-redis] \
        [--concurrency 2,3] [--duration-s 8] [--repetitions 1] [--results DIR]

With --run it first runs the local sweep (sweep.yml on inventory/local, holding /tmp/kvbench-services.lock
as every command that starts services must) and then reports on the run it made. Figures come from the
run's records through kvbench.timing (the same accounting as sweep_timing.csv): the measured window is
GuideLLM's benchmark window; a point's overhead is its wall time outside that window; a server start's
overhead is the scenario-level time outside points (deployment, the server's own start, stop, bookkeeping).
Prints figures only; never asserts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from kvbench.ingest.timing import read_run_timing
from kvbench.timing import IDLE, UNACCOUNTED, server_startup_breakdown, summarize
from kvbench.timing_report import ok_points, run_rows

REPO = Path(__file__).resolve().parents[1]
LOCK = "/tmp/kvbench-services.lock"


def run_sweep(args: argparse.Namespace) -> Path:
    results = Path(args.results or f"/tmp/kvbench-overhead-{int(time.time())}")
    extra = {
        "results_dir": str(results),
        "scenarios": args.scenarios,
        "concurrency": args.concurrency,
        "duration_s": str(args.duration_s),
        "repetitions": str(args.repetitions),
    }
    cmd = ["flock", LOCK, str(REPO / ".venv/bin/ansible-playbook"), "sweep.yml", "-i", "inventory/local"]
    for key, value in extra.items():
        cmd += ["-e", f"{key}={value}"]
    print("running:", " ".join(cmd), flush=True)
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    print(
        f"sweep exited {proc.returncode} after {time.monotonic() - began:.0f} s "
        "(including the wait for the lock)"
    )
    return (results / "latest").resolve()


def report(run_dir: Path) -> None:
    timing = read_run_timing(run_dir)
    rows = run_rows(timing)
    summary = summarize(rows, ok_points(timing))
    busy = summary.busy_s
    print(f"\n== {timing.run} ({run_dir})")
    print(
        f"wall {summary.wall_s:.0f} s (idle {summary.by_phase_s.get(IDLE, 0):.0f} s), busy {busy:.0f} s, "
        f"measured {summary.measured_s:.0f} s over {summary.points} ok point(s): "
        f"efficiency {summary.efficiency or 0:.3f}; unaccounted "
        f"{summary.by_phase_s.get(UNACCOUNTED, 0):.1f} s "
        f"({(summary.unaccounted_share or 0) * 100:.1f} % of busy)"
    )
    print(f"per ok point: {summary.mean_point_overhead_s:.1f} s outside the measured window")
    for phase, value in sorted(summary.point_overhead_s.items(), key=lambda kv: -kv[1]):
        print(f"  {phase:<18} {value:7.2f} s")
    print(f"per server start ({summary.switches}): {summary.mean_switch_overhead_s:.1f} s outside points")
    for phase, value in sorted(summary.switch_overhead_s.items(), key=lambda kv: -kv[1]):
        print(f"  {phase:<18} {value:7.2f} s")
    setup = summary.by_phase_s.get("setup")
    teardown = summary.by_phase_s.get("teardown")
    if setup is not None or teardown is not None:
        print(f"once per run: setup {setup or 0:.1f} s, teardown {teardown or 0:.1f} s")
    for scenario, text in timing.server_logs.items():
        for number, start in enumerate(server_startup_breakdown(text), 1):
            if start:
                steps = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in start.items())
                print(f"  vLLM log, {scenario} start {number}: {steps}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="*", type=Path)
    parser.add_argument("--run", action="store_true", help="run the local sweep first, then report on it")
    parser.add_argument("--scenarios", default="no-offload,llm-d-redis")
    parser.add_argument("--concurrency", default="2,3")
    parser.add_argument("--duration-s", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--results", help="results directory for --run (default: a new one under /tmp)")
    args = parser.parse_args()
    dirs = list(args.run_dirs)
    if args.run:
        dirs.append(run_sweep(args))
    if not dirs:
        parser.error("give run directories, or --run")
    for run_dir in dirs:
        report(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
