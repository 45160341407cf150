"""How far a sweep is and when it will end, from its run directory. Pure: takes kvbench.ingest.timing's read.

The ETA is the points left times the mean wall time of a point measured so far, plus the server starts
left times the mean cost of a server start so far (deployment, start, stop and the scenario's bookkeeping).
Before any point has run there is no ETA.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvbench.ingest.timing import RunTiming
from kvbench.timing import SWITCH_PHASES, seconds
from kvbench.timing_report import ok_points, point_id, run_rows


@dataclass(frozen=True)
class Progress:
    run: str
    status: str  # the manifest's: running, complete, interrupted (or planned before the first record)
    total: int
    ok: int
    failed: int
    skipped: int
    left: int
    next_point: str | None
    starts_left: int
    point_s: float | None  # mean wall seconds of a point run so far
    switch_s: float | None  # mean seconds of a server start (outside points) so far
    efficiency: float | None
    last: dict | None  # the point recorded last: scenario, concurrency, repetition, status, reason

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.skipped

    @property
    def eta_s(self) -> float | None:
        if self.left == 0:
            return 0.0
        if self.point_s is None:
            return None
        return self.left * self.point_s + self.starts_left * (self.switch_s or 0.0)


def progress_of(timing: RunTiming) -> Progress:
    plan = timing.plan or {}
    by_id = {point_id(p): p for p in timing.points}
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    for record in by_id.values():
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    # In the schedule's order: the first point without a record is the one running (or next).
    pending = [
        (segment, pid)
        for segment in plan.get("schedule", [])
        for pid in segment["points"]
        if pid not in by_id and segment.get("supported")
    ]
    unsupported_left = sum(
        1
        for s in plan.get("schedule", [])
        if not s.get("supported")
        for pid in s["points"]
        if pid not in by_id
    )
    segments_left = {id(segment) for segment, _ in pending}
    point_walls = [
        seconds(e["end"]) - seconds(e["start"])  # type: ignore[operator]
        for e in timing.timeline
        if e.get("phase") == "point" and seconds(e.get("start")) and seconds(e.get("end"))
    ]
    if not point_walls:  # the first point's timeline line comes after its record
        point_walls = [
            seconds(p["ended_at"]) - seconds(p["started_at"])  # type: ignore[operator]
            for p in timing.points
            if p["status"] != "skipped" and seconds(p.get("started_at")) and seconds(p.get("ended_at"))
        ]
    rows = run_rows(timing)
    starts = sum(1 for r in rows if r.phase == "server_start")
    switch_total = sum(r.seconds for r in rows if r.point is None and r.phase in SWITCH_PHASES)
    measured = sum(r.seconds for r in rows if r.phase == "measured" and r.point in ok_points(timing))
    busy = sum(r.seconds for r in rows if r.phase != "idle")
    last = max(timing.points, key=lambda p: p.get("ended_at") or "", default=None)
    return Progress(
        run=timing.run,
        status=(timing.manifest or {}).get("status", "planned"),
        total=len(plan.get("points", [])),
        ok=counts["ok"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        left=len(pending) + unsupported_left,
        next_point=pending[0][1] if pending else None,
        # The segment of the next point may already serve; counting it errs on the late side.
        starts_left=len(segments_left),
        point_s=sum(point_walls) / len(point_walls) if point_walls else None,
        switch_s=switch_total / starts if starts else None,
        efficiency=measured / busy if busy > 0 and measured > 0 else None,
        last=None
        if last is None
        else {k: last.get(k) for k in ("scenario", "concurrency", "repetition", "status", "reason")},
    )


def duration(value_s: float | None) -> str:
    if value_s is None:
        return "?"
    value = round(value_s)
    hours, rest = divmod(value, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_line(progress: Progress, point: dict | None = None) -> str:
    """One line: the point just recorded (default: the last one), the counts, and the ETA."""
    point = point or progress.last
    width = len(str(progress.total))
    head = f"[{progress.done:>{width}}/{progress.total}]"
    if point:
        head += f" {point['scenario']} c={point['concurrency']} r={point['repetition']} {point['status']:<7}"
    tail = f"ok {progress.ok}, failed {progress.failed}, skipped {progress.skipped}, left {progress.left}"
    eta = "done" if progress.left == 0 else f"ETA {duration(progress.eta_s)}"
    extra = f" (point {progress.point_s:.0f} s" if progress.point_s is not None else ""
    if extra and progress.switch_s is not None:
        extra += f", server start {progress.switch_s:.0f} s"
    extra += ")" if extra else ""
    reason = (
        f" - {str(point['reason'])[:120]}"
        if point and point.get("reason") and point["status"] != "ok"
        else ""
    )
    return f"{head} | {tail} | {eta}{extra}{reason}"
