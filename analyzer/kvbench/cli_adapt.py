"""`kvbench adapt`: which points of a run still need a repetition (adaptive mode of the sweep).

Reads the run's recorded points through kvbench.ingest, judges them as `kvbench analyze` does, and asks
kvbench.stats.needs_more which (scenario, concurrency) cells have a 95 % interval of the metric still wider
than +/- TARGET % of their mean and fewer than MAX repetitions. Prints one JSON document on stdout:

    {"wider": [{"scenario", "concurrency", "n", "ci_pct", ...}],
     "next_repetition": {"<scenario>/<concurrency>": r}, ...}

`next_repetition` maps each such cell to the repetition number to run next. Exit status 0 (also when some
inputs could not be read: they are listed under `bad_inputs`), 2 for usage errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kvbench.cli_options import alpha_option, thresholds_from, validity_options
from kvbench.settings import Thresholds

THROUGHPUT = "output_tok_s_successful"  # kvbench.stats.THROUGHPUT, named here so the CLI starts light


def decide(
    run_dir: Path,
    target_ci_pct: float,
    max_repetitions: int,
    metric: str,
    confidence: float,
    thresholds: Thresholds,
    include_invalid: bool,
) -> dict[str, Any]:
    """The adapt document for one run directory."""
    from kvbench.ingest import ingest
    from kvbench.stats import metric_column, needs_more
    from kvbench.table import build_table
    from kvbench.validity import evaluate, with_verdicts

    ingested = ingest([run_dir])
    frame = build_table(ingested.records, warn=sys.stderr)
    if not include_invalid:
        frame = with_verdicts(frame, evaluate(frame, thresholds))
    wider = needs_more(frame, target_ci_pct, max_repetitions, metric, confidence)
    runs = sorted({str(r) for r in frame["run"]}) if not frame.empty else []
    return {
        "run_dir": str(run_dir),
        "runs": runs,
        "metric": metric_column(metric),
        "target_ci_pct": target_ci_pct,
        "max_repetitions": max_repetitions,
        "confidence": confidence,
        "wider": wider,
        "next_repetition": {
            f"{w['scenario']}/{int(w['concurrency'])}": int(w["next_repetition"]) for w in wider
        },
        "bad_inputs": [bad.line() for bad in ingested.bad],
    }


@click.command("adapt")
@click.option(
    "--run-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The run directory whose recorded points are read.",
)
@click.option(
    "--target-ci-pct",
    required=True,
    type=click.FloatRange(min=0.0, min_open=True),
    help="Half-width of the interval, in % of the mean, that a cell must reach.",
)
@click.option(
    "--max-repetitions",
    required=True,
    type=click.IntRange(min=1),
    help="No cell gets more repetitions than this (failed ones count).",
)
@click.option(
    "--metric",
    default="output_tokens_per_s",
    show_default=True,
    help=f"Metric whose interval is tested: output_tokens_per_s (= {THROUGHPUT}) or a column of "
    "complete_metrics.csv.",
)
@alpha_option
@validity_options
def adapt_command(
    run_dir: Path,
    target_ci_pct: float,
    max_repetitions: int,
    metric: str,
    alpha: float,
    max_error_rate: float,
    min_completed_ratio: float,
    min_concurrency_ratio: float,
    min_window_ratio: float,
    include_invalid: bool,
) -> None:
    """Print, as JSON, the cells of RUN_DIR whose interval is still wider than the target (adaptive
    repetitions). The sweep runs `next_repetition` of each listed cell, then asks again."""
    from kvbench.stats import metric_column
    from kvbench.table import COLUMNS

    if metric_column(metric) not in COLUMNS:
        raise click.BadParameter(f"{metric!r} is not a metric of the table", param_hint="--metric")
    thresholds = thresholds_from(max_error_rate, min_completed_ratio, min_concurrency_ratio, min_window_ratio)
    document = decide(
        run_dir, target_ci_pct, max_repetitions, metric, 1.0 - alpha, thresholds, include_invalid
    )
    click.echo(json.dumps(document, indent=2))
