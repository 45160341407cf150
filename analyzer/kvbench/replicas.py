"""Per-replica counters of a point: where the router sent requests and how often each replica's cache hit.

Pure: point records (schema 2) in, tables out. Each record's `evidence.per_server` holds, per vLLM server
(a pod on the kubernetes target), the deltas of its own /metrics over the point. With one replica there is
nothing to route; with several, a prefix-aware router should concentrate each prefix on one replica, which
shows as higher per-replica hit rates than a spread-out (round-robin) placement would give.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

KEY = ("scenario", "concurrency", "repetition")
REPLICA_COLUMNS: tuple[str, ...] = (
    *KEY,
    "replica",
    "requests_finished",
    "request_share",
    "prefix_cache_queries",
    "prefix_cache_hits",
    "hit_rate",
    "external_prefix_cache_hits",
)
ROUTING_COLUMNS: tuple[str, ...] = (
    *KEY,
    "replicas",
    "requests_finished",
    "max_request_share",
    "request_share_cv",
    "hit_rate_pooled",
    "hit_rate_min",
    "hit_rate_max",
)


def _count(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return math.nan
    # A negative delta is a counter reset (a restarted server): not a count.
    return float(value) if value >= 0 else math.nan


def replica_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per server of a point record; [] for a record without per-server counters."""
    evidence = record.get("evidence") if isinstance(record.get("evidence"), Mapping) else {}
    per_server = evidence.get("per_server") if isinstance(evidence.get("per_server"), Mapping) else {}
    rows = []
    for server, counters in sorted(per_server.items()):
        counters = counters if isinstance(counters, Mapping) else {}
        queries = _count(counters.get("prefix_cache_queries_delta"))
        hits = _count(counters.get("prefix_cache_hits_delta"))
        rows.append(
            {
                **{k: record.get(k) for k in KEY},
                "replica": str(server),
                "requests_finished": _count(counters.get("requests_finished_delta")),
                "prefix_cache_queries": queries,
                "prefix_cache_hits": hits,
                "hit_rate": hits / queries if queries > 0 else math.nan,
                "external_prefix_cache_hits": _count(counters.get("external_prefix_cache_hits_delta")),
            }
        )
    total = np.nansum([r["requests_finished"] for r in rows]) if rows else 0.0
    for r in rows:
        r["request_share"] = r["requests_finished"] / total if total > 0 else math.nan
    return rows


def replica_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """REPLICA_COLUMNS for every server of every point record."""
    rows = [row for record in records for row in replica_rows(record)]
    return pd.DataFrame(rows, columns=list(REPLICA_COLUMNS))


def routing_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per point: how evenly requests spread over the replicas and how each replica's cache hit.

    max_request_share is 1/replicas for a perfectly even spread and 1 when one replica took everything;
    request_share_cv is the coefficient of variation of the replicas' request counts (0: even).
    """
    out = []
    for key, group in table.groupby(list(KEY), sort=True, dropna=False):
        requests = group["requests_finished"].to_numpy(dtype=float)
        queries = group["prefix_cache_queries"].to_numpy(dtype=float)
        hits = group["prefix_cache_hits"].to_numpy(dtype=float)
        counted = requests[~np.isnan(requests)]
        mean = counted.mean() if counted.size else math.nan
        total_queries = np.nansum(queries)
        out.append(
            {
                **dict(zip(KEY, key, strict=True)),
                "replicas": len(group),
                "requests_finished": counted.sum() if counted.size else math.nan,
                "max_request_share": group["request_share"].max(),
                "request_share_cv": counted.std(ddof=0) / mean if counted.size and mean > 0 else math.nan,
                "hit_rate_pooled": np.nansum(hits) / total_queries if total_queries > 0 else math.nan,
                "hit_rate_min": group["hit_rate"].min(),
                "hit_rate_max": group["hit_rate"].max(),
            }
        )
    return pd.DataFrame(out, columns=list(ROUTING_COLUMNS))
