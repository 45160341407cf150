"""The KV-capacity model: what a model's KV cache costs per token and per block, how much KV the workload
keeps alive at each concurrency level, how large the GPU cache is under `memory_pressure`, and the piece sizes
the host<->device transfer probe measures. Pure: no I/O.

Working set of a level (tokens): the distinct shared prefixes (prefix count x prefix tokens) plus the live
conversations (concurrency x the tokens one conversation holds of its own at its last turn: every turn's
prompt and output, since later turns carry the earlier ones as history). The shared prefix is counted once,
among the prefixes, never per conversation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from kvbench.plan.errors import PlanError
from kvbench.plan.resolve import kv_bytes_per_token

GIB = 1 << 30
# LMCache's chunk_size default (the same in every release the catalog configures); the scenarios pin it too.
LMCACHE_CHUNK_TOKENS = 256
DEFAULT_BLOCK_SIZE = 16
# memory_pressure is a fraction of the working set at the highest level: above 0, at most 1.
PRESSURE_RANGE = (0.0, 1.0)


def bytes_per_token(model: Mapping[str, Any]) -> int:
    """KV bytes of one token: 2 (K and V) x layers x kv_heads x head_dim x dtype bytes."""
    return kv_bytes_per_token(dict(model), 1)


def bytes_per_block(model: Mapping[str, Any], block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    return bytes_per_token(model) * int(block_size)


def conversation_tokens(workload: Mapping[str, Any], turns_sent: int | None = None) -> int:
    """Tokens one conversation holds of its own at its last turn (the shared prefix excluded)."""
    turns = int(workload["turns"] if turns_sent is None else turns_sent)
    return turns * (int(workload["prompt_tokens"]) + int(workload["output_tokens"]))


def working_set(
    workload: Mapping[str, Any], concurrency: int, turns_sent: int | None = None
) -> dict[str, int]:
    """The KV working set of one level, in tokens: prefixes, live conversations and their sum."""
    prefix_count = int(concurrency) * int(workload["prefix_count_per_stream"])
    prefix_tokens = prefix_count * int(workload["prefix_tokens"])
    live_tokens = int(concurrency) * conversation_tokens(workload, turns_sent)
    return {
        "concurrency": int(concurrency),
        "prefix_count": prefix_count,
        "prefix_tokens": prefix_tokens,
        "live_tokens": live_tokens,
        "tokens": prefix_tokens + live_tokens,
    }


def working_sets(
    workload: Mapping[str, Any], levels: Iterable[int], turns_sent: int | None = None
) -> list[dict[str, int]]:
    return [working_set(workload, level, turns_sent) for level in sorted(int(c) for c in levels)]


def check_pressure(value: Any) -> float | None:
    """memory_pressure as a number, None when unset ("", null, 0 or off); PlanError naming the valid range."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none", "null")):
        return None
    low, high = PRESSURE_RANGE
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or math.isnan(number) or number < 0 or number > high:
        raise PlanError(
            f"memory_pressure must be a fraction of the working set at the highest level, greater than "
            f"{low:g} and at most {high:g} (e.g. 0.33), or empty for no override; got {value!r}"
        )
    return number or None


def pressure_blocks(fraction: float, working_set_tokens: int, block_size: int) -> int:
    """GPU blocks that hold `fraction` of a working set (rounded up; at least one)."""
    return max(1, math.ceil(float(fraction) * int(working_set_tokens) / int(block_size)))


