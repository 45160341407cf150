"""Per-point evidence columns from the /metrics series and the PCP archive, inside the measured window.

Pure: takes frames read by kvbench.ingest.metrics_series / metrics_pcp. Rates are fractions 0..1.
Counters are deltas between the scrape just before the window opens and the one just after it closes (so
the whole measured run is counted); gauges are the scrapes inside the window. Several servers: counters and
queue lengths are summed over servers, usage fractions are averaged (mean) or the largest (max).
Where a point has no series, the counter columns fall back to the point record's before/after deltas
(`metrics_source` says which). Names: vLLM 0.11-0.32 (vllm/v1/metrics/loggers.py; offload bytes from
kv_connector/v1/offloading/metrics.py: `vllm:kv_offload_{load,store}_bytes_total`, before that
`vllm:kv_offload_total_bytes_total{transfer_type=CPU_to_GPU|GPU_to_CPU}`); PCP 6 linux, nvidia and redis
PMDAs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kvbench.plan.prometheus import PROMPT_TOKENS_BY_SOURCE, parse_samples, samples_by_label

# A CPU counts as saturated in an interval when it is busy at least this fraction of it.
SATURATED_CPU_BUSY = 0.9

SERIES_SUMMARY_COLUMNS: tuple[str, ...] = (
    "metrics_source",
    "series_scrapes",
    "series_failed_scrapes",
    "prefix_cache_hit_rate",
    "external_hit_rate",
    "prompt_share_local_cache",
    "prompt_share_external",
    "prompt_share_computed",
    "kv_usage_mean",
    "kv_usage_max",
    "preemptions",
    "running_mean",
    "running_max",
    "waiting_mean",
    "waiting_max",
    "offload_load_bytes",
    "offload_store_bytes",
    "offload_load_bytes_per_s",
    "offload_store_bytes_per_s",
    "generation_tokens",
)
PCP_SUMMARY_COLUMNS: tuple[str, ...] = (
    "pcp_samples",
    "cpu_count",
    "cpu_busy_mean",
    "cpu_busy_max",
    "cpu_saturated_mean",
    "cpu_saturated_max",
    "cpu_pressure_some",
    "memory_pressure_some",
    "io_pressure_some",
    "mem_used_bytes_mean",
    "mem_used_bytes_max",
    "gpu_util_mean",
    "gpu_power_w_mean",
    "gpu_energy_j",
    "joules_per_output_token",
    "store_memory_bytes_max",
    "store_ops_per_s",
)
METRICS_SUMMARY_COLUMNS: tuple[str, ...] = (*SERIES_SUMMARY_COLUMNS, *PCP_SUMMARY_COLUMNS)
METRICS_SUMMARY_INT_COLUMNS: tuple[str, ...] = (
    "series_scrapes",
    "series_failed_scrapes",
    "preemptions",
    "offload_load_bytes",
    "offload_store_bytes",
    "generation_tokens",
    "pcp_samples",
    "cpu_count",
)

_COUNTERS = {
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "external_queries": "vllm:external_prefix_cache_queries_total",
    "external_hits": "vllm:external_prefix_cache_hits_total",
    "preemptions": "vllm:num_preemptions_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "load_bytes": "vllm:kv_offload_load_bytes_total",
    "store_bytes": "vllm:kv_offload_store_bytes_total",
}
_LEGACY_OFFLOAD = "vllm:kv_offload_total_bytes_total"
_LEGACY_DIRECTION = {"load_bytes": "CPU_to_GPU", "store_bytes": "GPU_to_CPU"}
_SOURCES = {
    "prompt_share_local_cache": "local_cache_hit",
    "prompt_share_external": "external_kv_transfer",
    "prompt_share_computed": "local_compute",
}
# The PCP metric subtrees the summary reads (kvbench metrics exports every metric).
PCP_SUMMARY_METRICS: tuple[str, ...] = (
    "kernel.all.cpu.",
    "kernel.percpu.cpu.",
    "kernel.all.pressure.",
    "mem.util.used",
    "nvidia.gpuactive",
    "nvidia.power",
    "nvidia.energy",
    "redis.used_memory",
    "redis.total_commands_processed",
)
# Linux CPU time states that add up to all the time of the CPUs (guest time is inside user).
_CPU_STATES = ("user", "nice", "sys", "idle", "wait.total", "irq.hard", "irq.soft", "steal")


@dataclass(frozen=True)
class Window:
    """The measured window of a point, unix seconds."""

    start: float
    end: float

    @property
    def length_s(self) -> float:
        return self.end - self.start


def empty_summary() -> dict[str, Any]:
    return {column: (None if column == "metrics_source" else math.nan) for column in METRICS_SUMMARY_COLUMNS}


def _ratio(numerator: float, denominator: float) -> float:
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return math.nan
    return numerator / denominator


# --- /metrics series --------------------------------------------------------------------------------------


def scrape_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (url, t) scrape, one column per summed metric name (plus by-source and legacy offload
    keys), through the project's one Prometheus parser."""
    rows = []
    for (url, t), group in frame.groupby(["url", "t"], sort=True):
        text = "\n".join(
            f"{sample} {value!r}" for sample, value in zip(group["sample"], group["value"], strict=True)
        )
        values: dict[str, Any] = dict(parse_samples(text))
        for source, total in samples_by_label(text, PROMPT_TOKENS_BY_SOURCE, "source").items():
            values[f"by_source:{source}"] = total
        for direction, total in samples_by_label(text, _LEGACY_OFFLOAD, "transfer_type").items():
            values[f"legacy_offload:{direction}"] = total
        values.update(url=url, t=t)
        rows.append(values)
    return pd.DataFrame.from_records(rows)


