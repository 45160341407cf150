"""The load points of a sweep: their names, seeds and the order in which servers run them.

A point is one (scenario, concurrency, repetition). Every scenario receives the same prompts at the same
(concurrency, repetition), so scenarios are compared on identical traffic; what differs between points is
decided here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from kvbench.plan.errors import PlanError

# Seeds of repetition r start at base + SEED_STRIDE * (r - 1): a stride above any concurrency keeps the
# cold-cache seeds of two repetitions apart.
SEED_STRIDE = 100_000
REPETITION_ORDERS = ("blocked", "interleaved")


def point_dir(scenario: str, concurrency: int, repetition: int) -> str:
    """The point's directory under the run directory, e.g. ``no-offload/c0050-r1``."""
    return f"{scenario}/c{int(concurrency):04d}-r{int(repetition)}"


def point_slug(scenario: str, concurrency: int, repetition: int) -> str:
    """The point's name where only a DNS label fits (Kubernetes Jobs), e.g. ``no-offload-c0050-r1``."""
    return point_dir(scenario, concurrency, repetition).replace("/", "-")


def point_seed(base_seed: int, concurrency: int, repetition: int, warm_cache: bool) -> int:
    """GuideLLM's data seed for a point.

    Cold cache (the default): each level and repetition gets conversations of its own, so no level can hit a
    cache warmed by the level before it. Warm cache: every level of a repetition replays the same seed, so
    the levels share their prefixes (the published evaluation's accidental warm cache, made explicit).
    Each repetition always gets its own seed.
    """
    if not 0 < int(concurrency) < SEED_STRIDE:
        raise PlanError(f"concurrency {concurrency} is out of range (1..{SEED_STRIDE - 1})")
    if int(repetition) < 1:
        raise PlanError(f"repetition {repetition} must be 1 or more")
    seed = int(base_seed) + SEED_STRIDE * (int(repetition) - 1)
    return seed if warm_cache else seed + int(concurrency)


def schedule(scenarios: list[str], repetitions: int, order: str) -> list[dict[str, Any]]:
    """Server starts in run order: each segment is one scenario start serving the listed repetitions.

    ``blocked`` keeps one start per scenario (all its repetitions in a row); ``interleaved`` runs repetition r
    of every scenario before repetition r+1 of any, so that drift over hours cannot pass for an effect, at the
    cost of a start per scenario and repetition.
    """
    if order not in REPETITION_ORDERS:
        raise PlanError(f"unknown repetition_order {order!r}; valid: {', '.join(REPETITION_ORDERS)}")
    reps = list(range(1, int(repetitions) + 1))
    if order == "blocked":
        return [{"scenario": name, "repetitions": reps} for name in scenarios]
    return [{"scenario": name, "repetitions": [rep]} for rep in reps for name in scenarios]
