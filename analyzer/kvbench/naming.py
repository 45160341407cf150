"""Names and their order: models by size, scenarios in the evaluation's order.

The analyzer never reads the harness catalogs, so the known orders live here as data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

# The evaluation's models, smallest first.
KNOWN_MODELS: tuple[str, ...] = ("Qwen3-0.6B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B-AWQ")

# The report order of the scenarios. Unknown scenarios follow, alphabetically.
SCENARIO_ORDER: tuple[str, ...] = (
    "no-offload",
    "native-offload",
    "lmcache-local",
    "lmcache-redis",
    "lmcache-valkey",
    "llm-d-redis",
    "llm-d-valkey",
    "llm-d-inmem",
)

# Other spellings of the same treatment found in the original evaluation's result trees
# (natoscott/benchmarks, llm-d-kvcache-offload-eval): run-benchmark.sh's default PARAMETERS
# value was "no-cpu-offload", and the v0.5.0 runs named vLLM's native offload with its default
# 10,000 CPU blocks "native-offload-10k". Variants with another capacity ("native-offload-20k",
# "lmcache-local-20kcpu", ...) are different treatments and keep their own names.
SCENARIO_ALIASES: dict[str, str] = {
    "no-cpu-offload": "no-offload",
    "baseline": "no-offload",
    "gpu-only": "no-offload",
    "native-offload-10k": "native-offload",
    "native-cpu-offload": "native-offload",
    "llm-d-in-memory": "llm-d-inmem",
    "llm-d-inmemory": "llm-d-inmem",
}

_PARAMS_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def canonical_scenario(name: str) -> str:
    """Map a scenario spelling to its canonical name; unknown names are kept verbatim."""
    stripped = name.strip()
    return SCENARIO_ALIASES.get(stripped.lower(), stripped)


def model_short_name(name: str) -> str:
    """`Qwen/Qwen3-14B` -> `Qwen3-14B` (the last path component)."""
    return name.strip().rstrip("/").rsplit("/", 1)[-1]


def model_params_b(name: str) -> float | None:
    """Parameter count in billions parsed from a model name (`Qwen3-0.6B` -> 0.6), or None."""
    known = {"Qwen3-0.6B": 0.6, "Qwen3-8B": 8.0, "Qwen3-14B": 14.0, "Qwen3-32B-AWQ": 32.0}
    if name in known:
        return known[name]
    matches = _PARAMS_RE.findall(name)
    if not matches:
        return None
    value, unit = matches[-1]
    number = float(value)
    return number / 1000.0 if unit.lower() == "m" else number


def model_sort_key(name: str) -> tuple[int, float, str]:
    """Smallest model first; models whose size cannot be told come last, by name."""
    params = model_params_b(name)
    if params is None:
        return (1, math.inf, name)
    return (0, params, name)


def scenario_sort_key(name: str) -> tuple[int, int, str]:
    """The evaluation's order first, then unknown scenarios by name."""
    try:
        return (0, SCENARIO_ORDER.index(name), name)
    except ValueError:
        return (1, 0, name)


def order_models(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=model_sort_key)


def order_scenarios(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=scenario_sort_key)


def safe_filename(name: str) -> str:
    """A model name usable inside a file name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "model"
