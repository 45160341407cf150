"""Names and their order.

Order comes from the runs themselves: models by the size their run's manifest records (`model.params_b`),
scenarios in the order the manifests list them. Names no manifest orders fall back to the data kept here
(the original evaluation's models and scenario order, then the parameter count in a model's name); what
is still unknown comes after, by name. The analyzer works offline, without the harness catalogs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The evaluation's models with their sizes, smallest first: the fallback for runs without a manifest.
KNOWN_MODEL_SIZES_B: dict[str, float] = {
    "Qwen3-0.6B": 0.6,
    "Qwen3-8B": 8.0,
    "Qwen3-14B": 14.0,
    "Qwen3-32B-AWQ": 32.0,
}

# The evaluation's scenario order: the fallback for scenarios no manifest lists (the original evaluation's
# trees, loose files). Scenarios unknown to both follow, alphabetically.
SCENARIO_ORDER: tuple[str, ...] = (
    "no-offload",
    "no-prefix-cache",
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
    """Billions of parameters of a known model, else parsed from its name (`Qwen3.6-27B` -> 27), or None."""
    if name in KNOWN_MODEL_SIZES_B:
        return KNOWN_MODEL_SIZES_B[name]
    matches = _PARAMS_RE.findall(name)
    if not matches:
        return None
    value, unit = matches[-1]
    number = float(value)
    return number / 1000.0 if unit.lower() == "m" else number


@dataclass(frozen=True)
class Ordering:
    """The order of runs, models and scenarios in every table, figure and report of one analysis.

    `model_sizes_b`: model -> billions of parameters as the manifests record them; `scenarios`: the
    manifests' scenario lists merged in order of first appearance; `runs`: runs in the order they were read.
    """

    model_sizes_b: Mapping[str, float] = field(default_factory=dict)
    scenarios: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()

    @classmethod
    def from_runs(
        cls, model_sizes_b: Mapping[str, float], scenario_lists: Iterable[Iterable[str]], runs: Iterable[str]
    ) -> Ordering:
        merged = dict.fromkeys(canonical_scenario(s) for names in scenario_lists for s in names)
        return cls(dict(model_sizes_b), tuple(merged), tuple(dict.fromkeys(runs)))

    def model_key(self, name: str) -> tuple[int, float, str]:
        """Smallest model first; models whose size cannot be told come last, by name."""
        params = self.model_sizes_b.get(name)
        if params is None:
            params = model_params_b(name)
        return (1, math.inf, name) if params is None else (0, float(params), name)

    def scenario_key(self, name: str) -> tuple[int, int, str]:
        """Scenarios in the manifests' order, then the evaluation's, then unknown ones by name."""
        if name in self.scenarios:
            return (0, self.scenarios.index(name), name)
        if name in SCENARIO_ORDER:
            return (1, SCENARIO_ORDER.index(name), name)
        return (2, 0, name)

    def run_key(self, run: str) -> tuple[int, int, str]:
        """Runs in the order they were read; others by name."""
        return (0, self.runs.index(run), run) if run in self.runs else (1, 0, run)

    def models(self, names: Iterable[str]) -> list[str]:
        return sorted(set(names), key=self.model_key)

    def scenarios_of(self, names: Iterable[str]) -> list[str]:
        return sorted(set(names), key=self.scenario_key)


DEFAULT_ORDERING = Ordering()


def order_models(names: Iterable[str]) -> list[str]:
    """Models by size when no manifest says more (see Ordering)."""
    return DEFAULT_ORDERING.models(names)


def order_scenarios(names: Iterable[str]) -> list[str]:
    """Scenarios in the evaluation's order when no manifest says more (see Ordering)."""
    return DEFAULT_ORDERING.scenarios_of(names)


def safe_filename(name: str) -> str:
    """A model or run name usable inside a file name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "model"
