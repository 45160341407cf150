"""The settings of the statistics (StatsOptions) and of the validity checks (Thresholds).

Light to import on purpose: the command line builds its options from these defaults, and every
`kvbench record` call of the harness starts that command line.
"""

from __future__ import annotations

from dataclasses import dataclass

CORRECTIONS: dict[str, str] = {
    "holm": "Holm's step-down correction (controls the family-wise error rate)",
    "bh": "Benjamini-Hochberg correction (controls the false discovery rate)",
}
DEFAULT_SEED = 20260301
DEFAULT_RESAMPLES = 5000


@dataclass(frozen=True)
class StatsOptions:
    """How comparisons are tested: level, correction and the bootstrap's size and seed."""

    alpha: float = 0.05
    correction: str = "holm"
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must lie between 0 and 1, not {self.alpha}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"unknown correction {self.correction!r}; one of {', '.join(CORRECTIONS)}")
        if self.resamples < 100:
            raise ValueError(f"at least 100 bootstrap resamples, not {self.resamples}")

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha


@dataclass(frozen=True)
class Thresholds:
    """The limits of the validity checks (kvbench.validity)."""

    max_error_rate: float = 0.05  # errored / all requests above this: invalid
    min_completed_ratio: float = 0.5  # successful / all requests below this: invalid
    min_concurrency_ratio: float = 0.9  # GuideLLM's mean requests in flight / target below this: warn
    min_window_ratio: float = 0.5  # measured window / requested duration below this: warn
