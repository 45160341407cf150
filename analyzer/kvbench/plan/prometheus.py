"""The one Prometheus text-format parser of kvbench: vLLM /metrics text -> the counters kvbench records.

A small parser of the exposition format rather than prometheus_client, so the Ansible controller needs no
extra package. Every value is the sum over all label sets of a sample (engines, models); NaN samples are
skipped; a metric the server does not export is None, never an error. Names as of vLLM 0.11+
(vllm/v1/metrics/loggers.py; prometheus_client appends `_total` to counters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "PROMPT_TOKENS_BY_SOURCE",
    "VLLM_METRICS",
    "delta",
    "parse_samples",
    "samples_by_label",
    "vllm_counters",
]

# key kvbench records -> exported sample name
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

# Prompt tokens by where their KV came from, label `source`: local_compute, local_cache_hit,
# external_kv_transfer.
PROMPT_TOKENS_BY_SOURCE = "vllm:prompt_tokens_by_source_total"

# name, optional {labels} (quoted values may hold '}' and escaped quotes), value, optional timestamp,
# optional OpenMetrics exemplar (` # {...} v`).
_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>(?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*)\})?"
    r"\s+(?P<value>\S+)(?:\s+-?\d+)?(?:\s+#.*)?\s*$"
)
_LABEL = re.compile(r"\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*\"(?P<value>(?:[^\"\\]|\\.)*)\"\s*(?:,|$)")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], value)


def _labels(text: str | None) -> dict[str, str] | None:
    """The label set of one sample; None when it is malformed."""
    if not text:
        return {}
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        if match is None:
            # A trailing comma and blanks are allowed by the format; anything else is not.
            return labels if not text[position:].strip(" ,") else None
        labels[match["key"]] = _unescape(match["value"])
        position = match.end()
    return labels


def _samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Each well-formed, non-NaN sample of the text: (name, labels, value). Comments are skipped."""
    for raw in str(text).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = _labels(match["labels"])
        if labels is None:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        yield match["name"], labels, value


def parse_samples(text: str) -> dict[str, float]:
    """Sum every sample by name over its label sets; comments, malformed lines and NaN are skipped."""
    sums: dict[str, float] = {}
    for name, _, value in _samples(text):
        sums[name] = sums.get(name, 0.0) + value
    return sums


def samples_by_label(text: str, name: str, label: str) -> dict[str, float]:
    """Sum the samples called `name` by the value of their `label` (over every other label).

    Samples without that label are left out. E.g. samples_by_label(text, PROMPT_TOKENS_BY_SOURCE, "source")
    -> {"local_compute": ..., "local_cache_hit": ..., "external_kv_transfer": ...}.
    """
    sums: dict[str, float] = {}
    for sample, labels, value in _samples(text):
        if sample == name and label in labels:
            key = labels[label]
            sums[key] = sums.get(key, 0.0) + value
    return sums


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value.is_integer() else value


def vllm_counters(text: str, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """{key: summed value or None} for every key of `names` (default VLLM_METRICS); whole numbers as int."""
    wanted = names if names is not None else VLLM_METRICS
    sums = parse_samples(text)
    return {key: _number(sums.get(sample)) for key, sample in wanted.items()}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def delta(after: Mapping[str, Any], before: Mapping[str, Any], key: str) -> float | int | None:
    """after[key] - before[key], as vllm_counters gives them.

    None when either side lacks a finite number (a metric the server does not export). A negative result
    means the counter was reset between the two scrapes (server restart); it is returned as is, the caller
    decides.
    """
    later, earlier = after.get(key), before.get(key)
    if not (_finite(later) and _finite(earlier)):
        return None
    difference = later - earlier
    return _number(difference) if isinstance(difference, float) else difference
