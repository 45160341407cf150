"""`kvbench analyze`'s KV-capacity outputs: kv_capacity.csv, one figure per run and the report section, for
the kvbench run directories read (other layouts carry no plan, so no capacity model)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kvbench.analysis import Analysis
from kvbench.capacity_figure import capacity_figure
from kvbench.capacity_report import CAPACITY_CSV, capacity_section, level_frame
from kvbench.errors import InputError
from kvbench.ingest import IngestResult
from kvbench.ingest.capacity import RunCapacity, read_run_capacity
from kvbench.ingest.records import PLAN_FILE
from kvbench.naming import Ordering
from kvbench.plots import run_tag
from kvbench.render import write_atomically


@dataclass
class CapacityOutputs:
    paths: list[Path] = field(default_factory=list)
    section: str | None = None


def run_capacities(ingested: IngestResult, warn: Callable[[str], None]) -> list[RunCapacity]:
    runs = []
    for info in ingested.runs:
        if not (info.path / PLAN_FILE).is_file():
            continue
        try:
            runs.append(read_run_capacity(info.path))
        except InputError as exc:
            warn(f"kvbench: warning: no KV-capacity model for {info.path}: {exc}")
    return runs


def write_capacity(
    ingested: IngestResult,
    result: Analysis,
    out: Path,
    figures: bool,
    ordering: Ordering,
    warn: Callable[[str], None],
) -> CapacityOutputs:
    runs = run_capacities(ingested, warn)
    written = CapacityOutputs()
    if not runs:
        return written
    frames = {run.run: level_frame(run, result.deltas, result.baseline) for run in runs}
    table = pd.concat(frames.values(), ignore_index=True)
    path = out / CAPACITY_CSV
    write_atomically(path, table.to_csv(index=False).encode())
    written.paths.append(path)
    names: dict[str, str] = {}
    if figures:
        tags = [run.run for run in runs]
        for run in runs:
            drawn = capacity_figure(
                run, frames[run.run], result.baseline, ordering, out, run_tag(run.run, tags)
            )
            written.paths.append(drawn)
            names[run.run] = drawn.name
    written.section = capacity_section(runs, frames, result.baseline, names)
    return written
