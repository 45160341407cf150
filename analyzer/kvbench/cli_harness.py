"""`kvbench plan` and `kvbench record`: the harness's one planner and one record writer, for every target.

Ansible calls these on the controller with its own Python (the harness venv): the preflight builds the plan
once, and each step of the sweep hands what it observed to `kvbench record`, which assembles, validates and
writes the record atomically and checksums it. Errors are one line naming the file or value; exit 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from kvbench.errors import InputError
from kvbench.ingest.records import (
    MANIFEST_FILE,
    PLAN_FILE,
    guidellm_report,
    metrics_snapshots,
    read_optional,
    read_plan,
    read_record,
    read_timeline,
)
from kvbench.ingest.timing import guidellm_document
from kvbench.plan import PlanError, build_plan
from kvbench.records import RecordError
from kvbench.records.assemble import find_point, manifest_record, point_record, scenario_record
from kvbench.render import update_sums, write_json
from kvbench.timing import guidellm_phases

EXIT_USAGE = 2


def _fail(message: str) -> None:
    click.echo(f"kvbench: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _stdin_json(what: str) -> dict[str, Any]:
    try:
        document = json.load(sys.stdin)
    except json.JSONDecodeError as exc:
        _fail(f"the {what} on standard input is not JSON ({exc})")
    if not isinstance(document, dict):
        _fail(f"the {what} on standard input is not a JSON object")
    return document


def recorded_status(run_dir: Path, plan: dict[str, Any]) -> dict[str, str | None]:
    """Each point's recorded status; None where no valid record exists (it is run again)."""
    status: dict[str, str | None] = {}
    for point in plan["points"]:
        try:
            record = read_optional(run_dir / point["dir"] / "point.json", "point")
        except InputError:
            record = None
        status[point["id"]] = record["status"] if record else None
    return status


@click.command("plan")
@click.option("--results-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--write/--no-write", default=True, help="Write plan.json (--no-write: check and print only).")
def plan_command(results_dir: Path, write: bool) -> None:
    """Build the sweep's plan from the request (JSON on standard input), write RESULTS_DIR/<run_id>/plan.json,
    point RESULTS_DIR/latest at it, and print {"plan", "run_dir", "recorded"} as JSON."""
    request = _stdin_json("request")
    try:
        plan = build_plan(request)
    except PlanError as exc:
        _fail(f"bad request: {exc}")
    run_dir = results_dir / plan["run_id"]
    try:
        existing = read_optional(run_dir / PLAN_FILE, "plan")
    except InputError as exc:
        _fail(str(exc))
    if existing and existing["plan_hash"] != plan["plan_hash"]:
        _fail(
            f"{run_dir / PLAN_FILE}: run {plan['run_id']} holds a different experiment "
            f"(plan hash {existing['plan_hash'][:8]}, this request {plan['plan_hash'][:8]}); "
            "choose another run_id or leave it empty"
        )
    if write:
        write_json(run_dir / PLAN_FILE, plan)
        update_sums(run_dir, [run_dir / PLAN_FILE])
        latest = results_dir / "latest"
        tmp = results_dir / f".latest.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(plan["run_id"])
        os.replace(tmp, latest)
    recorded = recorded_status(run_dir, plan) if run_dir.is_dir() else {p["id"]: None for p in plan["points"]}
    click.echo(json.dumps({"plan": plan, "run_dir": str(run_dir.resolve()), "recorded": recorded}))


@click.group("record")
def record_group() -> None:
    """Write one record of a run (the observed outcome as JSON on standard input)."""


def _run_dir_plan(run_dir: Path) -> dict[str, Any]:
    try:
        return read_plan(run_dir)
    except InputError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


@record_group.command("point")
@click.option("--run-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--point", "point_id", required=True, help="The point's id in the plan, e.g. no-offload/c0004-r1."
)
def record_point(run_dir: Path, point_id: str) -> None:
    """Assemble point.json from the plan, the outcome and the files in the point's directory."""
    plan = _run_dir_plan(run_dir)
    outcome = _stdin_json("point outcome")
    try:
        point = find_point(plan, point_id)
        folder = run_dir / point["dir"]
        before, after = metrics_snapshots(folder)
        report_file, seed = guidellm_report(folder)
        process = (outcome.get("phases") or {}).get("benchmark")
        timed = guidellm_phases(guidellm_document(folder), process) if report_file else {}
        record = point_record(plan, point_id, outcome, before, after, seed, report_file, timed)
    except (KeyError, InputError, RecordError) as exc:
        _fail(f"{run_dir}: point {point_id}: {exc}")
    path = folder / "point.json"
    write_json(path, record)
    update_sums(run_dir, [path])
    click.echo(json.dumps({"path": str(path), "status": record["status"], "reason": record["reason"]}))


@record_group.command("scenario")
@click.option("--run-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--scenario", "name", required=True)
def record_scenario(run_dir: Path, name: str) -> None:
    """Write <scenario>/scenario.json: the resolved settings and how the scenario went."""
    plan = _run_dir_plan(run_dir)
    try:
        record = scenario_record(plan, name, _stdin_json("scenario outcome"))
    except (KeyError, RecordError) as exc:
        _fail(f"{run_dir}: scenario {name}: {exc}")
    path = run_dir / name / "scenario.json"
    write_json(path, record)
    update_sums(run_dir, [path])
    click.echo(json.dumps({"path": str(path), "status": record["status"]}))


@record_group.command("manifest")
@click.option("--run-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
def record_manifest(run_dir: Path) -> None:
    """Write manifest.json: what ran, where, with which versions, and the phases so far."""
    plan = _run_dir_plan(run_dir)
    outcome = _stdin_json("manifest outcome")
    try:
        previous = read_optional(run_dir / MANIFEST_FILE, "manifest")
    except InputError:
        previous = None  # a manifest of an older schema is rewritten, not trusted
    try:
        record = manifest_record(plan, outcome, read_timeline(run_dir), previous)
    except RecordError as exc:
        _fail(f"{run_dir}: manifest: {exc}")
    path = run_dir / MANIFEST_FILE
    write_json(path, record)
    update_sums(run_dir, [path])
    click.echo(json.dumps({"path": str(path), "status": record["status"]}))


__all__ = ["plan_command", "read_record", "record_group"]
