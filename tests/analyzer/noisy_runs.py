"""Run directories with repetitions whose throughput varies as real repetitions do, for the statistics tests.

Every record is written by the one record writer (`kvbench plan`, `kvbench record ...`, through
tests/records/builders.py) and every result is the real GuideLLM sample report (0.8.1 unless told) of the
point's level; only its output throughput is scaled: by the scenario's true effect times
(1 + cv * a standard normal draw) per point, drawn from a numpy Generator with a fixed seed. Scenarios can
also be given evidence of a treatment that never engaged (external prefix-cache hits that stayed at zero,
an index that stayed empty) or a saturated load generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.records.builders import (
    COUNTERS_BEFORE,
    checked,
    counters_after,
    plan_run,
    point_outcome,
    record,
    sample_report,
    write_metrics,
    write_zst_json,
)


@dataclass(frozen=True)
class Noise:
    """How the canned sweep fills each point."""

    seed: int
    cv: float = 0.03
    effects: Mapping[str, float] = field(default_factory=dict)  # scenario -> true throughput factor
    cv_of: Mapping[str, float] = field(default_factory=dict)  # scenario -> its own CV
    zero_counters: frozenset[str] = frozenset()  # scenarios whose external prefix-cache hits stay at 0
    empty_index: frozenset[str] = frozenset()  # scenarios whose index holds no key after a point
    saturated: frozenset[str] = frozenset()  # scenarios whose load generator was saturated
    repetitions_of: Mapping[str, int] = field(default_factory=dict)  # scenario -> repetitions to run
    report_version: str = "0.8.1"  # the GuideLLM sample report written as each point's result


def _scale(report: dict[str, Any], factor: float) -> None:
    for summary in report["benchmarks"][0]["metrics"]["output_tokens_per_second"].values():
        if isinstance(summary, dict) and "mean" in summary:
            summary["mean"] *= factor


def _run_point(run_dir: Path, point: Mapping[str, Any], noise: Noise, rng: np.random.Generator) -> None:
    scenario = point["scenario"]
    point_dir = run_dir / point["dir"]
    report = sample_report(noise.report_version, point["concurrency"], point["seed"])
    cv = noise.cv_of.get(scenario, noise.cv)
    _scale(report, noise.effects.get(scenario, 1.0) * (1.0 + cv * rng.standard_normal()))
    write_zst_json(point_dir / "guidellm.json.zst", report)
    after = counters_after(point["concurrency"], 0)
    if scenario in noise.zero_counters:
        after["external_prefix_cache_hits"] = COUNTERS_BEFORE["external_prefix_cache_hits"]
    write_metrics(point_dir, "server-1", COUNTERS_BEFORE, after)
    keys = 0 if scenario in noise.empty_index else point["concurrency"]
    outcome = point_outcome(servers=["server-1"], index_keys_before=0, index_keys_after=keys)
    if scenario in noise.saturated:
        outcome["guidellm"]["client"] = {"cores": 2, "cpu_busy_pct": 99.4, "saturated_suspect": True}
    checked(record("point", run_dir, ["--point", point["id"]], outcome))


def noisy_run(results_dir: Path, request: Mapping[str, Any], noise: Noise) -> Path:
    """A finished run: plan, every supported point (up to the scenario's repetitions), scenario records and
    the manifest, all through `kvbench record`."""
    plan, run_dir = plan_run(results_dir, request)
    rng = np.random.default_rng(noise.seed)
    checked(record("manifest", run_dir, [], {"status": "running"}))
    by_id = {p["id"]: p for p in plan["points"]}
    for segment in plan["schedule"]:
        scenario = segment["scenario"]
        for point_id in segment["points"]:
            point = by_id[point_id]
            if point["repetition"] > noise.repetitions_of.get(scenario, point["repetition"]):
                continue
            (run_dir / point["dir"] / "metrics").mkdir(parents=True, exist_ok=True)
            if segment["supported"]:
                _run_point(run_dir, point, noise, rng)
            else:
                checked(
                    record("point", run_dir, ["--point", point_id], point_outcome("skipped", "unsupported"))
                )
        notes = {"status": "ran" if segment["supported"] else "skipped", "server_starts": 1}
        checked(record("scenario", run_dir, ["--scenario", scenario], notes))
    outcome = {"status": "complete", "harness": {"commit": "0" * 40, "dirty": False}, "versions": {}}
    checked(record("manifest", run_dir, [], outcome))
    return run_dir
