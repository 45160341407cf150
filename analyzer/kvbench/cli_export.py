"""`kvbench export mlflow`: the command line of kvbench.export_mlflow."""

from __future__ import annotations

from pathlib import Path

import click

from kvbench.errors import InputError


@click.group("export")
def export_group() -> None:
    """Send finished runs to other systems."""


@export_group.command("mlflow")
@click.argument(
    "runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--tracking-uri", required=True, help="MLflow tracking server (http://host:5000) or store URI.")
@click.option(
    "--experiment", default="kvbench", show_default=True, help="MLflow experiment (created if missing)."
)
@click.option(
    "--analysis",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The run's `kvbench analyze` output (one RUN only); default RUN/analysis, else analysed here.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only print problems.")
def mlflow_command(
    runs: tuple[Path, ...], tracking_uri: str, experiment: str, analysis: Path | None, quiet: bool
) -> None:
    """Log kvbench RUN directories to MLflow: one parent run per sweep (the plan's configuration as params,
    peak statistics as metrics, report, figures and CSVs as artifacts) with one nested run per point (its
    configuration as params, its statistics as metrics, its /metrics and PCP series as metric histories).
    Exporting the same run again updates those runs instead of adding new ones. Needs
    `pip install 'kvbench[mlflow]'`.
    """
    from kvbench.export_mlflow import ExportError, MlflowMissing, export_runs
    from kvbench.mlflow_content import run_dirs_of

    if analysis is not None and len(runs) > 1:
        raise click.UsageError("--analysis names one run's analysis: give one RUN with it")
    try:
        done = export_runs(
            run_dirs_of(runs), tracking_uri, experiment, analysis, lambda line: click.echo(line, err=True)
        )
    except (MlflowMissing, ExportError, InputError) as exc:
        raise click.ClickException(str(exc)) from None
    if quiet:
        return
    for run_id, outcomes in done:
        created = sum(o.created for o in outcomes)
        unchanged = sum(o.unchanged for o in outcomes)
        updated = len(outcomes) - created - unchanged
        metrics = sum(o.metrics_logged for o in outcomes)
        click.echo(
            f"kvbench: {run_id}: {len(outcomes)} MLflow run(s) in experiment {experiment!r} "
            f"(parent {outcomes[0].mlflow_run_id}): {created} created, {updated} updated, "
            f"{unchanged} unchanged; {metrics} metric value(s) logged",
            err=True,
        )
