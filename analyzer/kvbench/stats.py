"""Statistics over repetitions. Pure: tables and arrays in, tables and numbers out; nothing here reads or
writes a file.

- Per cell (run, model, scenario, concurrency): n, mean, standard deviation, coefficient of variation and
  the Student-t interval of the mean (`cell_stats`); the cell's measurement resolution: one request's output
  tokens over the measured window, the smallest change of throughput one request more or less makes.
- Comparing a treated group with a reference group (a scenario with the baseline, run B with run A):
  per concurrency level Welch's t-test on log throughput, whose interval is an interval of the ratio
  (`welch_log_ratio`); at the peak a bootstrap over repetitions that recomputes both peaks
  (`bootstrap_peak_ratio`), since taking the maximum over levels biases a naive test.
- Multiple-comparison correction across a family of comparisons (`adjust`): Holm (default) or
  Benjamini-Hochberg.
- `needs_more`: the adaptive-repetition decision (`kvbench adapt`), on the same cell statistics.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from kvbench.settings import CORRECTIONS, DEFAULT_RESAMPLES, DEFAULT_SEED, StatsOptions

__all__ = [
    "CORRECTIONS",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "THROUGHPUT",
    "StatsOptions",
    "adjust",
    "bootstrap_peak_ratio",
    "cell_stats",
    "needs_more",
    "summarize",
    "welch_log_ratio",
]

THROUGHPUT = "output_tok_s_successful"
CELL_KEY: tuple[str, ...] = ("run", "model", "scenario", "concurrency")
# Names the harness uses for a metric -> the table's column.
METRIC_ALIASES: dict[str, str] = {
    "output_tokens_per_s": THROUGHPUT,
    "output_tokens_per_second": THROUGHPUT,
    "output_throughput": THROUGHPUT,
}
CELL_COLUMNS: tuple[str, ...] = (
    *CELL_KEY,
    "n",
    "mean",
    "std",
    "cv_pct",
    "ci_low",
    "ci_high",
    "ci_pct",
    "resolution",
    "resolution_pct",
)


def metric_column(name: str) -> str:
    """The table column of a metric name (`output_tokens_per_s` -> output_tok_s_successful)."""
    return METRIC_ALIASES.get(name, name)


def usable(frame: pd.DataFrame, metric: str = THROUGHPUT, include_invalid: bool = False) -> pd.DataFrame:
    """Rows that statistics may use: status ok, a concurrency level, a value of `metric`, and (unless
    `include_invalid`) a validity verdict other than invalid where the table has verdicts."""
    mask = (frame["status"] == "ok") & frame["concurrency"].notna() & frame[metric].notna()
    if not include_invalid and "verdict" in frame.columns:
        mask &= frame["verdict"] != "invalid"
    return frame.loc[mask]


def _floats(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype(float)


def point_resolution(frame: pd.DataFrame) -> pd.Series:
    """Per row: one request's output tokens divided by the measured window (tok/s).

    Output tokens per request are GuideLLM's measured mean where the report has it, else the workload's
    requested output tokens; the window is the benchmark's measured duration, else the requested one.
    """
    tokens = _floats(frame["output_tokens_mean"])
    if "output_tokens" in frame.columns:
        tokens = tokens.where(tokens > 0, _floats(frame["output_tokens"]))
    window = _floats(frame["duration_s"])
    if "requested_duration_s" in frame.columns:
        window = window.where(window > 0, _floats(frame["requested_duration_s"]))
    resolution = tokens / window
    return resolution.where(np.isfinite(resolution) & (resolution > 0))


@dataclass(frozen=True)
class Summary:
    """One cell's repetitions."""

    n: int
    mean: float
    std: float
    cv_pct: float
    ci_low: float
    ci_high: float

    @property
    def ci_pct(self) -> float:
        """Half-width of the interval in % of the mean."""
        if self.n < 2 or not self.mean:
            return math.nan
        return (self.ci_high - self.ci_low) / 2.0 / abs(self.mean) * 100.0


