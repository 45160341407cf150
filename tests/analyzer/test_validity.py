"""Validity verdicts: every check on a row built here, then on run trees written by the record path where a
treatment never engaged."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from noisy_runs import Noise, noisy_run

from kvbench.validity import Thresholds, evaluate, judge
from tests.records.builders import IN_PROCESS, analyze, kubernetes_cuda_request


def row(**overrides: Any) -> dict[str, Any]:
    """A measured point that passes every check."""
    values: dict[str, Any] = {
        "run": "r",
        "model": "m",
        "scenario": "lmcache-redis",
        "concurrency": 16,
        "repetition": 1,
        "status": "ok",
        "reason": None,
        "output_tok_s_successful": 2000.0,
        "requests_successful": 270,
        "requests_errored": 0,
        "requests_total": 272,
        "client_saturated_suspect": False,
        "client_cpu_busy_pct": 40.0,
        "client_cores": 16,
        "concurrency_achieved": 15.6,
        "report_warnings": None,
        "over_saturated": None,
        "duration_s": 110.0,
        "requested_duration_s": 120.0,
        "connector": "LMCacheConnectorV1",
        "external_prefix_cache_hits_delta": 5000,
        "index_store": None,
        "index_keys_after": math.nan,
        "turns": 5,
        "turns_sent": 5,
        "warm_cache": False,
        "cache_reset_verified": True,
        "guidellm_version": "0.8.1",
    }
    values.update(overrides)
    return values


def test_a_clean_point_is_valid() -> None:
    judged = judge(row(), Thresholds())
    assert judged["verdict"] == "valid"
    assert judged["reasons"] is None
    assert judged["index_engaged"] == "skip"
    assert judged["offload_engaged"] == "pass"
    assert judged["prefix_cache_off"] == "skip"


@pytest.mark.parametrize(
    ("overrides", "check", "verdict", "evidence"),
    [
        (
            {"requests_errored": 30, "requests_total": 300},
            "error_rate",
            "invalid",
            "30 of 300 requests errored",
        ),
        (
            {"requests_successful": 0, "output_tok_s_successful": 0.0},
            "successful",
            "invalid",
            "no successful",
        ),
        ({"requests_successful": 50, "requests_total": 272}, "completion", "invalid", "far below those sent"),
        (
            {"client_saturated_suspect": True, "client_cpu_busy_pct": 99.4},
            "client_saturation",
            "warn",
            "99.4",
        ),
        ({"concurrency_achieved": 9.0}, "achieved_concurrency", "warn", "below target"),
        ({"report_warnings": "generation_delay_ttft"}, "guidellm_signals", "warn", "generation_delay_ttft"),
        ({"over_saturated": True}, "guidellm_signals", "warn", "over-saturation"),
        ({"duration_s": 30.0}, "measured_window", "warn", "far shorter"),
        ({"external_prefix_cache_hits_delta": 0}, "offload_engaged", "invalid", "never engaged"),
        ({"external_prefix_cache_hits_delta": math.nan}, "offload_engaged", "warn", "not verified"),
        ({"index_store": "valkey", "index_keys_after": 0}, "index_engaged", "invalid", "index_keys_after 0"),
        ({"index_store": "redis", "index_keys_after": math.nan}, "index_engaged", "invalid", "absent"),
        ({"turns_sent": 1, "guidellm_version": "0.5.3"}, "multi_turn", "invalid", "0.5.3 sent single turns"),
        ({"cache_reset_verified": False}, "cold_cache", "warn", "not verified empty"),
        (
            {"prefix_caching": False, "prefix_cache_hits_delta": 120},
            "prefix_cache_off",
            "invalid",
            "120 prefix-cache hits",
        ),
        ({"status": "failed", "reason": "vLLM died"}, "measured", "invalid", "point failed: vLLM died"),
    ],
)
def test_each_check(overrides: dict[str, Any], check: str, verdict: str, evidence: str) -> None:
    judged = judge(row(**overrides), Thresholds())
    assert judged[check] == verdict
    assert evidence in judged[f"{check}_evidence"]
    assert judged["verdict"] == verdict
    assert evidence in judged["reasons"]


def test_thresholds_are_options() -> None:
    errors = row(requests_errored=10, requests_total=200)  # 5 %: at the default limit, not above it
    assert judge(errors, Thresholds())["error_rate"] == "pass"
    assert judge(errors, Thresholds(max_error_rate=0.01))["error_rate"] == "invalid"
    short = row(concurrency_achieved=14.8)  # 92.5 % of 16
    assert judge(short, Thresholds())["achieved_concurrency"] == "pass"
    assert judge(short, Thresholds(min_concurrency_ratio=0.95))["achieved_concurrency"] == "warn"


def test_a_warm_cache_point_is_not_held_to_a_cold_cache() -> None:
    judged = judge(row(warm_cache=True, cache_reset_verified=False), Thresholds())
    assert judged["cold_cache"] == "skip"
    assert judged["verdict"] == "valid"


def test_evaluate_keeps_the_table_index() -> None:
    table = pd.DataFrame([row(), row(external_prefix_cache_hits_delta=0)], index=[7, 9])
    validity = evaluate(table)
    assert list(validity.index) == [7, 9]
    assert list(validity["verdict"]) == ["valid", "invalid"]


@pytest.fixture(scope="module")
def never_engaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """native-offload whose external hits stayed at zero, llm-d-valkey whose index stayed empty, and a
    load generator saturated during lmcache-redis; 2 repetitions."""
    noise = Noise(
        seed=3,
        zero_counters=frozenset({"native-offload"}),
        empty_index=frozenset({"llm-d-valkey"}),
        saturated=frozenset({"lmcache-redis"}),
    )
    results = tmp_path_factory.mktemp("never-engaged")
    return noisy_run(results, kubernetes_cuda_request(repetitions=2, run_id="never-engaged"), noise)


def test_a_treatment_that_never_engaged_is_invalid_never_a_result(
    never_engaged: Path, tmp_path: Path
) -> None:
    result = analyze(never_engaged, out=tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert "12 measured point(s) judged invalid, left out of peaks and deltas" in result.stderr
    validity = result.csv("validity.csv").set_index(["scenario", "concurrency", "repetition"]).sort_index()
    offload = validity.loc["native-offload"]
    assert set(offload["verdict"]) == {"invalid"}
    assert set(offload["offload_engaged"]) == {"invalid"}
    assert offload["offload_engaged_evidence"].str.contains("external_prefix_cache_hits_delta 0").all()
    index = validity.loc["llm-d-valkey"]
    assert set(index["verdict"]) == {"invalid"}
    assert index["index_engaged_evidence"].str.contains("index_keys_after 0").all()
    assert set(validity.loc["no-offload", "verdict"]) == {"warn"}  # GuideLLM's generation_delay_ttft
    saturated = validity.loc["lmcache-redis"]
    assert set(saturated["client_saturation"]) == {"warn"}

    peaks = result.csv("peak_throughput_all.csv")
    assert list(peaks["scenario"]) == ["no-offload", "lmcache-redis"]
    assert list(peaks["invalid_points"]) == [0, 0]
    deltas = result.csv("delta_vs_baseline.csv")
    assert set(deltas["scenario"]) == {"lmcache-redis"}
    metrics = result.csv("complete_metrics.csv")
    assert set(metrics.loc[metrics["scenario"] == "native-offload", "verdict"]) == {"invalid"}

    report = (result.out / "report.md").read_text()
    verdict = report[report.index("## Verdict") : report.index("## Inputs")]
    assert "**Invalid, never counted as a result:**" in verdict
    assert "`native-offload`: all points invalid, left out — OffloadingConnector never engaged" in verdict
    assert "`llm-d-valkey`: all points invalid, left out — the valkey index stayed empty" in verdict
    assert "**Load generator:** **saturated or short of its target concurrency at 6 of 24 points**" in verdict
    assert "client CPU 99.4 % busy on 2 cores" in verdict


def test_include_invalid_shows_them_marked(never_engaged: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = IN_PROCESS(
        ["analyze", str(never_engaged), "--out", str(out), "--no-figures", "--include-invalid"]
    )
    assert result.exit_code == 0, result.stderr
    assert "included, marked (--include-invalid)" in result.stderr
    peaks = pd.read_csv(out / "peak_throughput_all.csv").set_index("scenario")
    assert list(peaks.index) == ["no-offload", "native-offload", "lmcache-redis", "llm-d-valkey"]
    assert peaks.at["native-offload", "invalid_points"] == 6
    assert peaks.at["llm-d-valkey", "invalid_points"] == 6
    assert not peaks.loc[["native-offload", "llm-d-valkey"], "significant"].any()
    deltas = pd.read_csv(out / "delta_vs_baseline.csv")
    marked = deltas[deltas["scenario"].isin(["native-offload", "llm-d-valkey"])]
    assert (marked["invalid_points"] > 0).all() and not marked["significant"].any()
    report = (out / "report.md").read_text()
    assert "| native-offload † |" in report and "| llm-d-valkey † |" in report
