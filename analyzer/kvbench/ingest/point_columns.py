"""The columns a kvbench point record (point.json) gives its rows: configuration, workload and evidence.

Pure: takes the record as read by discovery. Schema 2 keeps configuration under `config` and evidence under
`evidence`; schema 1 (older runs) had no `config` and kept its evidence under `validity`. Keys a record lacks
give empty cells, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kvbench.records.assemble import COUNTER_DELTAS

CONFIG_COLUMNS: tuple[str, ...] = (
    "plan_hash",
    "target",
    "platform",
    "preset",
    "vllm_version",
    "lmcache_version",
    "guidellm_dialect",
    "connector",
    "lmcache_connector",
    "index_store",
    "prefix_caching",
    "router",
    "block_size",
    "tensor_parallel_size",
    "max_num_seqs",
    "cpu_offload_bytes",
    "disk_tier_path",
)
WORKLOAD_COLUMNS: tuple[str, ...] = (
    "requested_duration_s",
    "prompt_tokens",
    "output_tokens",
    "prefix_tokens",
    "prefix_count",
    "turns",
    "turns_sent",
    "warm_cache",
    "seed",
    "seed_reported",
)
# The point's health: the /metrics watchdog, a server crash and its log line, the PCP archive check.
HEALTH_COLUMNS: tuple[str, ...] = (
    "metrics_series_samples",
    "watchdog_stalled",
    "watchdog_reason",
    "server_crashed",
    "server_crash_line",
    "archive_check",
    "archive_check_reasons",
)
EVIDENCE_COLUMNS: tuple[str, ...] = (
    "client_saturated_suspect",
    "client_cpu_busy_pct",
    "client_cores",
    "cache_reset_verified",
    "server_restarted",
    "prefix_cache_queries_delta",
    "prefix_cache_hits_delta",
    "external_prefix_cache_queries_delta",
    "external_prefix_cache_hits_delta",
    "prompt_tokens_cached_delta",
    "preemptions_delta",
    "index_keys_before",
    "index_keys_after",
    "disk_tier_files_after",
    "disk_tier_read_bytes_delta",
    "servers",
    "guidellm_wall_s",
    "guidellm_warnings",
    "point_started_at",
    "point_ended_at",
    *HEALTH_COLUMNS,
)
POINT_COLUMNS: tuple[str, ...] = (*CONFIG_COLUMNS, *WORKLOAD_COLUMNS, *EVIDENCE_COLUMNS)
# Whole numbers among them (kept as integers in the table).
POINT_INT_COLUMNS: tuple[str, ...] = (
    "block_size",
    "tensor_parallel_size",
    "max_num_seqs",
    "cpu_offload_bytes",
    "prompt_tokens",
    "output_tokens",
    "prefix_tokens",
    "prefix_count",
    "turns",
    "turns_sent",
    "seed",
    "seed_reported",
    "client_cores",
    "prefix_cache_queries_delta",
    "prefix_cache_hits_delta",
    "external_prefix_cache_queries_delta",
    "external_prefix_cache_hits_delta",
    "prompt_tokens_cached_delta",
    "preemptions_delta",
    "index_keys_before",
    "index_keys_after",
    "disk_tier_files_after",
    "disk_tier_read_bytes_delta",
    "metrics_series_samples",
)
# The counter deltas are the ones the record writer computes (one list: a counter added there reaches here).
_EVIDENCE_FLAGS = ("cache_reset_verified", "server_restarted")
_EVIDENCE_KEYS = (*_EVIDENCE_FLAGS, *COUNTER_DELTAS, "index_keys_before", "index_keys_after")


def _section(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def empty_point_columns() -> dict[str, Any]:
    """The point columns of a row that has no point record (other layouts)."""
    return {column: (math.nan if column in POINT_INT_COLUMNS else None) for column in POINT_COLUMNS}


def _config_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    config = _section(record, "config")
    versions = _section(config, "versions")
    capacity = _section(config, "capacity")
    connector = _text(config.get("connector"))
    return {
        "plan_hash": _text(record.get("plan_hash")),
        "target": _text(config.get("target")),
        "platform": _text(config.get("platform")),
        "preset": _text(config.get("preset")),
        "vllm_version": _text(versions.get("vllm")),
        "lmcache_version": _text(versions.get("lmcache")),
        "guidellm_dialect": _text(_section(record, "guidellm").get("dialect")),
        "connector": connector,
        "lmcache_connector": _text(config.get("lmcache_connector")),
        "index_store": _text(config.get("index_store")),
        "prefix_caching": _flag(config.get("prefix_caching")),
        "router": _text(config.get("router")),
        "block_size": _number(config.get("block_size")),
        "tensor_parallel_size": _number(config.get("tensor_parallel_size")),
        "max_num_seqs": _number(config.get("max_num_seqs")),
        # The CPU tier's size, only where a connector offloads to it (native offload, LMCache).
        "cpu_offload_bytes": _number(capacity.get("cpu_bytes_to_use")) if connector else math.nan,
        "disk_tier_path": _text(_section(config, "disk_tier").get("path")),
    }


def _workload_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    workload = _section(record, "workload")
    guidellm = _section(record, "guidellm")
    # Schema 1 kept the base seed in workload and the point's seed in guidellm; schema 2 has both the same.
    seed = guidellm.get("seed") if isinstance(guidellm.get("seed"), int) else workload.get("seed")
    return {
        "requested_duration_s": _number(workload.get("duration_s")),
        "prompt_tokens": _number(workload.get("prompt_tokens")),
        "output_tokens": _number(workload.get("output_tokens")),
        "prefix_tokens": _number(workload.get("prefix_tokens")),
        "prefix_count": _number(workload.get("prefix_count")),
        "turns": _number(workload.get("turns")),
        "turns_sent": _number(workload.get("turns_sent")),
        "warm_cache": _flag(workload.get("warm_cache")),
        "seed": _number(seed),
        "seed_reported": _number(guidellm.get("seed_reported")),
    }


def _evidence_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    evidence = _section(record, "evidence") or _section(record, "validity")
    guidellm = _section(record, "guidellm")
    client = _section(guidellm, "client")
    servers = record.get("servers")
    warnings = guidellm.get("warnings")
    columns: dict[str, Any] = {
        "client_saturated_suspect": _flag(client.get("saturated_suspect")),
        "client_cpu_busy_pct": _number(client.get("cpu_busy_pct")),
        "client_cores": _number(client.get("cores")),
    }
    for key in _EVIDENCE_KEYS:
        value = evidence.get(key)
        columns[key] = _flag(value) if key in _EVIDENCE_FLAGS else _number(value)
    disk = _section(evidence, "disk_tier")
    columns.update(
        disk_tier_files_after=_number(disk.get("files_after")),
        disk_tier_read_bytes_delta=_number(disk.get("read_bytes_delta")),
        servers=";".join(map(str, servers)) if isinstance(servers, list) and servers else None,
        guidellm_wall_s=_number(guidellm.get("wall_s")),
        guidellm_warnings=" | ".join(map(str, warnings)) if isinstance(warnings, list) and warnings else None,
        point_started_at=_text(record.get("started_at")),
        point_ended_at=_text(record.get("ended_at")),
    )
    columns.update(_health_columns(evidence))
    return columns


def _health_columns(evidence: Mapping[str, Any]) -> dict[str, Any]:
    watchdog = _section(evidence, "watchdog")
    crash = _section(evidence, "server_crash")
    archive = _section(evidence, "archive_check")
    reasons = archive.get("reasons")
    return {
        "metrics_series_samples": _number(watchdog.get("ok_samples")),
        "watchdog_stalled": _flag(watchdog.get("stalled")),
        "watchdog_reason": _text(_section(watchdog, "stall").get("reason")),
        "server_crashed": bool(crash) if "server_crash" in evidence else None,
        "server_crash_line": _text(crash.get("log_line")),
        "archive_check": _text(archive.get("result")),
        "archive_check_reasons": "; ".join(map(str, reasons))
        if isinstance(reasons, list) and reasons
        else None,
    }


def point_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """Every point column of one point record (schema 1 or 2)."""
    return {**_config_columns(record), **_workload_columns(record), **_evidence_columns(record)}
