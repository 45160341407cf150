"""Filter `vllm_parse_metrics`: vLLM /metrics text -> the counters kvbench records.

Each value is the sum over every label set of the sample (engines, models); a metric the server does not
export is None, never an error. Names as of vLLM 0.11+ (see vllm/v1/metrics/loggers.py).
"""

from __future__ import annotations

import math
import re
from typing import Any

# fact key -> exported sample name (prometheus_client adds `_total` to counters)
VLLM_METRICS: dict[str, str] = {
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "external_prefix_cache_queries": "vllm:external_prefix_cache_queries_total",
    "external_prefix_cache_hits": "vllm:external_prefix_cache_hits_total",
    "kv_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "num_requests_running": "vllm:num_requests_running",
    "num_requests_waiting": "vllm:num_requests_waiting",
    "num_preemptions": "vllm:num_preemptions_total",
    "prompt_tokens_cached": "vllm:prompt_tokens_cached_total",
}

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$"
)


def parse_samples(text: str) -> dict[str, float]:
    """Sum every sample by name over its label sets; comments and malformed lines are skipped."""
    sums: dict[str, float] = {}
    for line in str(text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        name = match.group("name")
        sums[name] = sums.get(name, 0.0) + value
    return sums


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value.is_integer() else value


def vllm_parse_metrics(text: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Return {key: summed value or None} for every key of `names` (default: VLLM_METRICS)."""
    wanted = names if names is not None else VLLM_METRICS
    sums = parse_samples(text)
    return {key: _number(sums.get(sample)) for key, sample in wanted.items()}


def vllm_process_tree(ps_text: str, pattern: str) -> list[str]:
    """From `ps -eo pid=,ppid=,args=` output: pids whose args match `pattern`, plus all their descendants."""
    regex = re.compile(pattern)
    parent: dict[str, str] = {}
    roots: list[str] = []
    for line in str(ps_text).splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        pid, ppid = parts[0], parts[1]
        parent[pid] = ppid
        if len(parts) == 3 and regex.search(parts[2]):
            roots.append(pid)
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found, key=int)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"vllm_parse_metrics": vllm_parse_metrics, "vllm_process_tree": vllm_process_tree}
