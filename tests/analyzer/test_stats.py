"""kvbench.stats and kvbench.deltas on tables built here: cell statistics, Welch's test on log throughput,
the peak bootstrap, the multiple-comparison correction, the resolution rule and their calibration."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from kvbench.deltas import baseline_deltas
from kvbench.stats import (
    StatsOptions,
    adjust,
    bootstrap_peak_ratio,
    cell_stats,
    needs_more,
    summarize,
    usable,
    welch_log_ratio,
)

# The real GuideLLM 0.8.1 sample's output throughput at its three levels, and its measured window.
LEVELS = {1: 164.125, 4: 649.125, 16: 2131.25}
TOKENS, WINDOW = 64.0, 8.0


def frame(
    seed: int,
    effects: dict[str, float],
    repetitions: int = 5,
    cv: float = 0.03,
    levels: dict[int, float] = LEVELS,
    run: str = "run-1",
    version: str = "0.8.1",
) -> pd.DataFrame:
    """Rows as the tidy table has them: each scenario's true effect times (1 + cv * N(0, 1)) per point."""
    rng = np.random.default_rng(seed)
    rows = []
    for scenario, effect in effects.items():
        for concurrency, mean in levels.items():
            for repetition in range(1, repetitions + 1):
                rows.append(
                    {
                        "run": run,
                        "model": "Qwen3-8B",
                        "scenario": scenario,
                        "concurrency": concurrency,
                        "repetition": repetition,
                        "status": "ok",
                        "output_tok_s_successful": mean * effect * (1.0 + cv * rng.standard_normal()),
                        "output_tokens_mean": TOKENS,
                        "duration_s": WINDOW,
                        "guidellm_version": version,
                    }
                )
    return pd.DataFrame(rows)


def test_summary_is_the_t_interval_of_the_mean() -> None:
    values = [100.0, 104.0, 98.0, 101.0, 97.0]
    summary = summarize(values, 0.95)
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = sps.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert summary.n == 5
    assert summary.mean == pytest.approx(mean)
    assert summary.std == pytest.approx(sd)
    assert summary.cv_pct == pytest.approx(sd / mean * 100)
    assert (summary.ci_low, summary.ci_high) == pytest.approx((mean - half, mean + half))
    assert summary.ci_pct == pytest.approx(half / mean * 100)
    one = summarize([100.0])
    assert one.n == 1 and math.isnan(one.ci_low) and math.isnan(one.ci_pct)


def test_cell_stats_carry_the_measurement_resolution() -> None:
    cells = cell_stats(frame(1, {"no-offload": 1.0}))
    assert list(cells["concurrency"]) == [1, 4, 16]
    assert set(cells["n"]) == {5}
    # One request's output tokens over the measured window: 64 tokens / 8 s.
    assert set(cells["resolution"]) == {TOKENS / WINDOW}
    low = cells.set_index("concurrency").loc[1]
    assert low["resolution_pct"] == pytest.approx(8.0 / low["mean"] * 100)


