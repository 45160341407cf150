"""Everything `kvbench analyze` and `kvbench compare` produce, built from what was read and written through
kvbench.render."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kvbench.analysis import analyse
from kvbench.capacity_outputs import write_capacity
from kvbench.compare import BOTH, RunComparison
from kvbench.compare_report import compare_markdown
from kvbench.deltas import is_true
from kvbench.errors import InputError
from kvbench.heatmap import delta_grid
from kvbench.ingest import IngestResult
from kvbench.ingest.timing import RunTiming, is_run_dir, read_run_timing
from kvbench.metrics_plots import add_evidence_figures
from kvbench.naming import Ordering, safe_filename
from kvbench.peaks import models_without_baseline
from kvbench.plots import draw_all
from kvbench.render import write_atomically
from kvbench.report import report_text
from kvbench.report_html import REPORT_HTML, report_html
from kvbench.run_extras import run_extras
from kvbench.stats import StatsOptions
from kvbench.table import build_table, ok_rows
from kvbench.timing_report import TIMING_CSV, run_rows, timing_frame, timing_section
from kvbench.validity import Thresholds

METRICS_CSV = "complete_metrics.csv"
PEAKS_CSV = "peak_throughput_all.csv"
DELTAS_CSV = "delta_vs_baseline.csv"
VALIDITY_CSV = "validity.csv"
REPORT = "report.md"
COMPARE_CSV = "compare_deltas.csv"
COMPARE_REPORT = "compare.md"
COMPARE_HEATMAP = "compare_heatmap"


@dataclass
class Written:
    paths: list[Path] = field(default_factory=list)
    ok_rows: int = 0


class _Warn:
    """Adapter so build_table can print notes through the CLI's reporter."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit

    def write(self, text: str) -> int:
        if text.strip():
            self.emit(text.rstrip("\n"))
        return len(text)

    def flush(self) -> None:
        return None


def ordering_of(ingested: IngestResult) -> Ordering:
    """Runs in the order read; model sizes and scenario order from the runs' manifests (or plans)."""
    sizes = {run.model: run.params_b for run in ingested.runs if run.model and run.params_b is not None}
    scenario_lists = [run.scenarios for run in ingested.runs]
    runs = [str(record.get("run") or "") for record in ingested.records]
    return Ordering.from_runs(sizes, scenario_lists, runs)


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    write_atomically(path, frame.to_csv(index=False).encode())
    return path


def table_of(ingested: IngestResult, warn: Callable[[str], None]) -> tuple[pd.DataFrame, Ordering]:
    """The tidy table of what was read, in report order."""
    ordering = ordering_of(ingested)
    return build_table(ingested.records, ordering, warn=_Warn(warn)), ordering  # type: ignore[arg-type]


