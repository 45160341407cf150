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
from kvbench.errors import BadInput
from kvbench.ingest import StrictStop, Unit, default_jobs, discover, read_all
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
) -> None:
    """Read GuideLLM results (files, kvbench runs, original-evaluation trees) and write into OUT:
    complete_metrics.csv, peak_throughput_all.csv, the figures and report.md.

    RESULTS are GuideLLM .json, .json.zst or .yaml files, or directories holding them in any of the
    supported layouts.
    """
    baseline = canonical_scenario(baseline)
    reporter = _Reporter(quiet)
    started = time.perf_counter()
    items = list(discover(list(results)))
    try:
        with reporter.progress(len(items)):
            ingested = read_all(
                items, strict=strict, on_bad=reporter.bad, on_done=reporter.done, jobs=jobs or default_jobs()
            )
    except StrictStop as stop:
        reporter.line(stop.bad.line())
        reporter.line("kvbench: stopped at the first bad input (--strict); no outputs written")
        ctx.exit(EXIT_BAD_INPUT)

    # Heavy imports only once there is something to analyze.
    from kvbench.outputs import write_outputs

    read_s = time.perf_counter() - started
    try:
        written = write_outputs(ingested, out, baseline, figures, warn=reporter.line)
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
