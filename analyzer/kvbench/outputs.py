"""Write everything `kvbench analyze` produces into one directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kvbench.ingest import IngestResult
from kvbench.peaks import models_without_baseline, peak_table
from kvbench.plots import draw_all
from kvbench.report import write_report
from kvbench.table import build_table, ok_rows

METRICS_CSV = "complete_metrics.csv"
PEAKS_CSV = "peak_throughput_all.csv"


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


def write_outputs(
    ingested: IngestResult,
    out: Path,
    baseline: str,
    figures: bool,
    warn: Callable[[str], None],
) -> Written:
    out.mkdir(parents=True, exist_ok=True)
    frame = build_table(ingested.records, warn=_Warn(warn))  # type: ignore[arg-type]
    peaks = peak_table(frame, baseline)
    written = Written(ok_rows=len(ok_rows(frame)))
    if not peaks.empty:
        if baseline not in set(peaks["scenario"]):
            warn(f"kvbench: warning: baseline scenario {baseline!r} is not in the results; no deltas")
        else:
            missing = models_without_baseline(peaks, baseline)
            if missing:
                warn(f"kvbench: warning: no {baseline!r} results for {', '.join(missing)}; no deltas there")
    frame.to_csv(out / METRICS_CSV, index=False)
    peaks.to_csv(out / PEAKS_CSV, index=False)
    written.paths += [out / METRICS_CSV, out / PEAKS_CSV]
    drawn = draw_all(frame, peaks, out, baseline) if figures else []
    written.paths += drawn
    written.paths.append(write_report(out, frame, peaks, baseline, drawn, ingested.bad, ingested.files_read))
    return written
