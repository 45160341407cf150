"""Assemble records from the plan and what the sweep observed. Pure: the caller reads and writes the files.

Both targets hand the same kind of outcome (status, times, evidence) to the same functions, so a point
record means the same thing whether it came from GPU nodes or from a cluster.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from kvbench.disk_tier import disk_tiers
from kvbench.plan.prometheus import delta, vllm_counters
from kvbench.records import SCHEMA_VERSIONS, validate
from kvbench.records.gpu_probe import with_checked_probes

# Counter deltas a point records, summed over its servers: evidence key -> vllm_counters key.
COUNTER_DELTAS = {
    "prefix_cache_queries_delta": "prefix_cache_queries",
    "prefix_cache_hits_delta": "prefix_cache_hits",
    "external_prefix_cache_queries_delta": "external_prefix_cache_queries",
    "external_prefix_cache_hits_delta": "external_prefix_cache_hits",
    "preemptions_delta": "num_preemptions",
    "prompt_tokens_cached_delta": "prompt_tokens_cached",
}
# Per server only (replicas behind a router): how many requests each one finished, to see where routing sent
# the load. vLLM's counter, one sample per finished_reason.
PER_SERVER_COUNTERS = {"requests_finished_delta": "vllm:request_success_total"}


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def find_point(plan: dict[str, Any], point_id: str) -> dict[str, Any]:
    for point in plan["points"]:
        if point["id"] == point_id:
            return point
    raise KeyError(f"point {point_id!r} is not in the plan of run {plan['run_id']}")


def find_scenario(plan: dict[str, Any], name: str) -> dict[str, Any]:
    for scenario in plan["scenarios"]:
        if scenario["name"] == name:
            return scenario
    raise KeyError(f"scenario {name!r} is not in the plan of run {plan['run_id']}")


def config_summary(plan: dict[str, Any], scenario: dict[str, Any]) -> dict[str, Any]:
    """What an analysis needs to know of a scenario's configuration, flat enough for table columns."""
    transfer = scenario["vllm"].get("kv_transfer_config") or {}
    index = scenario.get("index") or {}
    return {
        "target": plan["target"],
        "platform": plan["platform"],
        "preset": plan["preset"],
        "versions": {
            "vllm": scenario["versions"].get("vllm"),
            "lmcache": scenario["versions"].get("lmcache") if scenario.get("lmcache") else None,
            "guidellm": plan["guidellm"]["version"],
        },
        "connector": transfer.get("kv_connector"),
        "connector_extra_config": transfer.get("kv_connector_extra_config"),
        "lmcache_connector": scenario.get("lmcache_connector"),
        "index_store": index.get("store"),
        "prefix_caching": scenario.get("prefix_caching", True),
        "replicas": scenario.get("replicas", 1),
        "disk_tier": scenario.get("disk_tier"),
        "router": scenario.get("router"),
        "block_size": scenario["block_size"],
        "tensor_parallel_size": scenario["capacity"]["tensor_parallel_size"],
        "max_num_seqs": plan["vllm"]["max_num_seqs"],
        "capacity": scenario["capacity"],
    }