def summarize(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Summary:
    """n, mean, sample standard deviation, CV and the t interval of the mean; NaN where n is too small."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    n = int(data.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    cv_pct = std / abs(mean) * 100.0 if mean else math.nan
    if std == 0.0:
        return Summary(n, mean, std, cv_pct, mean, mean)
    low, high = sps.t.interval(confidence, n - 1, loc=mean, scale=float(sps.sem(data)))
    return Summary(n, mean, std, cv_pct, float(low), float(high))


def cell_stats(rows: pd.DataFrame, metric: str = THROUGHPUT, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (run, model, scenario, concurrency) of `rows` (already the usable rows): CELL_COLUMNS."""
    if rows.empty:
        return pd.DataFrame(columns=list(CELL_COLUMNS))
    data = rows.assign(_value=_floats(rows[metric]), _resolution=point_resolution(rows))
    records: list[dict[str, Any]] = []
    for key, group in data.groupby(list(CELL_KEY), sort=False):
        summary = summarize(group["_value"].to_numpy(), confidence)
        resolution = float(group["_resolution"].mean()) if group["_resolution"].notna().any() else math.nan
        records.append(
            {
                **dict(zip(CELL_KEY, key, strict=True)),
                "n": summary.n,
                "mean": summary.mean,
                "std": summary.std,
                "cv_pct": summary.cv_pct,
                "ci_low": summary.ci_low,
                "ci_high": summary.ci_high,
                "ci_pct": summary.ci_pct,
                "resolution": resolution,
                "resolution_pct": resolution / summary.mean * 100.0 if summary.mean else math.nan,
            }
        )
    return pd.DataFrame(records, columns=list(CELL_COLUMNS))


@dataclass(frozen=True)
class Delta:
    """A treated group against a reference group: the change in %, its interval and the test's p-value.

    `note` says why the interval or the p-value is missing (one repetition, no variation, ...).
    """

    delta_pct: float
    ci_low_pct: float = math.nan
    ci_high_pct: float = math.nan
    p_value: float = math.nan
    note: str | None = None


def _pct(log_ratio: float) -> float:
    return math.expm1(log_ratio) * 100.0


def _ratio_pct(treated_mean: float, reference_mean: float) -> float:
    if not reference_mean or math.isnan(reference_mean) or math.isnan(treated_mean):
        return math.nan
    return (treated_mean / reference_mean - 1.0) * 100.0


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    return data[np.isfinite(data)]


def welch_log_ratio(
    treated: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> Delta:
    """Welch's t-test on log values. `delta_pct` is the change of the arithmetic means; the interval is the
    t interval of the difference of mean logs, mapped back to a ratio (a ratio of geometric means)."""
    a, b = _finite(treated), _finite(reference)
    delta = _ratio_pct(float(a.mean()) if a.size else math.nan, float(b.mean()) if b.size else math.nan)
    if a.size < 2 or b.size < 2:
        return Delta(delta, note="one repetition: no interval")
    if (a <= 0).any() or (b <= 0).any():
        return Delta(delta, note="a repetition measured no throughput: no interval")
    log_a, log_b = np.log(a), np.log(b)
    if log_a.std() == 0.0 and log_b.std() == 0.0:
        return Delta(delta, note="no variation between repetitions: no interval")
    result = sps.ttest_ind(log_a, log_b, equal_var=False)
    interval = result.confidence_interval(confidence)
    return Delta(delta, _pct(float(interval.low)), _pct(float(interval.high)), float(result.pvalue))


def _peak_statistic(levels: int):
    """log(max of the treated level means) - log(max of the reference level means), vectorised."""

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        treated = np.stack([np.mean(s, axis=axis) for s in samples[:levels]])
        reference = np.stack([np.mean(s, axis=axis) for s in samples[levels:]])
        return np.log(treated.max(axis=0)) - np.log(reference.max(axis=0))

    return statistic


def _rescaled(values: np.ndarray) -> np.ndarray:
    """Residuals widened by sqrt(n / (n - 1)), so that resampling reproduces the unbiased variance."""
    mean = values.mean()
    return mean + (values - mean) * math.sqrt(values.size / (values.size - 1))


def _welch_df(a: np.ndarray, b: np.ndarray) -> float:
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    denominator = va**2 / (a.size - 1) + vb**2 / (b.size - 1)
    return float((va + vb) ** 2 / denominator) if denominator > 0 else math.nan


@dataclass(frozen=True)
class PeakDelta:
    delta: Delta
    treated_optimal: int  # index of the treated group's optimal level
    reference_optimal: int


def bootstrap_peak_ratio(
    treated: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    rng: np.random.Generator | None = None,
) -> PeakDelta:
    """Peak against peak: each group's peak is the highest level mean (levels in concurrency order, the first
    on a tie), and every bootstrap resample redraws the repetitions of every level and recomputes both peaks.

    The resamples give the selection bias of the maximum (their mean minus the observed log ratio) and the
    standard error (their spread); the interval and the p-value use Student's t with the Welch-Satterthwaite
    degrees of freedom of the two optimal levels, which keeps the coverage near nominal with 3-5 repetitions
    where a plain percentile interval is too narrow. `delta_pct` is the observed change of the peaks.
    """
    a = [_finite(x) for x in treated]
    b = [_finite(x) for x in reference]
    means_a = np.array([x.mean() if x.size else -np.inf for x in a])
    means_b = np.array([x.mean() if x.size else -np.inf for x in b])
    ia, ib = int(np.argmax(means_a)), int(np.argmax(means_b))
    delta = _ratio_pct(float(means_a[ia]), float(means_b[ib]))

    def result(**kwargs: Any) -> PeakDelta:
        return PeakDelta(Delta(delta, **kwargs), ia, ib)

    if min(x.size for x in (*a, *b)) < 2:
        return result(note="a level ran once: no interval at the peak")
    if any((x <= 0).any() for x in (*a, *b)):
        return result(note="a repetition measured no throughput: no interval")
    logs_a, logs_b = np.log(a[ia]), np.log(b[ib])
    df = _welch_df(logs_a, logs_b)
    if math.isnan(df):
        return result(note="no variation between repetitions: no interval")
    observed = float(np.log(means_a[ia]) - np.log(means_b[ib]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = sps.bootstrap(
            [_rescaled(x) for x in (*a, *b)],
            _peak_statistic(len(a)),
            n_resamples=resamples,
            vectorized=True,
            method="percentile",
            rng=rng if rng is not None else np.random.default_rng(DEFAULT_SEED),
        )
    distribution = np.asarray(boot.bootstrap_distribution, dtype=float)
    se = float(distribution.std(ddof=1))
    if not se > 0:
        return result(note="no variation between repetitions: no interval")
    centre = observed - (float(distribution.mean()) - observed)
    quantile = float(sps.t.ppf(0.5 + confidence / 2.0, df))
    p_value = float(2.0 * sps.t.sf(abs(centre) / se, df))
    return result(
        ci_low_pct=_pct(centre - quantile * se), ci_high_pct=_pct(centre + quantile * se), p_value=p_value
    )


def adjust(p_values: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """p-values adjusted for the comparisons of one family; NaN (untested) entries stay NaN and do not count.

    holm: Holm's step-down adjustment, max over j <= i of (m - j + 1) p_(j), capped at 1 (scipy has none);
    bh: Benjamini-Hochberg through scipy.stats.false_discovery_control.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = np.isfinite(p)
    if not tested.any():
        return out
    values = p[tested]
    if method == "bh":
        out[tested] = sps.false_discovery_control(values, method="bh")
        return out
    if method != "holm":
        raise ValueError(f"unknown correction {method!r}")
    order = np.argsort(values, kind="stable")
    m = values.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * values[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    out[tested] = adjusted
    return out


def needs_more(
    frame: pd.DataFrame,
    target_ci_pct: float,
    max_repetitions: int,
    metric: str = THROUGHPUT,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """Cells whose interval of `metric` is still wider than +/- target_ci_pct % of their mean, and that may
    still get a repetition.

    A cell is (run, model, scenario, concurrency). It counts its usable repetitions (status ok, not judged
    invalid); one with a single usable repetition has no interval and is wider than any target; one with
    none is left to the sweep's own handling of failed points. The cap counts every repetition recorded for
    the cell, failed ones included, so that a failing point cannot ask for repetitions forever. Each entry:
    run, model, scenario, concurrency, n, ci_pct (None without an interval), repetitions (recorded) and
    next_repetition (the number the next one gets).
    """
    metric = metric_column(metric)
    recorded = frame[frame["concurrency"].notna()]
    attempts = (
        recorded.groupby(list(CELL_KEY), sort=False)["repetition"].max()
        if not recorded.empty
        else pd.Series()
    )
    cells = cell_stats(usable(frame, metric), metric, confidence)
    wider: list[dict[str, Any]] = []
    for _, cell in cells.iterrows():
        key = tuple(cell[k] for k in CELL_KEY)
        done = int(attempts.get(key, cell["n"]))
        ci_pct = float(cell["ci_pct"])
        if cell["n"] >= 2 and not math.isnan(ci_pct) and ci_pct <= target_ci_pct:
            continue
        if done >= max_repetitions:
            continue
        wider.append(
            {
                "run": cell["run"],
                "model": cell["model"],
                "scenario": cell["scenario"],
                "concurrency": int(cell["concurrency"]),
                "n": int(cell["n"]),
                "ci_pct": None if math.isnan(ci_pct) else round(ci_pct, 3),
                "repetitions": done,
                "next_repetition": done + 1,
            }
        )
    return wider
