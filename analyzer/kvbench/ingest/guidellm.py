"""Version-tolerant extraction of one flat record per GuideLLM benchmark.

Reads the report formats of GuideLLM 0.5.x up to 0.8.x:
- `metadata.version` 1 (0.5.x-0.6.x): top-level `args`, `benchmarks`;
- `metadata.version` 2 (0.7+): top-level `config`, `benchmarks`;
- no `metadata` (0.4.x): top-level `args`, `benchmarks`.
Every benchmark carries `config.strategy`, `metrics.<name>.<status>` distribution summaries and
`requests` (per-request samples). Only the summaries are read; the per-request lists are never
touched, so extraction costs nothing next to parsing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kvbench.errors import InputError
from kvbench.naming import model_short_name

# Column prefix -> (GuideLLM metric name, status) for distribution summaries reported with
# mean, median, p90 and p99.
LATENCY_METRICS: dict[str, str] = {
    "ttft_ms": "time_to_first_token_ms",
    "tpot_ms": "time_per_output_token_ms",
    "itl_ms": "inter_token_latency_ms",
    "latency_s": "request_latency",
}
LATENCY_STATS: tuple[str, ...] = ("mean", "median", "p90", "p99")

# Column -> (GuideLLM metric name, status, statistic).
SCALAR_METRICS: dict[str, tuple[str, str, str]] = {
    # The original analysis' throughput: output tokens/s of successful requests.
    "output_tok_s_successful": ("output_tokens_per_second", "successful", "mean"),
    # All requests, including those still running at the end of the window (GuideLLM's console).
    "output_tok_s_total": ("output_tokens_per_second", "total", "mean"),
    "total_tok_s": ("tokens_per_second", "total", "mean"),
    "requests_s": ("requests_per_second", "successful", "mean"),
    "prompt_tokens_mean": ("prompt_token_count", "successful", "mean"),
    "output_tokens_mean": ("output_token_count", "successful", "mean"),
}

METRIC_COLUMNS: tuple[str, ...] = (
    "output_tok_s_successful",
    "output_tok_s_total",
    "total_tok_s",
    "requests_s",
    *(f"{prefix}_{stat}" for prefix in LATENCY_METRICS for stat in LATENCY_STATS),
    "requests_successful",
    "requests_errored",
    "requests_incomplete",
    "requests_total",
    "prompt_tokens_mean",
    "output_tokens_mean",
    "duration_s",
)
# GuideLLM's own signals about a benchmark, where its report has them: the mean number of requests in
# flight (metrics.request_concurrency.total.mean; all versions), the codes of the warnings 0.8+ attaches
# to a benchmark (e.g. generation_delay_ttft, root_late_p95), and the over-saturation detector's verdict
# (scheduler_state.<constraints>.over_saturation.metadata.is_over_saturated, when it was switched on).
SIGNAL_COLUMNS: tuple[str, ...] = ("concurrency_achieved", "report_warnings", "over_saturated")
_CONSTRAINT_GROUPS = ("scheduler_constraints", "end_queuing_constraints", "end_processing_constraints")


def _num(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    return math.nan


def _stat(summary: Any, stat: str) -> float:
    """One statistic of a GuideLLM distribution summary (`mean`, `median`, `p90`, ...)."""
    if not isinstance(summary, Mapping):
        return math.nan
    if stat in ("mean", "median"):
        return _num(summary.get(stat))
    percentiles = summary.get("percentiles")
    if isinstance(percentiles, Mapping):
        return _num(percentiles.get(stat))
    return math.nan


def _metric(metrics: Mapping[str, Any], name: str, status: str) -> Any:
    block = metrics.get(name)
    if isinstance(block, Mapping):
        return block.get(status)
    return None


def _as_int(value: Any) -> float:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else _num(value)


def report_version(doc: Any) -> tuple[int | None, str]:
    """(metadata.version, guidellm version) of a GuideLLM report, or InputError if it is none."""
    if not isinstance(doc, Mapping):
        kind = type(doc).__name__
        raise InputError(f"not a GuideLLM report (the document is a JSON {kind}, not an object)")
    benchmarks = doc.get("benchmarks")
    if not isinstance(benchmarks, list):
        keys = ", ".join(sorted(map(str, doc.keys()))[:6]) or "none"
        raise InputError(f"not a GuideLLM report (no 'benchmarks' list; top-level keys: {keys})")
    metadata = doc.get("metadata")
    version: int | None = None
    guidellm_version = "unknown"
    if isinstance(metadata, Mapping):
        raw = metadata.get("version")
        version = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        if isinstance(metadata.get("guidellm_version"), str):
            guidellm_version = metadata["guidellm_version"]
    if "args" not in doc and "config" not in doc and version is None:
        raise InputError("not a GuideLLM report (neither 'args', 'config' nor 'metadata.version')")
    return version, guidellm_version


def _report_model(doc: Mapping[str, Any]) -> str | None:
    args = doc.get("args")
    if isinstance(args, Mapping) and isinstance(args.get("model"), str) and args["model"]:
        return args["model"]
    config = doc.get("config")
    if isinstance(config, Mapping):
        spec = config.get("spec")
        backend = spec.get("backend") if isinstance(spec, Mapping) else None
        if isinstance(backend, Mapping) and isinstance(backend.get("model"), str) and backend["model"]:
            return backend["model"]
    return None


def report_labels(doc: Any) -> dict[str, str]:
    """GuideLLM 0.7+ run labels (`config.metadata.labels`), e.g. {"scenario": "..."}."""
    if not isinstance(doc, Mapping):
        return {}
    config = doc.get("config")
    metadata = config.get("metadata") if isinstance(config, Mapping) else None
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): str(v) for k, v in labels.items() if v is not None}


def _strategy(benchmark: Mapping[str, Any]) -> tuple[str, float, float]:
    """(strategy type, concurrency, rate) of one benchmark."""
    config = benchmark.get("config")
    strategy = config.get("strategy") if isinstance(config, Mapping) else None
    if not isinstance(strategy, Mapping):
        return "unknown", math.nan, math.nan
    kind = str(strategy.get("type_") or strategy.get("type") or strategy.get("kind") or "unknown")
    concurrency = math.nan
    rate = _num(strategy.get("rate"))
    if kind == "concurrent":
        concurrency = _num(strategy.get("streams"))
        if math.isnan(concurrency):
            concurrency = _num(strategy.get("max_concurrency"))
    elif kind == "synchronous":
        concurrency = 1.0
    return kind, concurrency, rate


def _benchmark_model(benchmark: Mapping[str, Any]) -> str | None:
    config = benchmark.get("config")
    backend = config.get("backend") if isinstance(config, Mapping) else None
    if isinstance(backend, Mapping) and isinstance(backend.get("model"), str) and backend["model"]:
        return backend["model"]
    return None


def _warning_codes(benchmark: Mapping[str, Any]) -> str | None:
    warnings = benchmark.get("warnings")
    if not isinstance(warnings, list):
        return None
    codes = [str(w.get("code")) for w in warnings if isinstance(w, Mapping) and w.get("code")]
    return ";".join(dict.fromkeys(codes)) or None


def _over_saturated(benchmark: Mapping[str, Any]) -> bool | None:
    state = benchmark.get("scheduler_state")
    if not isinstance(state, Mapping):
        return None
    found: bool | None = None
    for group in _CONSTRAINT_GROUPS:
        constraints = state.get(group)
        detector = constraints.get("over_saturation") if isinstance(constraints, Mapping) else None
        metadata = detector.get("metadata") if isinstance(detector, Mapping) else None
        flag = metadata.get("is_over_saturated") if isinstance(metadata, Mapping) else None
        if isinstance(flag, bool):
            found = found or flag
    return found


def signal_columns(benchmark: Mapping[str, Any]) -> dict[str, Any]:
    """GuideLLM's own signals of one benchmark (SIGNAL_COLUMNS); absent ones are NaN/None."""
    metrics = benchmark.get("metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    achieved = _stat(_metric(metrics, "request_concurrency", "total"), "mean")
    if math.isnan(achieved):
        achieved = _stat(_metric(metrics, "request_concurrency", "successful"), "mean")
    return {
        "concurrency_achieved": achieved,
        "report_warnings": _warning_codes(benchmark),
        "over_saturated": _over_saturated(benchmark),
    }


def extract_records(doc: Any) -> list[dict[str, Any]]:
    """One flat record per benchmark in a GuideLLM report.

    Raises InputError when the document is not a GuideLLM report or holds no usable benchmark.
    """
    version, guidellm_version = report_version(doc)
    benchmarks = doc["benchmarks"]
    if not benchmarks:
        raise InputError("GuideLLM report holds no benchmarks")
    report_model = _report_model(doc)
    records: list[dict[str, Any]] = []
    for index, benchmark in enumerate(benchmarks):
        if not isinstance(benchmark, Mapping):
            raise InputError(f"benchmark {index} is not an object")
        metrics = benchmark.get("metrics")
        if not isinstance(metrics, Mapping) or "output_tokens_per_second" not in metrics:
            raise InputError(
                f"benchmark {index} has no 'metrics.output_tokens_per_second' "
                "(not a GuideLLM generative benchmark)"
            )
        kind, concurrency, rate = _strategy(benchmark)
        model = _benchmark_model(benchmark) or report_model
        record: dict[str, Any] = {
            "benchmark_index": index,
            "strategy": kind,
            "concurrency": concurrency,
            "rate": rate,
            "data_model": model_short_name(model) if model else None,
            "guidellm_version": guidellm_version,
            "report_format": version if version is not None else math.nan,
            "start_time": _num(benchmark.get("start_time")),
            "duration_s": _num(benchmark.get("duration")),
        }
        for column, (name, status, stat) in SCALAR_METRICS.items():
            record[column] = _stat(_metric(metrics, name, status), stat)
        for prefix, name in LATENCY_METRICS.items():
            summary = _metric(metrics, name, "successful")
            for stat in LATENCY_STATS:
                record[f"{prefix}_{stat}"] = _stat(summary, stat)
        totals = metrics.get("request_totals")
        totals = totals if isinstance(totals, Mapping) else {}
        for status in ("successful", "errored", "incomplete", "total"):
            record[f"requests_{status}"] = _as_int(totals.get(status))
        record.update(signal_columns(benchmark))
        records.append(record)
    return records
