"""Where a sweep's time went: the run's phases made into one timeline without overlaps. Pure.

Times in the records are UTC ISO 8601 strings (``2026-11-29T14:37:16.123456Z``; whole seconds in older
records); here they become unix seconds. Phases nest (a point holds its cache reset and GuideLLM's
measured window; a deployment holds the server's start). The timeline gives every instant to the innermost
phase that covers it, so a parent keeps only the time its children leave; an instant no phase covers is
``unaccounted``. The rows therefore never overlap and add up to the run's wall time.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

UNACCOUNTED = "unaccounted"
# Between two invocations of the sweep (a resumed run): nothing ran, and it is not an overhead of the harness.
IDLE = "idle"
MEASURED = "measured"
# Phase depth: a deeper phase wins the instants it shares with a shallower one. Unknown phases sit at 3.
DEPTH = {
    "session": 0,
    "setup": 1,
    "scenario": 1,
    "teardown": 1,
    "deploy": 2,
    "scenario_stop": 2,
    "point": 2,
    "server_start": 3,
    "cache_reset": 3,
    "benchmark": 3,
    "collection": 3,
    "guidellm_startup": 4,
    "warmup": 4,
    "measured": 4,
    "cooldown": 4,
    "drain": 4,
    "guidellm_exit": 4,
}
POINT_ID = re.compile(r"^(?P<scenario>[^/]+)/c(?P<concurrency>\d+)-r(?P<repetition>\d+)$")


def seconds(stamp: str | float | int | None) -> float | None:
    """Unix seconds of a record's UTC timestamp (ISO 8601 with Z, or a number); None when absent or bad."""
    if stamp is None or isinstance(stamp, bool):
        return None
    if isinstance(stamp, int | float):
        return float(stamp)
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Span:
    phase: str
    start: float
    end: float
    scenario: str | None = None
    point: str | None = None

    @property
    def depth(self) -> int:
        return DEPTH.get(self.phase, 3)


@dataclass(frozen=True)
class Row:
    """One row of sweep_timing.csv: [start, start + seconds) belongs to this phase alone."""

    run: str
    scenario: str | None
    concurrency: int | None
    repetition: int | None
    phase: str
    start: float
    seconds: float
    point: str | None = None

    def as_csv(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "scenario": self.scenario or "",
            "concurrency": "" if self.concurrency is None else self.concurrency,
            "repetition": "" if self.repetition is None else self.repetition,
            "phase": self.phase,
            "start": iso(self.start),
            "seconds": round(self.seconds, 3),
        }


