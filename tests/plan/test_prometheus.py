"""kvbench.plan.prometheus: sums over label sets, NaN skipped, missing -> None, by-label sums, deltas."""

from __future__ import annotations

import math

import pytest

from kvbench.plan.prometheus import (
    PROMPT_TOKENS_BY_SOURCE,
    VLLM_METRICS,
    delta,
    parse_samples,
    samples_by_label,
    vllm_counters,
)

# What a vLLM 0.11 server with two engines exports (trimmed), plus the awkward corners of the format:
# a label value holding '}' ',' '=' and an escaped quote, a timestamp, an exemplar, a NaN and a bad line.
EXPOSITION = r"""
# HELP vllm:prefix_cache_queries Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="qwen"} 1000.0
vllm:prefix_cache_queries_total{engine="1",model_name="qwen"} 500.0
vllm:prefix_cache_queries_created{engine="0",model_name="qwen"} 1.7e+09
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="qwen"} 640.0
vllm:prefix_cache_hits_total{engine="1",model_name="qwen"} 128.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="qwen"} NaN
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 3.0 1700000000000
vllm:num_requests_running{engine="1",model_name="qwen"} 1.0
vllm:num_requests_waiting{engine="0",model_name="q}w,e=n \"x\""} 2.0
vllm:num_preemptions_total{engine="0",model_name="qwen"} 0.0 # {trace_id="abc"} 1.0
# TYPE vllm:prompt_tokens_by_source counter
vllm:prompt_tokens_by_source_total{engine="0",model_name="qwen",source="local_compute"} 1000.0
vllm:prompt_tokens_by_source_total{engine="1",model_name="qwen",source="local_compute"} 500.0
vllm:prompt_tokens_by_source_total{engine="0",model_name="qwen",source="local_cache_hit"} 200.0
vllm:prompt_tokens_by_source_total{engine="1",model_name="qwen",source="local_cache_hit"} 56.5
vllm:prompt_tokens_by_source_total{engine="0",model_name="qwen",source="external_kv_transfer"} 0.0
vllm:prompt_tokens_by_source_total{engine="1",model_name="qwen"} 7.0
vllm:prompt_tokens_by_source_created{engine="0",model_name="qwen",source="local_compute"} 1.7e+09
this line is not a sample
vllm:broken{engine="0" 4.0
"""


def test_sums_over_label_sets_and_skips_nan_and_junk():
    sums = parse_samples(EXPOSITION)
    assert sums["vllm:prefix_cache_queries_total"] == 1500.0
    assert sums["vllm:prefix_cache_hits_total"] == 768.0
    # the NaN engine is skipped, not propagated
    assert sums["vllm:kv_cache_usage_perc"] == 0.25
    # the timestamp is not taken for the value
    assert sums["vllm:num_requests_running"] == 4.0
    # a label value with '}', ',', '=' and an escaped quote does not break the line
    assert sums["vllm:num_requests_waiting"] == 2.0
    # an OpenMetrics exemplar after the value is ignored
    assert sums["vllm:num_preemptions_total"] == 0.0
    assert "vllm:broken" not in sums
    assert not any(name.startswith("this") for name in sums)


def test_agrees_with_prometheus_client_on_plain_exposition():
    parser = pytest.importorskip("prometheus_client.parser")
    # prometheus_client refuses exemplars in the 0.0.4 text format; compare on the rest.
    text = "\n".join(
        line for line in EXPOSITION.splitlines() if "trace_id" not in line and "broken" not in line
    )
    text = text.replace("this line is not a sample", "")
    expected: dict[str, float] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if not math.isnan(sample.value):
                expected[sample.name] = expected.get(sample.name, 0.0) + sample.value
    assert parse_samples(text) == pytest.approx(expected)


def test_vllm_counters_missing_is_none_and_whole_numbers_are_int():
    counters = vllm_counters(EXPOSITION)
    assert set(counters) == set(VLLM_METRICS)
    assert counters["prefix_cache_queries"] == 1500
    assert isinstance(counters["prefix_cache_queries"], int)
    assert counters["kv_cache_usage_perc"] == 0.25
    assert counters["external_prefix_cache_queries"] is None
    assert counters["prompt_tokens_cached"] is None
    assert vllm_counters("") == dict.fromkeys(VLLM_METRICS)


def test_vllm_counters_custom_names():
    assert vllm_counters(EXPOSITION, {"hits": "vllm:prefix_cache_hits_total", "nope": "vllm:nope"}) == {
        "hits": 768,
        "nope": None,
    }


def test_samples_by_label_sums_each_source_over_engines():
    by_source = samples_by_label(EXPOSITION, PROMPT_TOKENS_BY_SOURCE, "source")
    # the sample without a source label and the _created sibling are left out
    assert by_source == {"local_compute": 1500.0, "local_cache_hit": 256.5, "external_kv_transfer": 0.0}
    assert samples_by_label(EXPOSITION, PROMPT_TOKENS_BY_SOURCE, "engine") == {"0": 1200.0, "1": 563.5}
    assert samples_by_label(EXPOSITION, "vllm:absent_total", "source") == {}


def test_samples_by_label_unescapes_values():
    text = 'm_total{k="a\\"b\\\\c\\nd"} 1\nm_total{k="a\\"b\\\\c\\nd"} 2\n'
    assert samples_by_label(text, "m_total", "k") == {'a"b\\c\nd': 3.0}


def test_delta():
    before = vllm_counters(EXPOSITION)
    after = vllm_counters(EXPOSITION.replace("} 640.0", "} 700.5"))
    assert delta(after, before, "prefix_cache_hits") == 60.5
    assert delta(after, before, "prefix_cache_queries") == 0
    assert isinstance(delta(after, before, "prefix_cache_queries"), int)
    assert delta(after, before, "prompt_tokens_cached") is None  # not exported
    assert delta({"x": 5}, {}, "x") is None
    assert delta({"x": 3}, {"x": 10}, "x") == -7  # a counter reset stays visible
    assert delta({"x": float("nan")}, {"x": 1.0}, "x") is None
    assert delta({"x": True}, {"x": 0}, "x") is None