def write_outputs(
    ingested: IngestResult,
    out: Path,
    baseline: str,
    figures: bool,
    warn: Callable[[str], None],
    options: StatsOptions | None = None,
    thresholds: Thresholds | None = None,
    include_invalid: bool = False,
) -> Written:
    out.mkdir(parents=True, exist_ok=True)
    frame, ordering = table_of(ingested, warn)
    result = analyse(frame, baseline, options, thresholds, include_invalid, ordering)
    peaks = result.peaks
    written = Written(ok_rows=len(ok_rows(frame)))
    if not peaks.empty:
        if baseline not in set(peaks["scenario"]):
            judged = set(result.frame.loc[result.frame["verdict"] == "invalid", "scenario"])
            why = " (its points were judged invalid)" if baseline in judged else ""
            warn(f"kvbench: warning: baseline scenario {baseline!r} is not in the results{why}; no deltas")
        else:
            missing = models_without_baseline(peaks, baseline)
            if missing:
                warn(f"kvbench: warning: no {baseline!r} results for {', '.join(missing)}; no deltas there")
    invalid = int(((result.validity["status"] == "ok") & (result.validity["verdict"] == "invalid")).sum())
    if invalid:
        left = "included, marked (--include-invalid)" if include_invalid else "left out of peaks and deltas"
        warn(f"kvbench: warning: {invalid} measured point(s) judged invalid, {left}; see {VALIDITY_CSV}")
    written.paths += [
        _write_csv(out / METRICS_CSV, result.frame),
        _write_csv(out / PEAKS_CSV, peaks),
        _write_csv(out / DELTAS_CSV, result.deltas),
        _write_csv(out / VALIDITY_CSV, result.validity),
    ]
    drawn = draw_all(result.used, peaks, out, baseline, ordering, result.cells) if figures else {}
    if figures:  # hit rates, CPU saturation, energy per token from the evidence columns
        add_evidence_figures(drawn, result.used, peaks, out, ordering)
    written.paths += [path for paths in drawn.values() for path in paths]
    timings = run_timings(ingested, warn)
    if timings:
        rows = [row for timing in timings for row in run_rows(timing)]
        written.paths.append(_write_csv(out / TIMING_CSV, timing_frame(rows)))
    timing = timing_section(timings) if timings else None
    capacity = write_capacity(ingested, result, out, figures, ordering, warn)
    written.paths += capacity.paths
    text = report_text(result, drawn, ingested.bad, ingested.files_read, ordering, timing, capacity.section)
    # Per-replica routing and flagged disk tiers of kvbench run directories (none: nothing added).
    extras = run_extras(ingested, warn)
    written.paths += [_write_csv(out / name, frame) for name, frame in extras.tables.items()]
    if extras.section:
        text = text.rstrip("\n") + "\n\n" + extras.section + "\n"
    write_atomically(out / REPORT, text.encode())
    written.paths.append(out / REPORT)
    # report.html: the same report as one self-contained page with interactive charts.
    write_atomically(out / REPORT_HTML, report_html(result, text, out, ordering).encode())
    written.paths.append(out / REPORT_HTML)
    return written


def run_timings(ingested: IngestResult, warn: Callable[[str], None]) -> list[RunTiming]:
    """The time accounts of the kvbench run directories read (other layouts have none)."""
    timings = []
    for run in ingested.runs:
        if is_run_dir(run.path):
            try:
                timing = read_run_timing(run.path)
            except InputError as exc:
                warn(f"kvbench: warning: no timing for {run.path}: {exc}")
                continue
            for problem in timing.problems:
                warn(f"kvbench: warning: timing: {problem}")
            timings.append(timing)
    return timings


def _compare_heatmaps(result: RunComparison, out: Path) -> list[Path]:
    """Per model: scenarios x (levels, peak), the change of B against A; not significant cells hatched."""
    cells = result.deltas[result.deltas["present_in"] == BOTH]
    models = list(dict.fromkeys(cells["model"]))
    paths = []
    for model in models:
        mine = cells[cells["model"] == model]
        scenarios = list(dict.fromkeys(mine["scenario"]))
        levels = sorted({int(c) for c in mine["concurrency"] if str(c) != "peak"})
        columns: list[object] = [*levels, "peak"]
        shape = (len(scenarios), len(columns))
        values, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        significant = np.full(shape, None, dtype=object)
        index = {(s, str(c)): (i, j) for i, s in enumerate(scenarios) for j, c in enumerate(columns)}
        for _, row in mine.iterrows():
            i, j = index[(row["scenario"], str(row["concurrency"]))]
            values[i, j], low[i, j], high[i, j] = row["delta_pct"], row["ci_low_pct"], row["ci_high_pct"]
            significant[i, j] = is_true(row["significant"]) if not pd.isna(row["p_adjusted"]) else None
        name = (
            f"{COMPARE_HEATMAP}.png" if len(models) == 1 else f"{COMPARE_HEATMAP}_{safe_filename(model)}.png"
        )
        paths.append(
            delta_grid(
                values,
                significant,
                scenarios,
                [f"c={c}" if c != "peak" else "peak" for c in columns],
                out / name,
                title=f"{model}: {result.b.run} vs {result.a.run} (%, 95 % interval)",
                colour_label="% change of B against A",
                axis_labels=("Cell", "Scenario"),
                low=low,
                high=high,
            )
        )
    return paths


def write_compare(result: RunComparison, out: Path, figures: bool = True) -> str:
    """compare_deltas.csv, the heatmap(s) and compare.md into `out`; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / COMPARE_CSV, result.deltas)
    drawn = _compare_heatmaps(result, out) if figures else []
    text = compare_markdown(result, [path.name for path in drawn])
    write_atomically(out / COMPARE_REPORT, text.encode())
    return text