def guidellm_phases(report: Any, process: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """GuideLLM's own phases of a point, from its report and the process's span (``process``: start, end).

    The benchmark's start_time/end_time bound the window GuideLLM measured, warmup_duration and
    cooldown_duration its edges that the statistics leave out; the scheduler's start/end bound the requests
    in flight (a drain after the window). Before the scheduler: GuideLLM's start-up and data preparation;
    after it: writing the report and exiting. Empty where the report has no such times.
    """
    try:
        bench = report["benchmarks"][0]
        start, end = float(bench["start_time"]), float(bench["end_time"])
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    warm = float(bench.get("warmup_duration") or 0.0)
    cool = float(bench.get("cooldown_duration") or 0.0)
    state = bench.get("scheduler_state") or {}
    sched_start = seconds(state.get("start_time")) or start
    sched_end = max(seconds(state.get("end_time")) or end, end)
    spans = {
        "warmup": (start, start + warm),
        MEASURED: (start + warm, end - cool),
        "cooldown": (end - cool, end),
        "drain": (end, sched_end),
    }
    proc_start = seconds((process or {}).get("start"))
    proc_end = seconds((process or {}).get("end"))
    # The report's clock and the process's are the load generator's; a window outside the process's span
    # (whole-second stamps aside) means they are not, and nothing is derived rather than something wrong.
    if (proc_start is not None and sched_start < proc_start - 1) or (
        proc_end is not None and sched_end > proc_end + 1
    ):
        return {}
    if proc_start is not None and proc_start < sched_start:
        spans["guidellm_startup"] = (proc_start, min(sched_start, start))
    if proc_end is not None and proc_end > sched_end:
        spans["guidellm_exit"] = (sched_end, proc_end)
    return {name: {"start": iso(a), "end": iso(b)} for name, (a, b) in spans.items() if b > a}


# vLLM's start-up log lines (checked against vLLM 0.32's CPU build and 0.11-0.14 GPU logs): the engine's
# own account of where its start went. Values are seconds the line reports.
SERVER_STEPS = {
    "weight_loading": re.compile(r"(?:Loading weights took|Model loading took [\d.]+ \w+ and) ([\d.]+) s"),
    "kv_cache_and_warmup": re.compile(
        r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"
    ),
    "compile": re.compile(r"torch\.compile takes ([\d.]+) s in total"),
    "cuda_graphs": re.compile(r"Graph capturing finished in ([\d.]+) sec"),
}
SERVER_BANNER = re.compile(r"version \d+\.\d+")
LOG_CLOCK = re.compile(r" (\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) \[")


def server_startup_breakdown(log_text: str) -> list[dict[str, float]]:
    """Per server start in a vLLM log (one per version banner), the seconds each start-up step reports.

    ``imports_to_banner_s`` is not here (the log has no process start); the caller has the span of the start.
    ``banner_to_serving_s`` is from the banner to "Starting vLLM server", by the log's own clock (1 s steps).
    """
    starts: list[dict[str, float]] = []
    banner_clock: int | None = None
    for line in log_text.splitlines():
        if "api_utils" in line and SERVER_BANNER.search(line) and "█" in line:
            starts.append({})
            banner_clock = _clock(line)
            continue
        if not starts:
            continue
        for step, pattern in SERVER_STEPS.items():
            found = pattern.search(line)
            if found:
                starts[-1][f"{step}_s"] = starts[-1].get(f"{step}_s", 0.0) + float(found.group(1))
        if "Starting vLLM server on" in line and banner_clock is not None:
            clock = _clock(line)
            if clock is not None:
                starts[-1]["banner_to_serving_s"] = float(clock - banner_clock)
    return starts


def _clock(line: str) -> int | None:
    found = LOG_CLOCK.search(line)
    if not found:
        return None
    _, _, h, m, s = (int(g) for g in found.groups())
    return h * 3600 + m * 60 + s


def spans_of_run(timeline: list[dict[str, Any]], points: list[dict[str, Any]]) -> list[Span]:
    """Every phase of a run: timeline.jsonl's entries and each point record's own phases."""
    spans: list[Span] = []
    for entry in timeline:
        start, end = seconds(entry.get("start")), seconds(entry.get("end"))
        if start is not None and end is not None and end > start:
            spans.append(Span(str(entry["phase"]), start, end, entry.get("scenario"), entry.get("point")))
    for record in points:
        point_id = f"{record['scenario']}/c{record['concurrency']:04d}-r{record['repetition']}"
        for name, span in (record.get("phases") or {}).items():
            start, end = seconds(span.get("start")), seconds(span.get("end"))
            if start is not None and end is not None and end > start:
                spans.append(Span(name, start, end, record["scenario"], point_id))
    return spans


def timeline_rows(
    run: str, spans: list[Span], begin: float | None = None, end: float | None = None
) -> list[Row]:
    """The non-overlapping timeline of [begin, end) (default: the spans' extent).

    Every instant goes to the deepest phase covering it (ties: the shortest, then the latest to start);
    uncovered instants are ``unaccounted`` inside a session and ``idle`` between sessions (a resumed run).
    Adjacent pieces of the same phase and point merge into one row.
    """
    if not spans and (begin is None or end is None):
        return []
    lo = min(s.start for s in spans) if begin is None else begin
    hi = max(s.end for s in spans) if end is None else end
    if hi <= lo:
        return []
    has_sessions = any(s.phase == "session" for s in spans)
    cuts = sorted({lo, hi, *(t for s in spans for t in (s.start, s.end) if lo < t < hi)})
    by_start = sorted(spans, key=lambda s: s.start)
    active: list[Span] = []
    taken = 0
    rows: list[Row] = []
    for a, b in itertools.pairwise(cuts):
        while taken < len(by_start) and by_start[taken].start <= a:
            active.append(by_start[taken])
            taken += 1
        active = [s for s in active if s.end > a]
        covering = [s for s in active if s.phase != "session"]
        if covering:
            best = max(covering, key=lambda s: (s.depth, -(s.end - s.start), s.start))
            phase, scenario, point = best.phase, best.scenario, best.point
        else:
            inside = not has_sessions or len(covering) < len(active)
            phase, scenario, point = (UNACCOUNTED if inside else IDLE), None, None
        _append(rows, Row(run, scenario, None, None, phase, a, b - a, point))
    return rows


def _append(rows: list[Row], row: Row) -> None:
    last = rows[-1] if rows else None
    if last and (last.phase, last.point, last.scenario) == (row.phase, row.point, row.scenario):
        rows[-1] = replace(last, seconds=row.start + row.seconds - last.start)
        return
    found = POINT_ID.match(row.point or "")
    if found:
        row = replace(row, concurrency=int(found["concurrency"]), repetition=int(found["repetition"]))
    rows.append(row)


@dataclass(frozen=True)
class Summary:
    """The figures the report and `kvbench status` show, from one run's rows."""

    wall_s: float
    busy_s: float
    measured_s: float
    by_phase_s: dict[str, float]
    points: int
    point_overhead_s: dict[str, float]  # phase -> mean seconds per ok point (outside the measured window)
    switches: int
    switch_overhead_s: dict[str, float]  # phase -> mean seconds per server start (outside points)

    @property
    def efficiency(self) -> float | None:
        return self.measured_s / self.busy_s if self.busy_s > 0 else None

    @property
    def unaccounted_share(self) -> float | None:
        return self.by_phase_s.get(UNACCOUNTED, 0.0) / self.busy_s if self.busy_s > 0 else None

    @property
    def mean_point_overhead_s(self) -> float:
        return sum(self.point_overhead_s.values())

    @property
    def mean_switch_overhead_s(self) -> float:
        return sum(self.switch_overhead_s.values())


POINT_PHASES = {
    "point",
    "cache_reset",
    "benchmark",
    "collection",
    "guidellm_startup",
    "warmup",
    "cooldown",
    "drain",
    "guidellm_exit",
}
SWITCH_PHASES = {"scenario", "deploy", "server_start", "scenario_stop"}


def summarize(rows: list[Row], ok_points: set[str]) -> Summary:
    """Efficiency and overheads: per ok point (its rows but the measured window), per server start
    (the scenario-level rows: deployment, start, stop, bookkeeping). ``idle`` counts in wall, not in busy."""
    by_phase: dict[str, float] = {}
    point_phase: dict[str, float] = {}
    switch_phase: dict[str, float] = {}
    for row in rows:
        by_phase[row.phase] = by_phase.get(row.phase, 0.0) + row.seconds
        if row.point in ok_points and row.phase != MEASURED:
            point_phase[row.phase] = point_phase.get(row.phase, 0.0) + row.seconds
        elif row.point is None and row.phase in SWITCH_PHASES:
            switch_phase[row.phase] = switch_phase.get(row.phase, 0.0) + row.seconds
    wall = sum(r.seconds for r in rows)
    switches = sum(1 for r in rows if r.phase == "server_start") or len(
        {(r.scenario, r.start) for r in rows if r.phase == "deploy"}
    )
    npoints = len(ok_points)
    return Summary(
        wall_s=wall,
        busy_s=wall - by_phase.get(IDLE, 0.0),
        measured_s=sum(r.seconds for r in rows if r.phase == MEASURED and r.point in ok_points),
        by_phase_s=by_phase,
        points=npoints,
        point_overhead_s={k: v / npoints for k, v in point_phase.items()} if npoints else {},
        switches=switches,
        switch_overhead_s={k: v / switches for k, v in switch_phase.items()} if switches else {},
    )
