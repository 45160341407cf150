"""Build the plan of a sweep once, from the request and the catalogs: every later step only reads it.

The request is what the user asked for (``-e`` options, inventory) plus the catalogs as Ansible loaded them
(``group_vars/all``). ``build_plan`` checks every name and number before any host is touched, resolves each
scenario, sizes the offload tiers, and lists every load point with its directory, seed and GuideLLM command
line. The hash of the part that defines the experiment names the run, so the same request lands in the same
run directory (and resumes there), while a changed setting starts a new run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kvbench.plan import guidellm
from kvbench.plan.capacity import LMCACHE_CHUNK_TOKENS, check_pressure, kv_capacity, memory_pressure
from kvbench.plan.errors import PlanError
from kvbench.plan.points import SEED_STRIDE, point_dir, point_seed, point_slug, schedule
from kvbench.plan.resolve import csv_list, resolve_scenario

PLAN_SCHEMA_VERSION = 1
TARGETS = ("nodes", "kubernetes")
WORKLOAD_KEYS = (
    "duration_s",
    "prompt_tokens",
    "output_tokens",
    "prefix_tokens",
    "prefix_count_per_stream",
    "turns",
    "seed",
)


def _choice(value: Any, valid: list[str], what: str) -> str:
    if value in (None, ""):
        raise PlanError(f"{what} is required; valid: {', '.join(valid)}")
    if str(value) not in valid:
        raise PlanError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return str(value)


def _int(value: Any, what: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise PlanError(f"{what} must be a whole number, got {value!r}") from None
    if number < minimum or str(value).strip() not in (str(number), f"{number}.0"):
        raise PlanError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return number


def _float(value: Any, what: str, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{what} must be a number, got {value!r}") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise PlanError(f"{what} must be {'zero or more' if allow_zero else 'positive'}, got {value!r}")
    return number


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise PlanError(f"{what} must be true or false, got {value!r}")


def check_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request with every name checked against the catalogs and every number in range."""
    catalog = request.get("catalog") or {}
    for part in ("models", "scenarios", "presets", "platforms", "targets"):
        if not isinstance(catalog.get(part), dict) or not catalog[part]:
            raise PlanError(f"the request carries no {part} catalog (group_vars/all)")
    model = _choice(request.get("model"), list(catalog["models"]), "model")
    target = _choice(request.get("target", "nodes"), list(TARGETS), "target")
    if target not in catalog["targets"]:
        raise PlanError(f"target {target!r} has no wiring in kvbench_targets (group_vars/all/platforms.yml)")
    platform = _choice(request.get("platform", "cuda"), list(catalog["platforms"]), "platform")
    preset = _choice(request.get("preset"), list(catalog["presets"]), "preset")
    # Empty means the whole matrix: every scenario but the controls that run only when named.
    scenarios = [str(s) for s in csv_list(request.get("scenarios"))] or [
        name for name, entry in catalog["scenarios"].items() if not (entry or {}).get("only_when_named")
    ]
    unknown = [s for s in scenarios if s not in catalog["scenarios"]]
    if unknown:
        raise PlanError(f"unknown scenario(s) {', '.join(unknown)}; valid: {', '.join(catalog['scenarios'])}")
    if len(set(scenarios)) != len(scenarios):
        raise PlanError(f"scenarios are listed twice: {', '.join(scenarios)}")
    levels = [_int(c, "concurrency", 1) for c in csv_list(request.get("concurrency"))]
    if not levels:
        raise PlanError("concurrency needs at least one level, e.g. 1,50,100")
    if max(levels) >= SEED_STRIDE:
        raise PlanError(f"concurrency {max(levels)} is out of range (1..{SEED_STRIDE - 1})")
    if len(set(levels)) != len(levels):
        raise PlanError(f"concurrency levels are listed twice: {levels}")
    raw_workload = request.get("workload") or {}
    missing = [k for k in WORKLOAD_KEYS if k not in raw_workload]
    if missing:
        raise PlanError(f"the workload lacks {', '.join(missing)}")
    minimum = {"prefix_tokens": 0, "seed": 0, "prefix_count_per_stream": 1}
    workload = {k: _int(raw_workload[k], k, minimum.get(k, 1)) for k in WORKLOAD_KEYS}
    vllm = dict(request.get("vllm") or {})
    vllm["tensor_parallel_size"] = _int(vllm.get("tensor_parallel_size", 1), "tensor_parallel_size", 1)
    replicas = vllm.get("replicas")
    vllm["replicas"] = _int(1 if replicas in (None, "") else replicas, "replicas", 1)
    if vllm["replicas"] > 1 and target != "kubernetes":
        # The nodes target starts one vLLM per serving host, with no router in front: routing has no choice.
        raise PlanError(
            f"replicas={vllm['replicas']} needs the kubernetes target (target={target}): only there does a "
            "router (the llm-d EPP) choose between replicas; use replicas=1 on nodes"
        )
    vllm["max_num_seqs"] = _int(vllm.get("max_num_seqs", 1024), "max_num_seqs", 1)
    if vllm.get("block_size") not in (None, ""):
        vllm["block_size"] = _int(vllm["block_size"], "block_size", 1)
    vllm["kv_offload_gib"] = _float(vllm.get("kv_offload_gib", 1), "kv_offload_gib")
    vllm["hash_seed"] = str(vllm.get("hash_seed", "0"))
    vllm["port"] = _int(vllm.get("port", 8000), "port", 1)
    order = _choice(
        request.get("repetition_order", "blocked"), ["blocked", "interleaved"], "repetition_order"
    )
    repetitions = _int(request.get("repetitions", 1), "repetitions", 1)
    target_ci_pct = _float(request.get("target_ci_pct") or 0, "target_ci_pct", allow_zero=True)
    max_repetitions = _int(request.get("max_repetitions") or repetitions, "max_repetitions", 1)
    if target_ci_pct and max_repetitions <= repetitions:
        raise PlanError(
            f"target_ci_pct={target_ci_pct} adds repetitions up to max_repetitions, which must exceed "
            f"repetitions ({repetitions}); got max_repetitions={max_repetitions}"
        )
    return {
        "model": model,
        "target": target,
        "platform": platform,
        "preset": preset,
        "scenarios": scenarios,
        "concurrency": levels,
        "repetitions": repetitions,
        "repetition_order": order,
        # Adaptive mode: after the schedule, `kvbench adapt` asks for repetitions of the cells whose 95 %
        # interval is still wider than +/- target_ci_pct % of their mean, up to max_repetitions.
        "adaptive": {"target_ci_pct": target_ci_pct, "max_repetitions": max_repetitions}
        if target_ci_pct
        else None,
        "warm_cache": _bool(request.get("warm_cache", False), "warm_cache"),
        # The GPU KV cache as a fraction of the working set at the highest level (kvbench.plan.capacity).
        "memory_pressure": check_pressure(request.get("memory_pressure")),
        "workload": workload,
        "vllm": vllm,
        "wiring": dict(request.get("wiring") or {}),
        "guidellm": dict(request.get("guidellm") or {}),
        "run_id": str(request.get("run_id") or ""),
    }


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_plan(request: dict[str, Any]) -> dict[str, Any]:
    """The whole plan (docs/design.md "plan.json") for a request; PlanError names what is wrong."""
    checked = check_request(request)
    catalog = request["catalog"]
    model_entry = {**catalog["models"][checked["model"]], "name": checked["model"]}
    versions = dict(catalog["presets"][checked["preset"]])
    target, wiring, vllm = checked["target"], checked["wiring"], checked["vllm"]
    pressure = _memory_pressure(checked, catalog, model_entry)
    settings = {
        "num_gpu_blocks_override": pressure["num_gpu_blocks"] if pressure else None,
        # Real deployments serve the Hugging Face id (the EPP tokenizes and keys blocks by it).
        "served_model_name": wiring.get("served_model_name") or model_entry.get("hf_id") or checked["model"],
        "tensor_parallel_size": vllm["tensor_parallel_size"],
        "replicas": vllm["replicas"],
        "max_num_seqs": vllm["max_num_seqs"],
        "block_size": vllm.get("block_size"),
        "hash_seed": vllm["hash_seed"],
        "kv_offload_gib": vllm["kv_offload_gib"],
        "port": vllm["port"],
        "extra_vllm_args": vllm.get("extra_args") or [],
        "stores": wiring.get("store_addresses") or catalog["targets"][target].get("store_addresses") or {},
        "kv_events_port": int(wiring.get("kv_events_port", 5557)),
        "server_host": wiring.get("server_host", "localhost"),
        "epp_service": wiring.get("epp_service", "epp"),
    }
    scenarios = [
        resolve_scenario(
            name,
            catalog=catalog["scenarios"],
            model=model_entry,
            versions=versions,
            platform=checked["platform"],
            target=target,
            settings=settings,
            platforms=catalog["platforms"],
            targets=catalog["targets"],
        )
        for name in checked["scenarios"]
    ]
    client = {**checked["guidellm"]}
    client["model"] = client.get("model") or settings["served_model_name"]
    release = str(client.get("version") or "")
    try:
        dialect = guidellm.dialect(release)
    except guidellm.GuideLLMError as exc:
        raise PlanError(f"guidellm_release: {exc}") from None
    experiment = {
        "model": model_entry,
        "target": target,
        "platform": checked["platform"],
        "preset": checked["preset"],
        "versions": versions,
        "concurrency": checked["concurrency"],
        "warm_cache": checked["warm_cache"],
        "workload": checked["workload"],
        **({"memory_pressure": pressure} if pressure else {}),
        "scenarios": scenarios,
        "guidellm": release,
    }
    plan_hash = _digest(experiment)
    run_id = checked["run_id"] or f"{checked['model']}-{target}-{plan_hash[:8]}"
    output_root = str(client.get("output_root") or "{run_id}").replace("{run_id}", run_id).rstrip("/")
    # Adaptive mode plans every repetition it may run; the schedule starts with the first `repetitions`.
    planned = (checked["adaptive"] or {}).get("max_repetitions") or checked["repetitions"]
    points = [
        _point(checked, scenario, level, rep, client, output_root, release)
        for scenario in checked["scenarios"]
        for rep in range(1, planned + 1)
        for level in checked["concurrency"]
    ]
    segments = schedule(checked["scenarios"], checked["repetitions"], checked["repetition_order"])
    by_scenario = {s["name"]: s for s in scenarios}
    for number, segment in enumerate(segments, start=1):
        segment["number"] = number
        segment["supported"] = by_scenario[segment["scenario"]]["supported"]
        segment["points"] = [
            p["id"]
            for p in points
            if p["scenario"] == segment["scenario"] and p["repetition"] in segment["repetitions"]
        ]
    sample = points[0]["guidellm_args"] if points else None
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        "kind": "kvbench.plan",
        "run_id": run_id,
        "plan_hash": plan_hash,
        "model": model_entry,
        "target": target,
        "platform": checked["platform"],
        "preset": checked["preset"],
        "versions": {**versions, "guidellm": release},
        "concurrency": checked["concurrency"],
        "repetitions": checked["repetitions"],
        "repetition_order": checked["repetition_order"],
        "adaptive": checked["adaptive"],
        "warm_cache": checked["warm_cache"],
        "workload": checked["workload"],
        "vllm": vllm,
        "guidellm": {
            "version": release,
            "dialect": dialect,
            "turns_sent": guidellm.turns_sent(release, checked["workload"]["turns"]),
            "warnings": guidellm.warnings(release, sample) if sample else [],
            "output_root": output_root,
        },
        "scenarios": scenarios,
        "points": [{k: v for k, v in p.items() if k != "guidellm_args"} for p in points],
        "schedule": segments,
        "memory_pressure": pressure,
        "kv_capacity": _kv_capacity(checked, scenarios, model_entry, release),
    }


