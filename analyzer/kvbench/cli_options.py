"""Command-line options shared by `kvbench analyze`, `compare` and `adapt`: the statistics and the validity
thresholds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from kvbench.settings import CORRECTIONS, DEFAULT_RESAMPLES, DEFAULT_SEED, StatsOptions, Thresholds

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = Thresholds()


def _stack(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def alpha_option(function: F) -> F:
    return click.option(
        "--alpha",
        type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
        default=0.05,
        show_default=True,
        help="Significance level; intervals are (1 - alpha) intervals.",
    )(function)


stats_options = _stack(
    [
        alpha_option,
        click.option(
            "--correction",
            type=click.Choice(sorted(CORRECTIONS)),
            default="holm",
            show_default=True,
            help="Multiple-comparison correction within a run: holm (family-wise error) or bh "
            "(Benjamini-Hochberg, false discovery rate).",
        ),
        click.option(
            "--bootstrap-resamples",
            "resamples",
            type=click.IntRange(min=100),
            default=DEFAULT_RESAMPLES,
            show_default=True,
            help="Bootstrap resamples of the peak comparison.",
        ),
        click.option(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            show_default=True,
            help="Seed of the bootstrap (results are reproducible for a given seed).",
        ),
    ]
)

validity_options = _stack(
    [
        click.option(
            "--max-error-rate",
            type=click.FloatRange(0.0, 1.0),
            default=_DEFAULTS.max_error_rate,
            show_default=True,
            help="A point whose errored / all requests is above this is invalid.",
        ),
        click.option(
            "--min-completed-ratio",
            type=click.FloatRange(0.0, 1.0),
            default=_DEFAULTS.min_completed_ratio,
            show_default=True,
            help="A point whose successful / all requests sent is below this is invalid.",
        ),
        click.option(
            "--min-concurrency-ratio",
            type=click.FloatRange(0.0, 1.0),
            default=_DEFAULTS.min_concurrency_ratio,
            show_default=True,
            help="A point whose mean requests in flight / target concurrency is below this gets a warning.",
        ),
        click.option(
            "--min-window-ratio",
            type=click.FloatRange(0.0, 1.0),
            default=_DEFAULTS.min_window_ratio,
            show_default=True,
            help="A point whose measured window / requested duration is below this gets a warning.",
        ),
        click.option(
            "--include-invalid",
            is_flag=True,
            help="Use points judged invalid in peaks and deltas, marked; nothing that includes one is "
            "called significant.",
        ),
    ]
)


def stats_from(alpha: float, correction: str, resamples: int, seed: int) -> StatsOptions:
    return StatsOptions(alpha=alpha, correction=correction, resamples=resamples, seed=seed)


def thresholds_from(
    max_error_rate: float, min_completed_ratio: float, min_concurrency_ratio: float, min_window_ratio: float
) -> Thresholds:
    return Thresholds(max_error_rate, min_completed_ratio, min_concurrency_ratio, min_window_ratio)
