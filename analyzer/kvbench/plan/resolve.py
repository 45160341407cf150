"""Resolve a catalog scenario for a model, versions, platform and target: the settings every template renders.

Node templates and Kubernetes manifests read only the dictionary ``resolve_scenario`` returns (through the
plan); nothing else derives scenario settings. Equal offload capacity is sized here too (``capacity``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from kvbench.plan.errors import PlanError

GIB = 1 << 30
# Secrets never enter resolved settings (they are recorded in results): configs carry this marker, and the
# role that writes the real file on the host substitutes the store's password.
STORE_PASSWORD_MARKER = "${KVBENCH_STORE_PASSWORD}"
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_WHOLE_PLACEHOLDER = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")


def kv_bytes_per_token(model: dict[str, Any], tensor_parallel_size: int = 1) -> int:
    """KV bytes one token occupies across all TP ranks.

    KV heads are split across ranks; when there are fewer KV heads than ranks each rank holds a replica,
    so the deployment stores ceil(kv_heads / tp) heads on each of tp ranks.
    """
    try:
        layers, kv_heads = int(model["layers"]), int(model["kv_heads"])
        head_dim, dtype_bytes = int(model["head_dim"]), int(model.get("kv_dtype_bytes", 2))
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"model entry lacks KV geometry (layers, kv_heads, head_dim): {exc}") from exc
    tp = max(1, int(tensor_parallel_size))
    stored_heads = math.ceil(kv_heads / tp) * tp if kv_heads < tp else kv_heads
    return 2 * layers * stored_heads * head_dim * dtype_bytes


def capacity(model: dict[str, Any], budget_gib: float, block_size: int, tensor_parallel_size: int) -> dict:
    """Equal-capacity sizing: one byte budget expressed in each connector's own unit."""
    budget_gib = float(budget_gib)
    if budget_gib <= 0:
        raise PlanError(f"kv_offload_gib must be positive, got {budget_gib}")
    block_size, tp = int(block_size), int(tensor_parallel_size)
    per_token = kv_bytes_per_token(model, tp)
    budget_bytes = int(budget_gib * GIB)
    return {
        "budget_gib": budget_gib,
        "budget_bytes": budget_bytes,
        "bytes_per_token": per_token,
        "block_size": block_size,
        "tensor_parallel_size": tp,
        "tokens": budget_bytes // per_token,
        # vLLM 0.11-0.13 OffloadingConnector: every worker keeps its shard of the same blocks.
        "num_cpu_blocks_per_worker": budget_bytes // (per_token * block_size),
        # vLLM >= 0.14 OffloadingConnector: total bytes across all workers.
        "cpu_bytes_to_use": budget_bytes,
        # LMCache max_local_cpu_size is GiB per TP rank.
        "lmcache_gib_per_rank": round(budget_gib / tp, 4),
        # Disk tiers hold the same budget (max_local_disk_size is GiB per TP rank); LMCache stages disk reads
        # and writes through a small CPU tier in front (disk_front_gib).
        "lmcache_disk_gib_per_rank": round(budget_gib / tp, 4),
        "lmcache_disk_front_gib_per_rank": round(disk_front_gib(budget_gib) / tp, 4),
    }


# The CPU tier in front of a disk tier: an eighth of the budget, at least 1 GiB (LMCache allocates every chunk
# read from or written to disk there), never more than the budget. Small, so most hits must come from disk.
DISK_FRONT_FRACTION = 0.125
DISK_FRONT_MIN_GIB = 1.0


def disk_front_gib(budget_gib: float) -> float:
    """GiB (whole deployment) of the CPU tier in front of a disk tier of `budget_gib`."""
    return min(float(budget_gib), max(float(budget_gib) * DISK_FRONT_FRACTION, DISK_FRONT_MIN_GIB))