def _block_size(checked: dict[str, Any], catalog: dict[str, Any]) -> int:
    platform = catalog["platforms"][checked["platform"]] or {}
    return int(checked["vllm"].get("block_size") or platform.get("default_block_size", 16))


def _turns_sent(checked: dict[str, Any]) -> int:
    try:
        return guidellm.turns_sent(
            str(checked["guidellm"].get("version") or ""), checked["workload"]["turns"]
        )
    except guidellm.GuideLLMError as exc:
        raise PlanError(f"guidellm_release: {exc}") from None


def _memory_pressure(
    checked: dict[str, Any], catalog: dict[str, Any], model: dict[str, Any]
) -> dict[str, Any] | None:
    """--num-gpu-blocks-override from memory_pressure; None when the option is unset."""
    if checked["memory_pressure"] is None:
        return None
    return memory_pressure(
        checked["memory_pressure"],
        model,
        checked["workload"],
        checked["concurrency"],
        _block_size(checked, catalog),
        _turns_sent(checked),
        checked["vllm"].get("replicas", 1),
    )


def _kv_capacity(
    checked: dict[str, Any], scenarios: list[dict[str, Any]], model: dict[str, Any], release: str
) -> dict[str, Any]:
    """The model's KV cost, each level's working set, and the piece sizes the GPU probe measures."""
    chunks = [
        int(s["lmcache"]["chunk_size"]) for s in scenarios if (s.get("lmcache") or {}).get("chunk_size")
    ]
    block_size = scenarios[0]["block_size"] if scenarios else int(checked["vllm"].get("block_size") or 16)
    return kv_capacity(
        model,
        checked["workload"],
        checked["concurrency"],
        block_size,
        checked["vllm"]["tensor_parallel_size"],
        guidellm.turns_sent(release, checked["workload"]["turns"]),
        chunks[0] if chunks else LMCACHE_CHUNK_TOKENS,
    )


