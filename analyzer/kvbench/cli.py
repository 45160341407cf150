"""The `kvbench` command line.

Exit status: 0 when every input was read, 1 when some inputs could not be read (the outputs are still
written from the others) or `--strict` stopped at one, 2 for usage errors.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from kvbench import __version__
from kvbench.cli_options import stats_from, stats_options, thresholds_from, validity_options
from kvbench.errors import BadInput
from kvbench.ingest import IngestResult, StrictStop, Unit, default_jobs, discover, read_all
from kvbench.naming import canonical_scenario

EXIT_OK = 0
EXIT_BAD_INPUT = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kvbench")
def main() -> None:
    """Analyze KV-cache benchmark results offline (GuideLLM 0.5.x-0.8.x result files and trees)."""


class _Reporter:
    """Progress on stderr (only when it is a terminal) and one line per bad input."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._progress = None
        self._task = None

    @contextmanager
    def progress(self, total: int) -> Iterator[None]:
        if self.quiet or not sys.stderr.isatty() or total < 2:
            yield
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        with Progress(
            TextColumn("reading results"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            self._progress = progress
            self._task = progress.add_task("read", total=total)
            try:
                yield
            finally:
                self._progress = None

    def done(self, _item: Unit | BadInput) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(text, err=True)

    def bad(self, bad: BadInput) -> None:
        self.line(bad.line())


def _read(
    ctx: click.Context, paths: tuple[Path, ...], strict: bool, jobs: int, reporter: _Reporter
) -> IngestResult:
    """Discover and read `paths`, reporting bad inputs; exits 1 when --strict stops at one."""
    items = list(discover(list(paths)))
    try:
        with reporter.progress(len(items)):
            return read_all(
                items, strict=strict, on_bad=reporter.bad, on_done=reporter.done, jobs=jobs or default_jobs()
            )
    except StrictStop as stop:
        reporter.line(stop.bad.line())
        reporter.line("kvbench: stopped at the first bad input (--strict); no outputs written")
        ctx.exit(EXIT_BAD_INPUT)
        raise AssertionError("unreachable") from None


@main.command()
@click.argument(
    "results",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
)
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the CSVs, figures and report.md (created if missing).",
)
@click.option(
    "--baseline",
    default="no-offload",
    show_default=True,
    help="Scenario that every other scenario of the same model is compared with.",
)
@click.option("--strict", is_flag=True, help="Stop at the first input that cannot be read (exit 1).")
@click.option("--figures/--no-figures", default=True, show_default=True, help="Draw the PNG figures.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=0),
    default=0,
    help="Processes decoding result files in parallel; 0 (default) = the CPUs, at most 4. "
    "Memory grows with jobs x the largest file.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only print problems.")
@stats_options
@validity_options
@click.pass_context
def analyze(
    ctx: click.Context,
    results: tuple[Path, ...],
    out: Path,
    baseline: str,
    strict: bool,
    figures: bool,
    jobs: int,
    quiet: bool,
    alpha: float,
    correction: str,
    resamples: int,
    seed: int,
    max_error_rate: float,
    min_completed_ratio: float,
    min_concurrency_ratio: float,
    min_window_ratio: float,
    include_invalid: bool,
) -> None:
    """Read GuideLLM results (files, kvbench runs, original-evaluation trees) and write into OUT:
    complete_metrics.csv, peak_throughput_all.csv, delta_vs_baseline.csv, validity.csv, the figures and
    report.md.

    RESULTS are GuideLLM .json, .json.zst or .yaml files, or directories holding them in any of the
    supported layouts.
    """
    baseline = canonical_scenario(baseline)
    options = stats_from(alpha, correction, resamples, seed)
    thresholds = thresholds_from(max_error_rate, min_completed_ratio, min_concurrency_ratio, min_window_ratio)
    reporter = _Reporter(quiet)
    started = time.perf_counter()
    ingested = _read(ctx, results, strict, jobs, reporter)

    # Heavy imports only once there is something to analyze.
    from kvbench.outputs import write_outputs

    read_s = time.perf_counter() - started
    try:
        written = write_outputs(
            ingested, out, baseline, figures, reporter.line, options, thresholds, include_invalid
        )
    except OSError as exc:
        raise click.ClickException(f"cannot write outputs to {out}: {exc.strerror or exc}") from None
    if not quiet:
        ok = written.ok_rows
        reporter.line(
            f"kvbench: read {ingested.files_read} result file(s), {ok} usable row(s); "
            f"{len(ingested.bad)} input(s) could not be read; wrote {len(written.paths)} file(s) to {out} "
            f"(reading {read_s:.1f} s, outputs {time.perf_counter() - started - read_s:.1f} s)"
        )
    ctx.exit(EXIT_BAD_INPUT if ingested.bad else EXIT_OK)


@main.command()
@click.argument("run_a", type=click.Path(exists=True, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "-o",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for compare_deltas.csv, the heatmap(s) and compare.md (created if missing); "
    "without it the comparison is only printed.",
)
@click.option(
    "--figures/--no-figures", default=True, show_default=True, help="Draw the heatmap(s) into --out."
)
@click.option("--jobs", "-j", type=click.IntRange(min=0), default=0, help="Processes reading result files.")
@click.option("--quiet", "-q", is_flag=True, help="Only print problems (and the comparison).")
@stats_options
@validity_options
@click.pass_context
def compare(
    ctx: click.Context,
    run_a: Path,
    run_b: Path,
    out: Path | None,
    figures: bool,
    jobs: int,
    quiet: bool,
    alpha: float,
    correction: str,
    resamples: int,
    seed: int,
    max_error_rate: float,
    min_completed_ratio: float,
    min_concurrency_ratio: float,
    min_window_ratio: float,
    include_invalid: bool,
) -> None:
    """Compare run B with run A cell by cell (model, scenario, concurrency, and each scenario's peak):
    the change of output throughput with its interval, tested and corrected as `analyze` does. Prints the
    comparison as Markdown; with --out also writes compare_deltas.csv, the heatmap(s) and compare.md.

    RUN_A and RUN_B are kvbench run directories (or any result tree holding exactly one run each).
    """
    from kvbench.compare import RunTable, compare_runs
    from kvbench.compare_report import compare_markdown
    from kvbench.outputs import table_of, write_compare

    options = stats_from(alpha, correction, resamples, seed)
    thresholds = thresholds_from(max_error_rate, min_completed_ratio, min_concurrency_ratio, min_window_ratio)
    reporter = _Reporter(quiet)
    tables = []
    bad = False
    for path in (run_a, run_b):
        ingested = _read(ctx, (path,), False, jobs, reporter)
        bad = bad or bool(ingested.bad)
        frame, _ = table_of(ingested, reporter.line)
        runs = sorted({str(r) for r in frame.loc[frame["status"] == "ok", "run"]}) or sorted(
            set(frame["run"])
        )
        if len(runs) != 1:
            found = ", ".join(runs) or "none"
            raise click.UsageError(f"{path} must hold exactly one run to compare (found: {found})")
        tables.append(RunTable(path, runs[0], frame))
    result = compare_runs(tables[0], tables[1], options, thresholds, include_invalid)
    text = write_compare(result, out, figures) if out is not None else compare_markdown(result)
    click.echo(text)
    if out is not None and not quiet:
        reporter.line(f"kvbench: wrote the comparison to {out}")
    ctx.exit(EXIT_BAD_INPUT if bad else EXIT_OK)


def _register_commands() -> None:
    # The harness's planner, record writer and adaptive-repetition decision share the CLI; imported here
    # so `analyze` stays light.
    from kvbench.cli_adapt import adapt_command
    from kvbench.cli_export import export_group
    from kvbench.cli_harness import plan_command, record_group
    from kvbench.cli_metrics import metrics_command
    from kvbench.cli_status import status_command

    main.add_command(plan_command)
    main.add_command(record_group)
    main.add_command(adapt_command)
    main.add_command(export_group)
    main.add_command(metrics_command)
    main.add_command(status_command)


_register_commands()
