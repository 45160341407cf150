"""sweep_timing.csv and the report's "Sweep timing" section: efficiency, overheads by phase, and a projection
of the full evaluation at the measured overheads. Pure: takes what kvbench.ingest.timing read."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kvbench.ingest.timing import RunTiming
from kvbench.timing import (
    IDLE,
    UNACCOUNTED,
    Row,
    Summary,
    server_startup_breakdown,
    spans_of_run,
    summarize,
    timeline_rows,
)

TIMING_CSV = "sweep_timing.csv"
CSV_COLUMNS = ["run", "scenario", "concurrency", "repetition", "phase", "start", "seconds"]


@dataclass(frozen=True)
class Projection:
    """The full evaluation's shape and the figures taken where this machine cannot tell. Every field is an
    assumption the report names."""

    models: int = 4
    scenarios: int = 8
    levels: int = 8
    window_s: float = 120.0
    # Start to /health of vLLM on one H200 with cached weights, /work/shared/gpu-node/README.md: 89 s for the
    # first start (prefix caching only), 52 s and 60 s for the offload scenarios. The slowest is taken.
    server_start_s: float = 89.0
    # Weights already in the node's cache (no download); installs already done (a rerun of set-up).
    cached_weights: bool = True


def point_id(record: dict) -> str:
    return f"{record['scenario']}/c{record['concurrency']:04d}-r{record['repetition']}"


def run_rows(timing: RunTiming) -> list[Row]:
    """The run's non-overlapping timeline, from its first recorded phase start to its last phase end (the
    session phase spans the whole invocation: preflight to teardown)."""
    return timeline_rows(timing.run, spans_of_run(timing.timeline, timing.points))


def ok_points(timing: RunTiming) -> set[str]:
    return {point_id(p) for p in timing.points if p["status"] == "ok"}


def timing_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([r.as_csv() for r in rows], columns=CSV_COLUMNS)


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _by_phase(overheads: dict[str, float]) -> str:
    parts = sorted(overheads.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {value:.1f} s" for name, value in parts) or "none"


def projection_lines(
    summary: Summary, setup_s: float, repetitions: int, starts_per_scenario: float, assume: Projection
) -> tuple[float, list[str]]:
    """(projected efficiency, the lines stating the arithmetic and each assumption)."""
    points = assume.models * assume.scenarios * assume.levels * repetitions
    switches = assume.models * assume.scenarios * starts_per_scenario
    measured = points * assume.window_s
    switch_other = summary.mean_switch_overhead_s - summary.switch_overhead_s.get("server_start", 0.0)
    overhead = (
        points * summary.mean_point_overhead_s
        + switches * (assume.server_start_s + switch_other)
        + assume.models * setup_s
    )
    efficiency = measured / (measured + overhead)
    lines = [
        f"- Shape: {assume.models} models x {assume.scenarios} scenarios x {assume.levels} levels x "
        f"{repetitions} repetition(s) = {points:,} points of {assume.window_s:.0f} s; "
        f"{switches:,.0f} server starts ({starts_per_scenario:g} per scenario, as this run's schedule).",
        f"- Per point: {summary.mean_point_overhead_s:.1f} s outside the measured window, as measured here "
        "(this 2-core machine runs GuideLLM and the server on the same cores: an upper bound for a load "
        "generator of its own).",
        f"- Per server start: {assume.server_start_s:.0f} s start to /health on the GPU node "
        "(assumed: /work/shared/gpu-node/README.md, the slowest measured start) plus "
        f"{switch_other:.1f} s of deployment, stop and bookkeeping as measured here.",
        f"- Set-up once per model: {setup_s:.0f} s as measured here; "
        + (
            "weights already cached on the nodes (no download), installs done."
            if assume.cached_weights
            else "weights downloaded."
        ),
        f"- Projected: {measured / 3600:,.1f} h measured of {(measured + overhead) / 3600:,.1f} h in all: "
        f"**efficiency {efficiency:.2f}**.",
    ]
    return efficiency, lines


def run_section(timing: RunTiming, assume: Projection | None = None) -> str:
    """The timing section of one run."""
    assume = assume or Projection()
    rows = run_rows(timing)
    if not rows:
        return f"Run `{timing.run}`: no timeline recorded."
    summary = summarize(rows, ok_points(timing))
    lines = [
        f"Run `{timing.run}`: wall {summary.wall_s:,.0f} s"
        + (
            f" ({summary.by_phase_s.get(IDLE, 0):,.0f} s idle between invocations)"
            if IDLE in summary.by_phase_s
            else ""
        )
        + f", measured windows {summary.measured_s:,.0f} s of {summary.points} ok point(s): "
        f"**efficiency {summary.efficiency or 0:.2f}**; unaccounted "
        f"{summary.by_phase_s.get(UNACCOUNTED, 0):,.0f} s ({(summary.unaccounted_share or 0) * 100:.1f} %).",
        "",
        _table(
            ["what", "mean seconds", "by phase"],
            [
                [
                    "per ok point, outside the window",
                    f"{summary.mean_point_overhead_s:.1f}",
                    _by_phase(summary.point_overhead_s),
                ],
                [
                    f"per server start ({summary.switches})",
                    f"{summary.mean_switch_overhead_s:.1f}",
                    _by_phase(summary.switch_overhead_s),
                ],
            ],
        ),
    ]
    breakdown = [
        f"{scenario} #{i + 1}: "
        + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f} s" for k, v in start.items())
        for scenario, text in timing.server_logs.items()
        for i, start in enumerate(server_startup_breakdown(text))
        if start
    ]
    if breakdown:
        lines += ["", "The servers' own start-up account (vLLM log): " + "; ".join(breakdown) + "."]
    plan = timing.plan or {}
    supported = [s for s in plan.get("scenarios", []) if s.get("supported")]
    starts = sum(1 for s in plan.get("schedule", []) if s.get("supported"))
    per_scenario = starts / len(supported) if supported else 1.0
    setup_s = summary.by_phase_s.get("setup", 0.0)
    _, projected = projection_lines(summary, setup_s, int(plan.get("repetitions") or 1), per_scenario, assume)
    lines += ["", "Projection of the full evaluation at these overheads:", *projected]
    return "\n".join(lines)


def timing_section(timings: list[RunTiming]) -> str:
    return "\n\n".join(
        [
            "Every second of each run belongs to one row of `sweep_timing.csv` (nested phases split, gaps "
            "`unaccounted`). The measured window is GuideLLM's benchmark window from its report.",
            *(run_section(t) for t in timings),
        ]
    )
