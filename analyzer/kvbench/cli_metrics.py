"""`kvbench metrics RUN --out DIR [--csv]`: a run's /metrics series and PCP archives as tidy Parquet aligned
with each point's measured window, the per-point summary and the evidence figures (kvbench.metrics_export)."""

from __future__ import annotations

from pathlib import Path

import click

from kvbench.errors import InputError

EXIT_BAD_INPUT = 1


@click.command("metrics")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for series.parquet, pcp.parquet, points.parquet and the evidence figures.",
)
@click.option("--csv", "with_csv", is_flag=True, help="Also write each table as CSV.")
@click.option("--figures/--no-figures", default=True, show_default=True, help="Draw the evidence figures.")
@click.pass_context
def metrics_command(ctx: click.Context, run: Path, out: Path, with_csv: bool, figures: bool) -> None:
    """Extract RUN's pmlogger archives (decompressed first) and /metrics series into tidy tables."""
    from kvbench.metrics_export import collect
    from kvbench.render import write_table

    try:
        result = collect(run)
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (("series", result.series), ("pcp", result.pcp), ("points", result.points)):
            written += write_table(out / name, frame, with_csv)
        if figures:
            from kvbench.metrics_plots import draw_evidence

            written += draw_evidence(result.points, result.series, out)
    except OSError as exc:
        raise click.ClickException(f"cannot write to {out}: {exc.strerror or exc}") from None
    for problem in result.problems:
        click.echo(f"kvbench: {problem}", err=True)
    click.echo(
        f"kvbench: {len(result.points)} point(s), {len(result.series)} series sample(s), "
        f"{len(result.pcp)} PCP value(s); wrote {len(written)} file(s) to {out}"
    )
    ctx.exit(EXIT_BAD_INPUT if result.problems else 0)
