"""`kvbench status RESULTS_DIR`: where a sweep stands, read from its run directory (from another terminal)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kvbench.errors import InputError
from kvbench.ingest.timing import is_run_dir, read_run_timing
from kvbench.status import duration, progress_line, progress_of

EXIT_USAGE = 2


def run_dir_of(path: Path) -> Path:
    """The run directory itself, or RESULTS_DIR/latest (the run the last sweep planned)."""
    if is_run_dir(path):
        return path
    if is_run_dir(path / "latest"):
        return (path / "latest").resolve()
    raise InputError(f"{path}: neither a run directory (no plan.json) nor a results directory with latest/")


@click.command("status")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def status_command(results_dir: Path) -> None:
    """Progress of the sweep in RESULTS_DIR (or a run directory): points done, failed and left, the point
    recorded last, the next one, and the ETA from the phases measured so far."""
    from rich.console import Console
    from rich.table import Table

    try:
        timing = read_run_timing(run_dir_of(results_dir), server_logs=False)
    except InputError as exc:
        click.echo(f"kvbench: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    progress = progress_of(timing)
    console = Console(width=max(100, Console().width), soft_wrap=True)
    table = Table(title=f"run {progress.run}: {progress.status}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row(
        "points",
        f"{progress.done}/{progress.total} recorded: ok {progress.ok}, "
        f"failed {progress.failed}, skipped {progress.skipped}; left {progress.left}",
    )
    if progress.last:
        last = progress.last
        table.add_row(
            "last", f"{last['scenario']} c={last['concurrency']} r={last['repetition']} {last['status']}"
        )
    if progress.next_point and progress.status == "running":
        table.add_row("running or next", progress.next_point)
    table.add_row("server starts left", str(progress.starts_left))
    table.add_row(
        "mean point / server start", f"{duration(progress.point_s)} / {duration(progress.switch_s)}"
    )
    if progress.efficiency is not None:
        table.add_row("efficiency so far", f"{progress.efficiency:.2f} (measured windows / busy time)")
    table.add_row("ETA", "done" if progress.left == 0 else duration(progress.eta_s))
    console.print(table)
    console.print(progress_line(progress), highlight=False, markup=False)
    for problem in timing.problems:
        console.print(f"warning: {problem}", highlight=False, markup=False)