def _counter_delta(scrapes: pd.DataFrame, column: str | tuple[str, ...], window: Window) -> float:
    """Sum over servers of (first scrape at/after the window's end - last scrape at/before its start).

    `column` may name alternatives (a newer and an older metric name): each server counts under the first
    it has. A server lacking them all, or whose counter went down (restart), gives NaN for the whole sum: a
    partial sum would understate it."""
    names = (column,) if isinstance(column, str) else column
    names = tuple(name for name in names if name in scrapes.columns)
    if not names:
        return math.nan
    total = 0.0
    for _, one in scrapes.groupby("url"):
        values = pd.DataFrame()
        for name in names:
            values = one[["t", name]].dropna().sort_values("t").rename(columns={name: "value"})
            if not values.empty:
                break
        if values.empty:
            return math.nan
        before = values[values["t"] <= window.start]
        after = values[values["t"] >= window.end]
        first = before.iloc[-1] if not before.empty else values.iloc[0]
        last = after.iloc[0] if not after.empty else values.iloc[-1]
        delta = float(last["value"] - first["value"])
        if delta < 0:
            return math.nan
        total += delta
    return total


def _gauge(scrapes: pd.DataFrame, column: str, window: Window) -> pd.DataFrame:
    if column not in scrapes.columns:
        return pd.DataFrame(columns=["url", "t", column])
    inside = scrapes[(scrapes["t"] >= window.start) & (scrapes["t"] <= window.end)]
    return inside[["url", "t", column]].dropna()


