"""The report's KV-capacity section: per run and model, what one token and one block of KV cost, how large
the GPU KV cache was (as vLLM logged it) and the tier behind it (as configured), the working set of every
level beside each scenario's change against the baseline, and how long reloading one prefix takes at the
bandwidth the GPU probe measured. Where the working set fits on the GPU, offload cannot help, and it says so.

Pure: the inputs come from kvbench.ingest.capacity, the deltas from the analysis; kvbench.outputs writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kvbench.deltas import is_true
from kvbench.ingest.capacity import RunCapacity
from kvbench.markdown import md_table
from kvbench.plan.capacity import bytes_per_token, working_sets

CAPACITY_CSV = "kv_capacity.csv"
GIB = 1 << 30
# The probe piece whose host->device bandwidth a scenario's reload runs at (what its connector moves).
RELOAD_PIECE = {"OffloadingConnector": "offload_block", "LMCacheConnectorV1": "lmcache_chunk"}


@dataclass(frozen=True)
class Tier:
    kind: str  # cpu | remote | disk
    bytes: int


def tier_of(scenario: Mapping[str, Any]) -> Tier | None:
    """The KV tier behind the GPU as the scenario configures it; None when there is none."""
    transfer = (scenario.get("vllm") or {}).get("kv_transfer_config") or {}
    extra = transfer.get("kv_connector_extra_config") or {}
    capacity = scenario.get("capacity") or {}
    tp = int(capacity.get("tensor_parallel_size") or 1)
    if transfer.get("kv_connector") == "OffloadingConnector":
        if extra.get("cpu_bytes_to_use"):
            return Tier("cpu", int(extra["cpu_bytes_to_use"]))
        if extra.get("num_cpu_blocks"):
            # Every worker keeps its shard of the same blocks: the deployment holds num_cpu_blocks blocks.
            per_block = int(capacity.get("bytes_per_token") or 0) * int(scenario.get("block_size") or 16)
            return Tier("cpu", int(extra["num_cpu_blocks"]) * per_block)
    lmcache = scenario.get("lmcache") or {}
    if scenario.get("disk_tier"):
        return Tier("disk", int(scenario["disk_tier"].get("budget_bytes") or 0))
    if lmcache.get("local_cpu"):
        return Tier("cpu", int(float(lmcache.get("max_local_cpu_size") or 0) * GIB * tp))
    if lmcache.get("remote_url"):
        return Tier("remote", int(capacity.get("budget_bytes") or 0))
    return None


def probe_bandwidth(probes: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str, str], float]:
    """(piece, direction, memory) -> GB/s of the first host whose probe measured any."""
    for _host, probe in sorted(probes.items()):
        found = {
            (str(b["piece"]), str(b["direction"]), str(b["memory"])): float(b["gb_s"])
            for b in probe.get("bandwidth") or []
            if isinstance(b, Mapping) and b.get("gb_s")
        }
        if found:
            return found
    return {}


def _gpu_tokens(run: RunCapacity, baseline: str) -> tuple[int | None, str, str]:
    """The KV cache the working set is held against, where the number comes from, and its device (GPU;
    CPU on vLLM's CPU backend)."""
    logged = run.kv_cache
    if baseline in logged:
        return int(logged[baseline]["tokens"]), f"{baseline}'s vLLM log", str(logged[baseline]["device"])
    if logged:
        name, found = min(logged.items(), key=lambda item: int(item[1]["tokens"]))
        return int(found["tokens"]), f"{name}'s vLLM log", str(found["device"])
    pressure = run.plan.get("memory_pressure") or {}
    if pressure.get("gpu_tokens"):
        return int(pressure["gpu_tokens"]), "memory_pressure (planned, no server log read)", "GPU"
    return None, "unknown (no server log with the KV cache size)", "GPU"


def _turns_sent(plan: Mapping[str, Any]) -> int:
    return int((plan.get("guidellm") or {}).get("turns_sent") or plan["workload"]["turns"])


def level_frame(run: RunCapacity, deltas: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """kv_capacity.csv rows of one run: each level's working set against the GPU cache, each scenario's
    change against the baseline at that level."""
    plan = run.plan
    model = plan["model"]
    per_token = bytes_per_token(model)
    gpu_tokens, _, device = _gpu_tokens(run, baseline)
    mine = deltas[(deltas["run"] == run.run) & (deltas["concurrency"].astype(str) != "peak")]
    rows = []
    for level in working_sets(plan["workload"], plan["concurrency"], _turns_sent(plan)):
        row: dict[str, Any] = {
            "run": run.run,
            "model": model["name"],
            **level,
            "working_set_bytes": level["tokens"] * per_token,
            "gpu_kv_tokens": gpu_tokens,
            "kv_cache_device": device,
            "working_set_over_gpu": level["tokens"] / gpu_tokens if gpu_tokens else math.nan,
            "fits_on_gpu": (level["tokens"] <= gpu_tokens) if gpu_tokens else None,
        }
        at_level = mine[mine["concurrency"].astype(str) == str(level["concurrency"])]
        for _, delta in at_level.iterrows():
            row[f"delta_pct:{delta['scenario']}"] = delta["delta_pct"]
            row[f"significant:{delta['scenario']}"] = is_true(delta["significant"])
        rows.append(row)
    return pd.DataFrame(rows)


def _size(count: float) -> str:
    if count >= GIB:
        return f"{count / GIB:,.2f} GiB"
    return f"{count / (1 << 20):,.2f} MiB" if count >= 1 << 20 else f"{count / 1024:,.0f} KiB"


def _tokens(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{int(value):,}"


def _probe_lines(run: RunCapacity) -> list[str]:
    if not run.probes:
        return ["- GPU probe: none in the manifest (reload times need one)."]
    lines = []
    for host, probe in sorted(run.probes.items()):
        status = probe.get("status")
        if status != "ok":
            lines.append(f"- GPU probe on `{host}`: {status} ({probe.get('reason') or 'no reason given'})")
            continue
        gpu = next((g for g in probe.get("gpus") or [] if g.get("index") == probe.get("device")), {})
        pcie = gpu.get("pcie") or {}
        link = (
            f"PCIe gen {pcie.get('gen_current')}/{pcie.get('gen_max')} x{pcie.get('width_current')}/"
            f"{pcie.get('width_max')} (current/max)"
        )
        lines.append(
            f"- GPU probe on `{host}`: {probe.get('device_name') or gpu.get('name')}, "
            f"driver {gpu.get('driver')}, "
            f"CUDA {probe.get('cuda_driver')}, {link}, NUMA node {gpu.get('numa_node')}, "
            f"CPUs {gpu.get('cpu_affinity')}; torch {probe.get('torch')}"
        )
    return lines


def _probe_table(run: RunCapacity) -> str | None:
    bandwidth = probe_bandwidth(run.probes)
    if not bandwidth:
        return None
    sizes = {}
    for probe in run.probes.values():
        for b in probe.get("bandwidth") or []:
            sizes.setdefault(str(b["piece"]), int(b["bytes"]))
    rows = []
    for piece, size in sorted(sizes.items(), key=lambda item: item[1]):
        cells = [bandwidth.get((piece, d, m)) for m in ("pinned", "pageable") for d in ("h2d", "d2h")]
        rows.append([piece, _size(size), *("—" if c is None else f"{c:,.1f}" for c in cells)])
    headers = ["Piece", "Size", "H→D pinned", "D→H pinned", "H→D pageable", "D→H pageable"]
    return "Host↔device copy bandwidth (GB/s, median of the probe's trials):\n\n" + md_table(
        headers, rows, "lrrrrr"
    )


def _reload_ms(run: RunCapacity, scenario: Mapping[str, Any], bandwidth: Mapping) -> str:
    """One prefix back onto the GPUs at the probed host->device (pinned) bandwidth of the connector's piece;
    each of the TP ranks moves its share at once."""
    connector = ((scenario.get("vllm") or {}).get("kv_transfer_config") or {}).get("kv_connector")
    piece = RELOAD_PIECE.get(str(connector), "one_gib")
    gb_s = bandwidth.get((piece, "h2d", "pinned")) or bandwidth.get(("one_gib", "h2d", "pinned"))
    if not gb_s:
        return "—"
    tp = int((run.plan.get("vllm") or {}).get("tensor_parallel_size") or 1)
    prefix_bytes = int(run.plan["workload"]["prefix_tokens"]) * bytes_per_token(run.plan["model"]) / tp
    return f"{prefix_bytes / (gb_s * 1e9) * 1000:,.1f} ms ({piece} @ {gb_s:,.1f} GB/s)"


def _scenario_table(run: RunCapacity, per_token: int) -> str:
    bandwidth = probe_bandwidth(run.probes)
    rows = []
    for scenario in run.plan.get("scenarios") or []:
        name = str(scenario["name"])
        logged = run.kv_cache.get(name)
        tier = tier_of(scenario)
        rows.append(
            [
                name if scenario.get("supported", True) else f"{name} (skipped)",
                f"{logged['tokens']:,} ({logged['device']})" if logged else "—",
                f"{tier.kind}: {_size(tier.bytes)}" if tier else "none",
                f"{tier.bytes // per_token:,}" if tier and per_token else "—",
                _reload_ms(run, scenario, bandwidth) if tier else "—",
            ]
        )
    headers = [
        "Scenario",
        "KV cache (tokens, vLLM log)",
        "Tier behind it (configured)",
        "Tier (tokens)",
        "Reload one prefix",
    ]
    return md_table(headers, rows, "lrrrr")


def _level_table(levels: pd.DataFrame, scenarios: Sequence[str]) -> str:
    rows = []
    for _, level in levels.iterrows():
        cells: list[object] = [
            int(level["concurrency"]),
            int(level["prefix_count"]),
            _tokens(level["tokens"]),
            _size(float(level["working_set_bytes"])),
            "—" if math.isnan(level["working_set_over_gpu"]) else f"{level['working_set_over_gpu']:.3g}x",
            {True: "yes", False: "no"}.get(level["fits_on_gpu"], "—"),
        ]
        for scenario in scenarios:
            value = level.get(f"delta_pct:{scenario}")
            mark = "*" if level.get(f"significant:{scenario}") is True else ""
            cells.append("—" if value is None or pd.isna(value) else f"{value:+.1f}%{mark}")
        rows.append(cells)
    headers = ["Concurrency", "Prefixes", "Working set (tokens)", "Working set", "÷ KV cache", "Fits"]
    headers += [f"{s} Δ" for s in scenarios]
    return md_table(headers, rows, "rrrrrl" + "r" * len(scenarios))


def _fit_sentence(levels: pd.DataFrame, gpu_tokens: int | None, source: str, device: str) -> str:
    if not gpu_tokens:
        return "_The GPU KV cache size is unknown, so whether the working set fits cannot be said._"
    source = (
        f"{source}" if device == "GPU" else f"{source}; vLLM's {device} backend keeps it in {device} memory"
    )
    fits = [int(c) for c, f in zip(levels["concurrency"], levels["fits_on_gpu"], strict=True) if f is True]
    if fits and len(fits) == len(levels):
        return (
            f"**The working set fits in the {device} KV cache ({gpu_tokens:,} tokens, {source}) at every "
            "level: offload cannot help in this run**; a difference between scenarios here is not their "
            "tiers' doing."
        )
    if fits:
        return (
            f"At concurrency {', '.join(map(str, fits))} the working set fits in the {device} KV cache "
            f"({gpu_tokens:,} tokens, {source}): **offload cannot help there**. Above, it exceeds the KV "
            "cache and a tier behind it can serve evicted prefixes."
        )
    return (
        f"The working set exceeds the {device} KV cache ({gpu_tokens:,} tokens, {source}) at every level: "
        "evicted prefixes are recomputed unless a tier behind the GPU serves them."
    )


def run_section(run: RunCapacity, levels: pd.DataFrame, baseline: str, figure: str | None) -> str:
    plan = run.plan
    model = plan["model"]
    per_token = bytes_per_token(model)
    block = int((plan.get("kv_capacity") or {}).get("block_size") or plan["scenarios"][0]["block_size"])
    gpu_tokens, source, device = _gpu_tokens(run, baseline)
    parts = [
        f"- KV per token: {per_token:,} B (2 x {model['layers']} layers x {model['kv_heads']} KV heads x "
        f"{model['head_dim']} x {model.get('kv_dtype_bytes', 2)} B); per block of {block} tokens: "
        f"{per_token * block:,} B ({_size(per_token * block)}).",
        f"- Working set of a level: prefix count x {int(plan['workload']['prefix_tokens']):,} prefix tokens "
        "+ "
        f"concurrency x {_turns_sent(plan)} turn(s) x "
        f"{int(plan['workload']['prompt_tokens']) + int(plan['workload']['output_tokens'])} tokens of a live "
        "conversation.",
    ]
    pressure = plan.get("memory_pressure")
    if pressure:
        parts.append(
            f"- memory_pressure {pressure['fraction']:g}: vLLM's GPU cache set to "
            f"{pressure['num_gpu_blocks']:,} blocks = {pressure['gpu_tokens']:,} tokens "
            f"({pressure['fraction']:g} of the working set at "
            f"concurrency {pressure['at_concurrency']}) through --num-gpu-blocks-override."
        )
    parts += _probe_lines(run)
    sections = ["\n".join(parts), _scenario_table(run, per_token)]
    probe = _probe_table(run)
    if probe:
        sections.append(probe)
    scenarios = [
        s["name"] for s in plan.get("scenarios") or [] if s["name"] != baseline and s.get("supported", True)
    ]
    sections += [
        f"Working set per level against the {device} KV cache; Δ: output throughput against `{baseline}` "
        "at that level (* significant):",
        _level_table(levels, scenarios),
        _fit_sentence(levels, gpu_tokens, source, device),
    ]
    if figure:
        sections.append(f"![{model['name']}: KV working set against capacity]({figure})")
    return "\n\n".join(sections)


def capacity_section(
    runs: Sequence[RunCapacity], frames: Mapping[str, pd.DataFrame], baseline: str, figures: Mapping[str, str]
) -> str:
    """The section's Markdown: one part per run (its model named), in the order given."""
    parts = []
    for run in runs:
        title = f"### {run.plan['model']['name']}" + (f" (run `{run.run}`)" if len(runs) > 1 else "")
        parts += [title, run_section(run, frames[run.run], baseline, figures.get(run.run))]
        parts += [f"- _{problem}_" for problem in run.problems]
    return "\n\n".join(parts)