def _point(
    checked: dict[str, Any],
    scenario: str,
    concurrency: int,
    repetition: int,
    client: dict[str, Any],
    output_root: str,
    release: str,
) -> dict[str, Any]:
    workload = checked["workload"]
    directory = point_dir(scenario, concurrency, repetition)
    seed = point_seed(workload["seed"], concurrency, repetition, checked["warm_cache"])
    prefix_count = concurrency * workload["prefix_count_per_stream"]
    output_dir = f"{output_root}/{directory}"
    args = guidellm.PointArgs(
        executable=str(client.get("executable") or "guidellm"),
        target_url=str(client.get("target_url") or ""),
        model=str(client.get("model") or ""),
        tokenizer=str(client.get("tokenizer") or ""),
        concurrency=concurrency,
        duration_s=workload["duration_s"],
        prompt_tokens=workload["prompt_tokens"],
        output_tokens=workload["output_tokens"],
        prefix_tokens=workload["prefix_tokens"],
        prefix_count=prefix_count,
        turns=workload["turns"],
        seed=seed,
        output_path=f"{output_dir}/guidellm.json",
        request_timeout_s=float(client.get("request_timeout_s", 600)),
        warmup=client.get("warmup"),
        cooldown=client.get("cooldown"),
        request_samples=int(client.get("request_samples", 0)),
        labels=tuple(sorted((str(k), str(v)) for k, v in (client.get("labels") or {}).items())),
    )
    return {
        "id": directory,
        "dir": directory,
        "slug": point_slug(scenario, concurrency, repetition),
        "scenario": scenario,
        "concurrency": concurrency,
        "repetition": repetition,
        "seed": seed,
        "prefix_count": prefix_count,
        "output_dir": output_dir,
        "argv": guidellm.build_argv(release, args),
        "guidellm_args": args,
    }