def series_summary(frame: pd.DataFrame, window: Window) -> dict[str, Any]:
    """The series columns of one point from its tidy series frame (kvbench.ingest.metrics_series)."""
    out: dict[str, Any] = {}
    scrapes = scrape_table(frame) if not frame.empty else pd.DataFrame(columns=["url", "t"])
    deltas = {key: _counter_delta(scrapes, name, window) for key, name in _COUNTERS.items()}
    for key, direction in _LEGACY_DIRECTION.items():
        deltas[key] = _counter_delta(scrapes, (_COUNTERS[key], f"legacy_offload:{direction}"), window)
    out["prefix_cache_hit_rate"] = _ratio(deltas["prefix_cache_hits"], deltas["prefix_cache_queries"])
    out["external_hit_rate"] = _ratio(deltas["external_hits"], deltas["external_queries"])
    by_source = {key: _counter_delta(scrapes, f"by_source:{src}", window) for key, src in _SOURCES.items()}
    prompt_total = sum(by_source.values())
    out.update({key: _ratio(value, prompt_total) for key, value in by_source.items()})
    usage = _gauge(scrapes, "vllm:kv_cache_usage_perc", window)
    out["kv_usage_mean"] = float(usage.iloc[:, 2].mean()) if not usage.empty else math.nan
    out["kv_usage_max"] = float(usage.iloc[:, 2].max()) if not usage.empty else math.nan
    for key, name in (("running", "vllm:num_requests_running"), ("waiting", "vllm:num_requests_waiting")):
        values = _gauge(scrapes, name, window)
        per_server = values.groupby("url")[name] if not values.empty else None
        out[f"{key}_mean"] = float(per_server.mean().sum()) if per_server is not None else math.nan
        out[f"{key}_max"] = float(per_server.max().max()) if per_server is not None else math.nan
    out["preemptions"] = deltas["preemptions"]
    out["generation_tokens"] = deltas["generation_tokens"]
    out["offload_load_bytes"] = deltas["load_bytes"]
    out["offload_store_bytes"] = deltas["store_bytes"]
    out["offload_load_bytes_per_s"] = _ratio(deltas["load_bytes"], window.length_s)
    out["offload_store_bytes_per_s"] = _ratio(deltas["store_bytes"], window.length_s)
    return out