def memory_pressure(
    fraction: float | None,
    model: Mapping[str, Any],
    workload: Mapping[str, Any],
    levels: Iterable[int],
    block_size: int,
    turns_sent: int | None = None,
    replicas: int = 1,
) -> dict[str, Any] | None:
    """The GPU KV cache that `fraction` of the highest level's working set sets (--num-gpu-blocks-override).

    With several replicas behind a router each gets an equal share, so the deployment's GPU caches together
    hold `fraction` of the working set. PlanError when one server's cache could not hold even one
    conversation (its prefix and its own turns): vLLM could not serve a single request.
    """
    if fraction is None:
        return None
    top = working_set(workload, max(int(c) for c in levels), turns_sent)
    blocks = pressure_blocks(fraction / max(1, int(replicas)), top["tokens"], block_size)
    one_conversation = int(workload["prefix_tokens"]) + conversation_tokens(workload, turns_sent)
    if blocks * int(block_size) < one_conversation:
        least = one_conversation * max(1, int(replicas)) / top["tokens"]
        raise PlanError(
            f"memory_pressure={fraction:g} gives a GPU KV cache of {blocks * int(block_size):,} tokens, "
            f"less than one conversation ({one_conversation:,} tokens); use at least {least:.4f}"
        )
    return {
        "fraction": float(fraction),
        "at_concurrency": top["concurrency"],
        "working_set_tokens": top["tokens"],
        "block_size": int(block_size),
        "replicas": max(1, int(replicas)),
        "num_gpu_blocks": blocks,
        "gpu_tokens": blocks * int(block_size),
        "gpu_bytes": blocks * bytes_per_block(model, block_size),
    }


def probe_pieces(
    model: Mapping[str, Any],
    block_size: int,
    tensor_parallel_size: int = 1,
    chunk_tokens: int = LMCACHE_CHUNK_TOKENS,
) -> list[dict[str, Any]]:
    """The host<->device copy sizes the transfer probe measures, as one GPU (one TP rank) moves them.

    - offload_block: one KV block of every layer (what native offload moves per block);
    - layer_piece: one layer's K (or V) of one block, the unit the copy kernels see;
    - lmcache_chunk: one LMCache chunk of every layer;
    - one_gib: a large copy, the link's ceiling.
    """
    tp = max(1, int(tensor_parallel_size))
    heads_per_rank = math.ceil(int(model["kv_heads"]) / tp)
    per_rank_token = 2 * int(model["layers"]) * heads_per_rank * int(model["head_dim"])
    per_rank_token *= int(model.get("kv_dtype_bytes", 2))
    layer_piece = (
        int(block_size) * heads_per_rank * int(model["head_dim"]) * int(model.get("kv_dtype_bytes", 2))
    )
    return [
        {"name": "offload_block", "bytes": per_rank_token * int(block_size)},
        {"name": "layer_piece", "bytes": layer_piece},
        {"name": "lmcache_chunk", "bytes": per_rank_token * int(chunk_tokens)},
        {"name": "one_gib", "bytes": GIB},
    ]


def reload_time_s(tokens: int, model: Mapping[str, Any], bandwidth_gb_s: float | None) -> float | None:
    """Seconds to move `tokens` of KV at `bandwidth_gb_s` (10^9 bytes/s); None without a bandwidth."""
    if not bandwidth_gb_s or bandwidth_gb_s <= 0 or math.isnan(bandwidth_gb_s):
        return None
    return int(tokens) * bytes_per_token(model) / (float(bandwidth_gb_s) * 1e9)


def kv_capacity(
    model: Mapping[str, Any],
    workload: Mapping[str, Any],
    levels: Iterable[int],
    block_size: int,
    tensor_parallel_size: int,
    turns_sent: int | None = None,
    chunk_tokens: int = LMCACHE_CHUNK_TOKENS,
) -> dict[str, Any]:
    """The plan's `kv_capacity`: the model's KV cost, each level's working set, the probe's piece sizes."""
    per_token = bytes_per_token(model)
    sets = working_sets(workload, levels, turns_sent)
    return {
        "bytes_per_token": per_token,
        "block_size": int(block_size),
        "bytes_per_block": per_token * int(block_size),
        "conversation_tokens": conversation_tokens(workload, turns_sent),
        "working_sets": [{**s, "bytes": s["tokens"] * per_token} for s in sets],
        "probe_pieces": probe_pieces(model, block_size, tensor_parallel_size, chunk_tokens),
    }