def _version(value: Any, what: str) -> Version | None:
    if value in (None, ""):
        return None
    try:
        return Version(str(value))
    except InvalidVersion as exc:
        raise PlanError(f"{what} version {value!r} is not a version number") from exc


def _pick(variants: list[dict], key: str, version: Version | None, scenario: str) -> dict | None:
    """First variant whose specifier (under `key`) admits `version`."""
    if version is None:
        raise PlanError(f"scenario {scenario} needs a {key} version, but the preset configures none")
    for variant in variants:
        try:
            spec = SpecifierSet(str(variant.get(key, "")))
        except InvalidSpecifier as exc:
            raise PlanError(f"scenario {scenario}: bad {key} specifier {variant.get(key)!r}") from exc
        if spec.contains(version, prereleases=True):
            return variant
    ranges = ", ".join(str(v.get(key)) for v in variants)
    raise PlanError(f"scenario {scenario} has no settings for {key} {version} (catalog covers: {ranges})")


def _unsupported_version(
    entry: dict[str, Any], found: dict[str, Version | None], scenario: str
) -> str | None:
    """The reason of the first `unsupported_versions` item whose specifier admits the configured version."""
    for item in entry.get("unsupported_versions") or []:
        component = next((k for k in ("vllm", "lmcache") if k in item), None)
        if component is None or found.get(component) is None:
            continue
        try:
            spec = SpecifierSet(str(item[component]))
        except InvalidSpecifier as exc:
            raise PlanError(f"scenario {scenario}: bad {component} specifier {item[component]!r}") from exc
        if spec.contains(found[component], prereleases=True):
            return f"{item.get('reason') or 'not supported'} (configured {component} {found[component]})"
    return None


