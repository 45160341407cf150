"""Outputs beyond the tidy table: per-replica routing (replicas.csv, routing.csv) where points ran on
several servers, and the disk tiers the setup flagged as far below their expected speed; one report section.
Pure apart from reading through kvbench.ingest: the caller writes the tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from kvbench.disk_tier import flagged_lines
from kvbench.ingest import IngestResult
from kvbench.ingest.run_extras import read_run_extras
from kvbench.replicas import replica_table, routing_summary

REPLICAS_CSV = "replicas.csv"
ROUTING_CSV = "routing.csv"


@dataclass
class Extras:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    section: str | None = None


def _share(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.0%}"


def run_extras(ingested: IngestResult, warn: Callable[[str], None]) -> Extras:
    """replicas.csv and routing.csv when any point had more than one server; the report section."""
    frames, routes, disk_lines = [], [], []
    for run in ingested.runs:
        extras = read_run_extras(run.path, warn)
        if extras is None:
            continue
        table = replica_table(extras.points)
        if not table.empty and table.groupby(["scenario", "concurrency", "repetition"]).size().max() > 1:
            frames.append(table.assign(run=run.path.name))
            routes.append(routing_summary(table).assign(run=run.path.name))
        disk_lines += [f"`{run.path.name}`: {line}" for line in flagged_lines(extras.disk_tiers)]
    result = Extras()
    lines: list[str] = []
    if frames:
        replicas, routing = pd.concat(frames, ignore_index=True), pd.concat(routes, ignore_index=True)
        result.tables = {REPLICAS_CSV: replicas, ROUTING_CSV: routing}
        lines += [
            "Requests and prefix-cache hit rates per replica (the servers' own /metrics over each point; "
            f"`{REPLICAS_CSV}`, `{ROUTING_CSV}`). An even spread has a largest share of 1/replicas; a "
            "prefix-aware router that keeps each prefix on one replica shows higher per-replica hit rates.",
            "",
            "| run | scenario | concurrency | rep. | replicas | largest share | hit rate | per replica |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in routing.itertuples(index=False):
            lines.append(
                f"| {r.run} | {r.scenario} | {r.concurrency} | {r.repetition} | {r.replicas} | "
                f"{_share(r.max_request_share)} | {_share(r.hit_rate_pooled)} | "
                f"{_share(r.hit_rate_min)} to {_share(r.hit_rate_max)} |"
            )
    if disk_lines:
        lines += ["", "**Disk tiers far below their expected speed (manifest `disk_tiers`):**", ""]
        lines += [f"- {line}" for line in disk_lines]
    if lines:
        result.section = "## Replicas and disk tiers\n\n" + "\n".join(lines).strip()
    return result