def test_welch_interval_is_an_interval_of_the_ratio() -> None:
    treated = np.array([110.0, 112.0, 108.0, 111.0])
    reference = np.array([100.0, 101.0, 99.0, 100.5])
    delta = welch_log_ratio(treated, reference, 0.95)
    expected = sps.ttest_ind(np.log(treated), np.log(reference), equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert delta.p_value == pytest.approx(expected.pvalue)
    assert delta.ci_low_pct == pytest.approx(math.expm1(interval.low) * 100)
    assert delta.ci_high_pct == pytest.approx(math.expm1(interval.high) * 100)
    assert delta.delta_pct == pytest.approx((treated.mean() / reference.mean() - 1) * 100)
    assert delta.ci_low_pct < delta.delta_pct < delta.ci_high_pct
    single = welch_log_ratio([110.0], reference)
    assert math.isnan(single.ci_low_pct) and math.isnan(single.p_value) and single.note


def test_holm_and_benjamini_hochberg() -> None:
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then the running maximum.
    assert adjust(p, "holm")[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjust(p, "holm")[4])
    assert adjust(p, "bh")[:4] == pytest.approx(sps.false_discovery_control(p[:4], method="bh"))
    assert adjust([0.9, 0.8], "holm") == pytest.approx([1.0, 1.0])


def test_bootstrap_recomputes_both_peaks_and_is_reproducible() -> None:
    rng = np.random.default_rng(5)
    treated = [m * 1.1 * (1 + 0.03 * rng.standard_normal(5)) for m in LEVELS.values()]
    reference = [m * (1 + 0.03 * rng.standard_normal(5)) for m in LEVELS.values()]
    first = bootstrap_peak_ratio(treated, reference, rng=np.random.default_rng(1))
    again = bootstrap_peak_ratio(treated, reference, rng=np.random.default_rng(1))
    other = bootstrap_peak_ratio(treated, reference, rng=np.random.default_rng(2))
    assert first == again
    assert first.delta.ci_low_pct != other.delta.ci_low_pct
    assert abs(first.delta.ci_low_pct - other.delta.ci_low_pct) < 0.5
    assert (first.treated_optimal, first.reference_optimal) == (2, 2)
    peaks = max(x.mean() for x in treated) / max(x.mean() for x in reference)
    assert first.delta.delta_pct == pytest.approx((peaks - 1) * 100)
    assert first.delta.ci_low_pct < 10.0 < first.delta.ci_high_pct


def test_the_peak_interval_is_calibrated_and_finds_a_real_effect() -> None:
    """Over many simulated matrices (3 levels, 5 repetitions, CV 3 %) the 95 % interval of the peak ratio
    holds the true change about 95 % of the time, with and without an effect, and a 10 % effect is found."""
    rng = np.random.default_rng(2026)
    covered = {1.0: 0, 1.1: 0}
    found = {1.0: 0, 1.1: 0}
    trials = 150
    for effect in covered:
        for trial in range(trials):
            treated = [m * effect * (1 + 0.03 * rng.standard_normal(5)) for m in LEVELS.values()]
            reference = [m * (1 + 0.03 * rng.standard_normal(5)) for m in LEVELS.values()]
            peak = bootstrap_peak_ratio(treated, reference, resamples=2000, rng=np.random.default_rng(trial))
            truth = (effect - 1) * 100
            covered[effect] += peak.delta.ci_low_pct <= truth <= peak.delta.ci_high_pct
            found[effect] += peak.delta.p_value < 0.05
    assert 0.9 <= covered[1.0] / trials <= 0.99
    assert 0.9 <= covered[1.1] / trials <= 0.99
    assert found[1.0] / trials <= 0.1
    assert found[1.1] / trials >= 0.9


SEEDS = range(1000, 1020)


def test_one_scenario_ten_percent_faster_one_only_noise() -> None:
    """Twenty matrices (3 levels x 5 repetitions, CV 3 %): `fast` is truly 10 % faster, `noise` only noise.
    Holm keeps the family-wise error of each family (peaks, levels) at 5 %; the peak test's power for 10 %
    is about 95 % and its interval holds the truth about 95 % of the time."""
    counts = {"fast": 0, "noise peak": 0, "noise any": 0, "fast covered": 0, "noise covered": 0}
    for seed in SEEDS:
        table = frame(seed, {"no-offload": 1.0, "fast": 1.10, "noise": 1.0})
        deltas = baseline_deltas(table, "no-offload", StatsOptions())
        assert set(deltas["n"]) == set(deltas["n_baseline"]) == {5}
        peaks = deltas[deltas["concurrency"] == "peak"].set_index("scenario")
        counts["fast"] += bool(peaks.at["fast", "significant"])
        counts["noise peak"] += bool(peaks.at["noise", "significant"])
        counts["noise any"] += bool(deltas.loc[deltas["scenario"] == "noise", "significant"].any())
        counts["fast covered"] += peaks.at["fast", "ci_low_pct"] <= 10.0 <= peaks.at["fast", "ci_high_pct"]
        counts["noise covered"] += peaks.at["noise", "ci_low_pct"] <= 0.0 <= peaks.at["noise", "ci_high_pct"]
    assert counts["fast"] >= 18, counts
    assert counts["noise peak"] <= 2, counts
    assert counts["noise any"] <= 3, counts
    assert counts["fast covered"] >= 17, counts
    assert counts["noise covered"] >= 17, counts


def test_repetitions_of_one_configuration_split_in_two_are_not_significant() -> None:
    """Ten repetitions of one configuration, split into two "scenarios" of five: no difference."""
    flagged = 0
    for seed in SEEDS:
        table = frame(seed + 100, {"no-offload": 1.0}, repetitions=10)
        table.loc[table["repetition"] > 5, "scenario"] = "same-config"
        deltas = baseline_deltas(table, "no-offload", StatsOptions())
        assert len(deltas) == 4
        flagged += bool(deltas["significant"].any())
    assert flagged <= 1


def test_a_difference_below_the_resolution_is_never_significant() -> None:
    """Twenty repetitions with almost no noise: 164 against 168 tok/s is a sure difference of 4 tok/s, but
    one request more or less in the 8 s window moves throughput by 8 tok/s."""
    levels = {1: 164.0}
    table = pd.concat(
        [
            frame(3, {"no-offload": 1.0}, repetitions=20, cv=0.0005, levels=levels),
            frame(4, {"tiny-gain": 168.0 / 164.0}, repetitions=20, cv=0.0005, levels=levels),
        ]
    )
    deltas = baseline_deltas(table, "no-offload", StatsOptions())
    assert (deltas["p_adjusted"] < 1e-6).all()
    assert not deltas["significant"].any()
    assert not deltas["above_resolution"].any()
    assert deltas["note"].str.contains("below the measurement resolution").all()
    assert set(deltas["resolution"]) == {8.0}


def test_one_repetition_leaves_the_intervals_empty() -> None:
    table = frame(1, {"no-offload": 1.0, "fast": 1.2}, repetitions=1)
    deltas = baseline_deltas(table, "no-offload", StatsOptions())
    assert len(deltas) == 4
    for column in ("ci_low_pct", "ci_high_pct", "p_value", "p_adjusted"):
        assert deltas[column].isna().all(), column
    assert not deltas["significant"].any()
    assert (deltas["delta_pct"] > 10).all()


def test_invalid_points_are_never_used_and_mixed_guidellm_versions_are_flagged() -> None:
    table = pd.concat(
        [
            frame(1, {"no-offload": 1.0}),
            frame(2, {"fast": 1.2}, version="0.5.3"),
            frame(3, {"broken": 1.5}).assign(verdict="invalid"),
        ]
    )
    deltas = baseline_deltas(usable(table), "no-offload", StatsOptions())
    assert set(deltas["scenario"]) == {"fast"}
    assert not deltas["comparable"].any()
    assert set(deltas["guidellm_versions"]) == {"0.5.3, 0.8.1"}
    with_invalid = baseline_deltas(usable(table, include_invalid=True), "no-offload", StatsOptions())
    broken = with_invalid[with_invalid["scenario"] == "broken"]
    assert (broken["invalid_points"] > 0).all()
    assert not broken["significant"].any()


def test_seed_makes_the_deltas_reproducible() -> None:
    table = frame(7, {"no-offload": 1.0, "fast": 1.1, "noise": 1.0})
    one = baseline_deltas(table, "no-offload", StatsOptions(seed=3))
    # The same rows in another order (scenarios read in another order) give the same numbers.
    shuffled = table.iloc[::-1].sort_values(["scenario", "concurrency"], kind="stable")
    two = baseline_deltas(shuffled, "no-offload", StatsOptions(seed=3))
    key = ["scenario", "concurrency"]
    one = one.assign(concurrency=one["concurrency"].astype(str)).sort_values(key).reset_index(drop=True)
    two = two.assign(concurrency=two["concurrency"].astype(str)).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(one, two)
    other = baseline_deltas(table, "no-offload", StatsOptions(seed=4))
    assert not other["ci_low_pct"].equals(
        baseline_deltas(table, "no-offload", StatsOptions(seed=3))["ci_low_pct"]
    )


def test_needs_more_lists_cells_wider_than_the_target() -> None:
    quiet = frame(1, {"no-offload": 1.0}, repetitions=3, cv=0.001)
    loud = frame(2, {"lmcache-redis": 1.0}, repetitions=3, cv=0.10)
    once = frame(3, {"llm-d-valkey": 1.0}, repetitions=1)
    capped = frame(4, {"native-offload": 1.0}, repetitions=5, cv=0.10)
    table = pd.concat([quiet, loud, once, capped])
    wider = needs_more(table, target_ci_pct=2.0, max_repetitions=5)
    cells = {(w["scenario"], w["concurrency"]): w for w in wider}
    assert set(cells) == {(s, c) for s in ("lmcache-redis", "llm-d-valkey") for c in LEVELS}
    assert all(cells[("lmcache-redis", c)]["ci_pct"] > 2.0 for c in LEVELS)
    assert all(cells[("lmcache-redis", c)]["next_repetition"] == 4 for c in LEVELS)
    assert all(cells[("llm-d-valkey", c)]["ci_pct"] is None for c in LEVELS)
    assert all(cells[("llm-d-valkey", c)]["next_repetition"] == 2 for c in LEVELS)
    # A failed repetition counts against the cap: repetition 3 of lmcache-redis failed everywhere.
    table.loc[(table["scenario"] == "lmcache-redis") & (table["repetition"] == 3), "status"] = "failed"
    wider = needs_more(table, target_ci_pct=2.0, max_repetitions=4)
    assert {(w["scenario"], w["concurrency"], w["n"], w["next_repetition"]) for w in wider} == {
        *(("lmcache-redis", c, 2, 4) for c in LEVELS),
        *(("llm-d-valkey", c, 1, 2) for c in LEVELS),
    }
    capped_at_three = needs_more(table, target_ci_pct=2.0, max_repetitions=3)
    assert {w["scenario"] for w in capped_at_three} == {"llm-d-valkey"}
    assert needs_more(table, target_ci_pct=2.0, max_repetitions=1) == []
    assert needs_more(table, target_ci_pct=1000.0, max_repetitions=9) == [
        w for w in needs_more(table, 1000.0, 9) if w["n"] < 2
    ]