def fill(value: Any, context: dict[str, Any], where: str) -> Any:
    """Replace {placeholders} recursively; a string that is one placeholder keeps the value's type."""
    if isinstance(value, dict):
        return {k: fill(v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, context, where) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(name: str) -> Any:
        if name not in context:
            raise PlanError(f"{where}: unknown placeholder {{{name}}} (known: {', '.join(sorted(context))})")
        return context[name]

    whole = _WHOLE_PLACEHOLDER.match(value)
    if whole:
        return lookup(whole.group(1))
    return _PLACEHOLDER.sub(lambda m: str(lookup(m.group(1))), value)


def store_url(flavour: str, address: str) -> str:
    """The URL of a Redis-protocol store as clients are given it; the password never enters it."""
    if flavour not in ("redis", "valkey"):
        raise PlanError(f"unknown store flavour {flavour!r}; valid: redis, valkey")
    if not address:
        raise PlanError(f"no address configured for the {flavour} store")
    return f"{flavour}://{address}"


def _compact_json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


def resolve_scenario(
    name: str,
    catalog: dict[str, Any],
    model: dict[str, Any],
    versions: dict[str, Any],
    platform: str,
    target: str,
    settings: dict[str, Any],
    platforms: dict[str, Any],
    targets: dict[str, Any],
) -> dict[str, Any]:
    """Resolve scenario `name` into the complete settings dictionary (docs/design.md)."""
    if name not in catalog:
        raise PlanError(f"unknown scenario {name!r}; valid: {', '.join(catalog)}")
    if platform not in platforms:
        raise PlanError(f"unknown platform {platform!r}; valid: {', '.join(platforms)}")
    if target not in targets:
        raise PlanError(f"unknown target {target!r}; valid: {', '.join(targets)}")
    entry = catalog[name] or {}
    platform_cfg = platforms[platform] or {}
    wiring = targets[target] or {}

    tp = int(settings.get("tensor_parallel_size", 1))
    block_size = int(settings.get("block_size") or platform_cfg.get("default_block_size", 16))
    served = str(settings.get("served_model_name", "model"))
    hash_seed = str(settings.get("hash_seed", "0"))
    cap = capacity(model, settings.get("kv_offload_gib", 1), block_size, tp)
    services = list(entry.get("services") or [])
    stores = settings.get("stores") or {}

    context: dict[str, Any] = {
        **{k: v for k, v in cap.items() if isinstance(v, (int, float, str))},
        "served_model_name": served,
        "block_size": block_size,
        "hash_seed": hash_seed,
        "kv_events_port": settings.get("kv_events_port", 5557),
        "epp_service": settings.get("epp_service", "epp"),
        "server_host": settings.get("server_host", "localhost"),
        "store_address": stores.get(services[0], "") if services else "",
        "store_password": STORE_PASSWORD_MARKER,
        "kv_events_replay_port": settings.get("kv_events_replay_port", 5558),
    }

    supported = platform in (entry.get("platforms") or [])
    skip_reason = None
    if not supported:
        skip_reason = (entry.get("unsupported") or {}).get(
            platform
        ) or f"not supported on platform {platform}"

    vllm_version = _version(versions.get("vllm"), "vLLM")
    # Nodes install LMCache with pip; a preset may name the nearest published wheel where its image's
    # LMCache has none (lmcache_pip). The catalog keys follow what will run.
    lmcache_release = versions.get("lmcache")
    if target == "nodes" and versions.get("lmcache_pip"):
        lmcache_release = versions["lmcache_pip"]
    lmcache_version = _version(lmcache_release, "LMCache")
    if supported:
        version_reason = _unsupported_version(entry, {"vllm": vllm_version, "lmcache": lmcache_version}, name)
        if version_reason:
            supported, skip_reason = False, version_reason
    disk_tier = None
    if entry.get("disk_tier") and supported:
        disk_root = str(settings.get("kv_disk_path") or wiring.get("kv_disk_path") or "")
        if not disk_root.startswith("/"):
            raise PlanError(
                f"scenario {name} has a disk tier, but the {target} target configures no absolute "
                f"kv_disk_path (kvbench_targets.{target}.kv_disk_path in group_vars/all/platforms.yml); "
                f"got {disk_root!r}"
            )
        disk_tier = {
            # One folder per scenario: a tier never finds another scenario's files.
            "path": f"{disk_root.rstrip('/')}/{name}",
            "budget_bytes": cap["budget_bytes"],
            "front_gib": disk_front_gib(cap["budget_gib"]),
        }
        context["disk_tier_path"] = disk_tier["path"]

    kv_transfer_config = None
    if entry.get("kv_transfer"):
        kv_transfer_config = dict(entry["kv_transfer"])
        if entry.get("kv_connector_extra_config") and supported:
            variant = _pick(entry["kv_connector_extra_config"], "vllm", vllm_version, name)
            kv_transfer_config["kv_connector_extra_config"] = fill(
                variant.get("config") or {}, context, f"{name}.kv_connector_extra_config"
            )

    lmcache = None
    lmcache_connector = None
    if entry.get("lmcache") and supported:
        variant = _pick(entry["lmcache"], "lmcache", lmcache_version, name)
        lmcache = fill(variant.get("config") or {}, context, f"{name}.lmcache")
        lmcache_connector = variant.get("connector")

    kv_events_config = None
    index = None
    if entry.get("index"):
        kv_events_config = {
            "enable_kv_cache_events": True,
            "publisher": "zmq",
            "endpoint": fill(wiring.get("kv_events_endpoint", "tcp://*:{kv_events_port}"), context, name),
            "topic": fill(
                wiring.get("kv_events_topic", "kv@{server_host}@{served_model_name}"), context, name
            ),
        }
        if wiring.get("kv_events_replay_endpoint"):
            # Lets a subscriber that missed events ask for them again (vLLM's replay ROUTER socket).
            kv_events_config["replay_endpoint"] = fill(wiring["kv_events_replay_endpoint"], context, name)
        store = entry["index"].get("store", "inmem")
        index = {
            "store": store,
            "address": stores.get(store) if store != "inmem" else None,
            "url": store_url(store, stores.get(store, "")) if store != "inmem" else None,
            "block_size": block_size,
            "hash_seed": hash_seed,
            "hash_algo": "sha256_cbor",
            "topic_filter": "kv@",
            "endpoint": kv_events_config["endpoint"],
            "replay_endpoint": kv_events_config.get("replay_endpoint"),
        }

    args: list[str] = [
        "--served-model-name", served,
        "--port", str(settings.get("port", 8000)),
        "--tensor-parallel-size", str(tp),
        "--max-num-seqs", str(settings.get("max_num_seqs", 1024)),
        "--block-size", str(block_size),
        # The control scenario `no-prefix-cache` turns vLLM's own prefix cache off (vLLM's boolean flags
        # take a --no- form): it shows the size of the effect every other treatment works on.
        "--enable-prefix-caching" if entry.get("prefix_caching", True) else "--no-enable-prefix-caching",
    ]  # fmt: skip
    args += [str(a) for a in platform_cfg.get("vllm_args") or []]
    if kv_transfer_config:
        args += ["--kv-transfer-config", _compact_json(kv_transfer_config)]
    if kv_events_config:
        # The index keys blocks by vLLM's hashes: both sides must hash alike (algorithm, block size, seed).
        args += [
            "--kv-events-config",
            _compact_json(kv_events_config),
            "--prefix-caching-hash-algo",
            "sha256_cbor",
        ]
    if settings.get("num_gpu_blocks_override"):
        # memory_pressure: the GPU KV cache sized as a fraction of the workload's working set
        # (kvbench.plan.capacity); vLLM's CacheConfig.num_gpu_blocks_override replaces the profiled count.
        args += ["--num-gpu-blocks-override", str(int(settings["num_gpu_blocks_override"]))]
    args += [str(a) for a in settings.get("extra_vllm_args") or []]

    env: dict[str, str] = {
        "PYTHONHASHSEED": hash_seed,
        # /reset_prefix_cache between load points is a dev-mode endpoint.
        "VLLM_SERVER_DEV_MODE": "1",
    }
    env.update({k: str(v) for k, v in (platform_cfg.get("vllm_env") or {}).items()})
    if lmcache is not None:
        env["LMCACHE_CONFIG_FILE"] = str(wiring.get("lmcache_config_file", "/etc/kvbench/lmcache.yaml"))

    return {
        "name": name,
        "description": entry.get("description", ""),
        "supported": supported,
        "skip_reason": skip_reason,
        "platform": platform,
        "target": target,
        "versions": {"vllm": versions.get("vllm"), "lmcache": lmcache_release},
        "served_model_name": served,
        "block_size": block_size,
        "hash_seed": hash_seed,
        "vllm": {
            "args": args,
            "env": env,
            "kv_transfer_config": kv_transfer_config,
            "kv_events_config": kv_events_config,
        },
        "lmcache": lmcache,
        "lmcache_connector": lmcache_connector,
        "index": index,
        "services": services,
        "stores": {
            flavour: {"address": stores.get(flavour, ""), "url": store_url(flavour, stores.get(flavour, ""))}
            for flavour in services
        },
        "router": entry.get("router", "none"),
        "prefix_caching": bool(entry.get("prefix_caching", True)),
        "capacity": cap,
        # The file-backed tier behind the connector (path on the serving host or in the pod), or None.
        "disk_tier": disk_tier,
        # vLLM servers behind the router (kubernetes), each of tensor_parallel_size GPUs.
        "replicas": int(settings.get("replicas", 1)),
    }


def csv_list(value: Any) -> list:
    """`-e scenarios=a,b` arrives as a string; `-e '{"scenarios": [...]}'` as a list. Accept both."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, int):
        return [value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return list(json.loads(text))
        except json.JSONDecodeError:
            pass
    return [part.strip() for part in text.strip("[]").split(",") if part.strip()]