def record_summary(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The counter columns from a point record's before/after deltas (no series)."""

    def number(key: str) -> float:
        value = evidence.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan

    return {
        "prefix_cache_hit_rate": _ratio(
            number("prefix_cache_hits_delta"), number("prefix_cache_queries_delta")
        ),
        "external_hit_rate": _ratio(
            number("external_prefix_cache_hits_delta"), number("external_prefix_cache_queries_delta")
        ),
        "preemptions": number("preemptions_delta"),
    }


# --- PCP archive ----------------------------------------------------------------------------------------


def _wide(pcp: pd.DataFrame, metric: str) -> pd.DataFrame:
    """t x instance table of one metric (several hosts: instance prefixed by host)."""
    rows = pcp[pcp["metric"] == metric]
    if rows.empty:
        return pd.DataFrame()
    instance = rows["host"].astype(str) + "/" + rows["instance"].fillna("").astype(str)
    return rows.assign(key=instance).pivot_table(index="t", columns="key", values="value", aggfunc="last")


def _rates(table: pd.DataFrame) -> pd.DataFrame:
    """Per-second rates of a counter table between consecutive records (negative steps dropped)."""
    if len(table) < 2:
        return pd.DataFrame()
    steps = table.diff().iloc[1:]
    seconds = np.diff(table.index.to_numpy(dtype=float))
    rates = steps.div(seconds, axis=0)
    return rates.where(rates >= 0)


def _clip(pcp: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Records inside the window, from the last one at or before its start (so the first interval's rate
    and counter delta are known)."""
    if pcp.empty:
        return pcp
    before = pcp[pcp["t"] <= window.start]
    start = before["t"].max() if not before.empty else window.start
    return pcp[(pcp["t"] >= start) & (pcp["t"] <= window.end)]


def _busy(prefix: str, pcp: pd.DataFrame) -> pd.DataFrame:
    """Busy fraction per interval and CPU (or for the whole host with prefix kernel.all.cpu)."""
    states = {state: _rates(_wide(pcp, f"{prefix}.{state}")) for state in _CPU_STATES}
    if states["idle"].empty:
        return pd.DataFrame()
    present = [table for table in states.values() if not table.empty]
    total = sum(table.reindex_like(states["idle"]).fillna(0.0) for table in present)
    idle = states["idle"] + states["wait.total"].reindex_like(states["idle"]).fillna(0.0)
    return (1.0 - idle / total.where(total > 0)).clip(0.0, 1.0)


def _counter_window_delta(pcp: pd.DataFrame, metric: str) -> float:
    table = _wide(pcp, metric)
    if len(table) < 2:
        return math.nan
    steps = table.diff().iloc[1:]
    return float(steps.where(steps >= 0).sum().sum())


def pcp_summary(pcp: pd.DataFrame, window: Window) -> dict[str, Any]:
    """The system columns of one point from the tidy PCP frame (kvbench.ingest.metrics_pcp)."""
    out: dict[str, Any] = {column: math.nan for column in PCP_SUMMARY_COLUMNS}
    pcp = _clip(pcp, window)
    if pcp.empty:
        return out
    out["pcp_samples"] = float(pcp[pcp["t"] >= window.start]["t"].nunique())
    host = _busy("kernel.all.cpu", pcp)
    if not host.empty:
        series = host.mean(axis=1)
        out["cpu_busy_mean"], out["cpu_busy_max"] = float(series.mean()), float(series.max())
    per_cpu = _busy("kernel.percpu.cpu", pcp)
    if not per_cpu.empty:
        out["cpu_count"] = float(per_cpu.shape[1])
        saturated = (per_cpu >= SATURATED_CPU_BUSY).sum(axis=1)
        out["cpu_saturated_mean"], out["cpu_saturated_max"] = float(saturated.mean()), float(saturated.max())
        if math.isnan(out["cpu_busy_mean"]):
            series = per_cpu.mean(axis=1)
            out["cpu_busy_mean"], out["cpu_busy_max"] = float(series.mean()), float(series.max())
    for key, metric in (
        ("cpu_pressure_some", "kernel.all.pressure.cpu.some.total"),
        ("memory_pressure_some", "kernel.all.pressure.memory.some.total"),
        ("io_pressure_some", "kernel.all.pressure.io.some.total"),
    ):
        rates = _rates(_wide(pcp, metric))  # microseconds stalled per second
        out[key] = float(rates.mean().mean()) / 1e6 if not rates.empty else math.nan
    used = _wide(pcp, "mem.util.used")
    inside = used[used.index >= window.start] if not used.empty else used
    if not inside.empty:
        total = inside.sum(axis=1) * 1024.0  # kbyte
        out["mem_used_bytes_mean"], out["mem_used_bytes_max"] = float(total.mean()), float(total.max())
    gpu = _wide(pcp, "nvidia.gpuactive")
    gpu = gpu[gpu.index >= window.start] if not gpu.empty else gpu
    if not gpu.empty:
        out["gpu_util_mean"] = float(gpu.mean().mean()) / 100.0
    power = _wide(pcp, "nvidia.power")
    power = power[power.index >= window.start] if not power.empty else power
    if not power.empty:
        out["gpu_power_w_mean"] = float(power.sum(axis=1).mean()) / 1000.0  # milliwatts, summed over GPUs
    energy_mj = _counter_window_delta(pcp, "nvidia.energy")
    if math.isfinite(energy_mj):
        out["gpu_energy_j"] = energy_mj / 1000.0
    elif math.isfinite(out["gpu_power_w_mean"]):
        out["gpu_energy_j"] = out["gpu_power_w_mean"] * window.length_s
    memory = _wide(pcp, "redis.used_memory")
    memory = memory[memory.index >= window.start] if not memory.empty else memory
    if not memory.empty:
        out["store_memory_bytes_max"] = float(memory.sum(axis=1).max())
    commands = _rates(_wide(pcp, "redis.total_commands_processed"))
    if not commands.empty:
        out["store_ops_per_s"] = float(commands.sum(axis=1).mean())
    return out


def point_summary(
    series: pd.DataFrame | None,
    pcp: pd.DataFrame | None,
    window: Window | None,
    evidence: Mapping[str, Any],
    scrapes: tuple[int, int] = (0, 0),
    output_tokens: float = math.nan,
) -> dict[str, Any]:
    """Every METRICS_SUMMARY_COLUMNS value of one point. `output_tokens`: the benchmark's output tokens,
    used for joules_per_output_token when the series has no generation-token counter."""
    out = empty_summary()
    if window is not None and series is not None and not series.empty:
        out.update(series_summary(series, window))
        out["metrics_source"] = "series"
    else:
        out.update(record_summary(evidence))
        out["metrics_source"] = "snapshots" if evidence else None
    out["series_scrapes"], out["series_failed_scrapes"] = (float(n) for n in scrapes)
    if window is not None and pcp is not None and not pcp.empty:
        out.update(pcp_summary(pcp, window))
    tokens = out["generation_tokens"] if math.isfinite(out["generation_tokens"]) else output_tokens
    out["joules_per_output_token"] = _ratio(out["gpu_energy_j"], tokens)
    return out