def counter_evidence(
    before: dict[str, str], after: dict[str, str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Counter deltas summed over servers, and per server. `before`/`after`: server -> /metrics text."""
    per_server: dict[str, dict[str, Any]] = {}
    for server in sorted(set(before) | set(after)):
        b, a = vllm_counters(before.get(server, "")), vllm_counters(after.get(server, ""))
        per_server[server] = {key: delta(a, b, name) for key, name in COUNTER_DELTAS.items()}
        b_own = vllm_counters(before.get(server, ""), PER_SERVER_COUNTERS)
        a_own = vllm_counters(after.get(server, ""), PER_SERVER_COUNTERS)
        per_server[server].update({key: delta(a_own, b_own, key) for key in PER_SERVER_COUNTERS})
    totals: dict[str, Any] = {}
    for key in COUNTER_DELTAS:
        values = [s[key] for s in per_server.values() if s[key] is not None]
        totals[key] = sum(values) if values else None
    return totals, per_server


def point_record(
    plan: dict[str, Any],
    point_id: str,
    outcome: dict[str, Any],
    metrics_before: dict[str, str],
    metrics_after: dict[str, str],
    report_seed: int | None,
    report_file: str | None,
    report_phases: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The point record (schema 2) of `point_id`, validated. `outcome` is what the target's sweep observed;
    `report_phases` the phases GuideLLM's report shows (kvbench.timing.guidellm_phases)."""
    point = find_point(plan, point_id)
    scenario = find_scenario(plan, point["scenario"])
    client = outcome.get("guidellm") or {}
    totals, per_server = counter_evidence(metrics_before, metrics_after)
    ended_at = outcome.get("ended_at") or utc_now()
    phases = {**(outcome.get("phases") or {}), **(report_phases or {})}
    benchmark_end = (phases.get("benchmark") or {}).get("end")
    if benchmark_end and "collection" not in phases:
        # After GuideLLM: the snapshots, evidence checks and bringing the files home, up to this record.
        phases["collection"] = {"start": benchmark_end, "end": ended_at}
    record = {
        "schema_version": SCHEMA_VERSIONS["point"],
        "kind": "kvbench.point",
        "run_id": plan["run_id"],
        "plan_hash": plan["plan_hash"],
        "model": plan["model"]["name"],
        "scenario": point["scenario"],
        "concurrency": point["concurrency"],
        "repetition": point["repetition"],
        "status": outcome["status"],
        "reason": outcome.get("reason") or None,
        "started_at": outcome.get("started_at"),
        "ended_at": ended_at,
        "phases": phases,
        "config": config_summary(plan, scenario),
        "workload": {
            **{
                k: plan["workload"][k]
                for k in ("duration_s", "prompt_tokens", "output_tokens", "prefix_tokens")
            },
            "prefix_count": point["prefix_count"],
            "turns": plan["workload"]["turns"],
            "turns_sent": plan["guidellm"]["turns_sent"],
            "warm_cache": plan["warm_cache"],
            "seed": point["seed"],
        },
        "guidellm": {
            "version": client.get("version") or plan["guidellm"]["version"],
            "dialect": plan["guidellm"]["dialect"],
            "file": report_file,
            "argv": point["argv"],
            "seed": point["seed"],
            "seed_reported": report_seed,
            "client": client.get("client") or None,
            "warnings": list(plan["guidellm"]["warnings"]) + list(client.get("warnings") or []),
            "wall_s": client.get("wall_s"),
        },
        "servers": list(outcome.get("servers") or sorted(set(metrics_before) | set(metrics_after))),
        "evidence": {
            "cache_reset_verified": outcome.get("cache_reset_verified"),
            "server_restarted": outcome.get("server_restarted"),
            **totals,
            "index_keys_before": outcome.get("index_keys_before"),
            "index_keys_after": outcome.get("index_keys_after"),
            "per_server": per_server,
            # Disk-tier evidence the target measured (files the connector wrote, device reads in the point).
            "disk_tier": outcome.get("disk_tier"),
            # The point's health (nodes target): the /metrics monitor and watchdog, a server that died
            # during or right after it (with its log's exception line), the PCP archive over its window.
            "watchdog": outcome.get("watchdog") or None,
            "server_crash": outcome.get("server_crash") or None,
            "archive_check": outcome.get("archive_check") or None,
            "health_warning": outcome.get("evidence_warning") or None,
        },
    }
    if outcome["status"] == "ok" and report_file is None:
        record["status"] = "failed"
        record["reason"] = "the target reported the point ok, but its directory holds no GuideLLM report"
    elif outcome["status"] == "ok" and report_seed is not None and report_seed != point["seed"]:
        # The record must never claim a seed GuideLLM did not use.
        record["status"] = "failed"
        record["reason"] = f"GuideLLM reports seed {report_seed}, the plan asked for {point['seed']}"
    return validate(record, "point")


_SCENARIO_KEYS = ("status", "reason", "server_starts", "crashes", "watchdog_stops")


def scenario_record(plan: dict[str, Any], name: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """The scenario record (schema 2), validated. `outcome`: status, reason, server_starts, notes."""
    scenario = find_scenario(plan, name)
    status = outcome.get("status") or ("ran" if scenario["supported"] else "skipped")
    record = {
        "schema_version": SCHEMA_VERSIONS["scenario"],
        "kind": "kvbench.scenario",
        "run_id": plan["run_id"],
        "plan_hash": plan["plan_hash"],
        "name": name,
        "status": status,
        "reason": outcome.get("reason") or (scenario["skip_reason"] if status == "skipped" else None),
        "server_starts": int(outcome.get("server_starts") or 0),
        # Starts after the first: a server that crashed or that the watchdog stopped, started again.
        "server_restarts": max(int(outcome.get("server_starts") or 0) - 1, 0),
        "crashes": list(outcome.get("crashes") or []),
        "watchdog_stops": list(outcome.get("watchdog_stops") or []),
        "resolved": scenario,
        "notes": {k: v for k, v in outcome.items() if k not in _SCENARIO_KEYS},
        "updated_at": utc_now(),
    }
    return validate(record, "scenario")


def manifest_record(
    plan: dict[str, Any],
    outcome: dict[str, Any],
    phases: list[dict[str, Any]],
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """The manifest (schema 2), validated. `previous` is the manifest already on disk (kept: started_at)."""
    now = utc_now()
    status = outcome.get("status", "running")
    started = (previous or {}).get("started_at") or min(
        (p["start"] for p in phases if p.get("start")), default=now
    )
    record = {
        "schema_version": SCHEMA_VERSIONS["manifest"],
        "kind": "kvbench.manifest",
        "run_id": plan["run_id"],
        "plan_hash": plan["plan_hash"],
        "status": status,
        "started_at": started,
        "updated_at": now,
        "ended_at": now if status in ("complete", "interrupted") else None,
        "harness": outcome.get("harness") or {"commit": None, "dirty": None},
        "model": plan["model"],
        "target": plan["target"],
        "platform": plan["platform"],
        "preset": plan["preset"],
        "workload": {
            **plan["workload"],
            "concurrency": plan["concurrency"],
            "repetitions": plan["repetitions"],
            "repetition_order": plan["repetition_order"],
            "warm_cache": plan["warm_cache"],
        },
        "scenarios": [s["name"] for s in plan["scenarios"]],
        "versions_configured": plan["versions"],
        "versions": outcome.get("versions") or {},
        "images": outcome.get("images") or {},
        "hosts": with_checked_probes(outcome.get("hosts") or {}),
        "capacity": plan["scenarios"][0]["capacity"] if plan["scenarios"] else {},
        "server_starts_planned": sum(1 for s in plan["schedule"] if s["supported"]),
        # The disk tiers the setup probed (hosts.<host>.disk_probe), flagged when far below expectation.
        "disk_tiers": disk_tiers(outcome.get("hosts") or {}),
        "phases": phases,
    }
    return validate(record, "manifest")
