"""One analysis, computed: the tidy table with verdicts, the cell statistics, the deltas against the baseline
and the peak table. Pure: kvbench.outputs writes what this computes, kvbench.report describes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kvbench.deltas import baseline_deltas
from kvbench.naming import DEFAULT_ORDERING, Ordering
from kvbench.peaks import add_statistics, peak_table
from kvbench.stats import StatsOptions, cell_stats, usable
from kvbench.validity import Thresholds, evaluate, with_verdicts


@dataclass(frozen=True)
class Analysis:
    frame: pd.DataFrame  # every row, with its verdict (complete_metrics.csv)
    validity: pd.DataFrame  # every check of every row (validity.csv)
    used: pd.DataFrame  # the rows peaks and deltas use: ok, and not invalid unless include_invalid
    cells: pd.DataFrame  # kvbench.stats.cell_stats of `used`
    deltas: pd.DataFrame  # delta_vs_baseline.csv
    peaks: pd.DataFrame  # peak_throughput_all.csv
    baseline: str
    options: StatsOptions
    include_invalid: bool

    def run_max_n(self, run: str) -> int:
        """The most repetitions any level of `run` has."""
        mine = self.cells[self.cells["run"] == run] if not self.cells.empty else self.cells
        return int(mine["n"].max()) if not mine.empty else 0


def analyse(
    frame: pd.DataFrame,
    baseline: str,
    options: StatsOptions | None = None,
    thresholds: Thresholds | None = None,
    include_invalid: bool = False,
    ordering: Ordering = DEFAULT_ORDERING,
) -> Analysis:
    """Judge every row, then compute cell statistics, deltas and peaks from the rows that may be used."""
    opts = options or StatsOptions()
    validity = evaluate(frame, thresholds)
    judged = with_verdicts(frame, validity)
    used = usable(judged, include_invalid=include_invalid)
    cells = cell_stats(used, confidence=opts.confidence)
    deltas = baseline_deltas(used, baseline, opts)
    peaks = add_statistics(peak_table(used, baseline, ordering), cells, deltas, validity)
    return Analysis(judged, validity, used, cells, deltas, peaks, baseline, opts, include_invalid)
