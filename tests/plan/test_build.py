"""kvbench.plan: one plan per request, with every point's seed, directory and command line decided once."""

from __future__ import annotations

import json

import pytest

from kvbench.plan import PlanError, build_plan, point_seed, schedule
from kvbench.records import problems
from tests.plan.catalogs import request


def test_the_plan_conforms_to_its_schema_and_lists_every_point():
    plan = build_plan(request())
    assert problems(plan, "plan") == []
    catalog = request()["catalog"]["scenarios"]
    scenarios = [name for name, entry in catalog.items() if not entry.get("only_when_named")]
    assert "no-prefix-cache" in catalog and "no-prefix-cache" not in scenarios
    assert [s["name"] for s in plan["scenarios"]] == scenarios
    assert len(plan["points"]) == len(scenarios) * 2 * 2
    assert plan["points"][0]["id"] == "no-offload/c0001-r1"
    assert plan["points"][0]["slug"] == "no-offload-c0001-r1"


def test_the_prefix_cache_control_runs_when_named_with_the_cache_off():
    plan = build_plan(request(scenarios="no-offload,no-prefix-cache"))
    args = {s["name"]: s["vllm"]["args"] for s in plan["scenarios"]}
    assert "--enable-prefix-caching" in args["no-offload"]
    assert "--no-enable-prefix-caching" in args["no-prefix-cache"]
    assert "--enable-prefix-caching" not in args["no-prefix-cache"]


def test_the_seed_in_the_command_line_is_the_seed_of_the_point():
    plan = build_plan(request())
    for point in plan["points"]:
        argv = point["argv"]
        seed = json.loads(argv[argv.index("--seed") + 1])
        assert seed == {"kind": "static", "value": point["seed"]}
        assert point["output_dir"] + "/guidellm.json" in " ".join(argv)


def test_scenarios_get_identical_traffic_and_points_their_own_seed():
    plan = build_plan(request())
    seeds: dict[tuple[int, int], set[int]] = {}
    for point in plan["points"]:
        seeds.setdefault((point["concurrency"], point["repetition"]), set()).add(point["seed"])
    assert all(len(found) == 1 for found in seeds.values())  # the same at (c, r) for every scenario
    distinct = {next(iter(found)) for found in seeds.values()}
    assert len(distinct) == len(seeds)  # a different seed for every level and repetition


def test_warm_cache_shares_the_seed_across_levels_but_not_repetitions():
    assert point_seed(889, 1, 1, True) == point_seed(889, 400, 1, True) == 889
    assert point_seed(889, 1, 2, True) != point_seed(889, 1, 1, True)
    assert point_seed(889, 4, 1, False) == 893
    assert point_seed(889, 4, 2, False) == 889 + 100_000 + 4


def test_repetitions_and_their_order_do_not_change_the_run():
    one = build_plan(request(repetitions=1))
    three = build_plan(request(repetitions=3, repetition_order="interleaved"))
    assert one["run_id"] == three["run_id"] and one["plan_hash"] == three["plan_hash"]
    changed = build_plan(request(workload={"duration_s": 30}))
    assert changed["run_id"] != one["run_id"]


def test_interleaved_order_starts_every_scenario_once_per_repetition():
    segments = schedule(["a", "b"], 2, "interleaved")
    assert [(s["scenario"], s["repetitions"]) for s in segments] == [
        ("a", [1]),
        ("b", [1]),
        ("a", [2]),
        ("b", [2]),
    ]
    assert [(s["scenario"], s["repetitions"]) for s in schedule(["a", "b"], 2, "blocked")] == [
        ("a", [1, 2]),
        ("b", [1, 2]),
    ]
    plan = build_plan(request(repetition_order="interleaved", scenarios=["no-offload", "llm-d-inmem"]))
    assert plan["schedule"][0]["points"] == ["no-offload/c0001-r1", "no-offload/c0004-r1"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"model": "NoSuchModel"}, ["NoSuchModel", "Qwen3-32B-AWQ", "Qwen3-0.6B"]),
        ({"scenarios": "no-offload,lmcache-bogus"}, ["lmcache-bogus", "native-offload", "llm-d-valkey"]),
        ({"preset": "llm-d-v9"}, ["llm-d-v9", "llm-d-v0.4.0", "cpu-local"]),
        ({"concurrency": "1,0,50"}, ["concurrency", "0"]),
        ({"concurrency": "1,abc"}, ["concurrency", "abc"]),
        ({"concurrency": "[]"}, ["concurrency"]),
        ({"repetition_order": "random"}, ["random", "blocked", "interleaved"]),
        ({"target": "slurm"}, ["slurm", "nodes", "kubernetes"]),
        ({"guidellm": {"version": "0.4.0"}}, ["0.4.0"]),
    ],
)
def test_bad_requests_name_the_bad_value_and_the_valid_ones(overrides, named):
    with pytest.raises(PlanError) as raised:
        build_plan(request(**overrides))
    for text in named:
        assert text in str(raised.value)


def test_store_urls_come_from_the_plan_without_passwords():
    plan = build_plan(request(platform="cuda", preset="llm-d-v0.5.0", model="Qwen3-8B"))
    redis = next(s for s in plan["scenarios"] if s["name"] == "llm-d-redis")
    assert redis["index"]["url"] == "redis://127.0.0.1:6379"
    assert redis["stores"] == {"redis": {"address": "127.0.0.1:6379", "url": "redis://127.0.0.1:6379"}}
    lmcache = next(s for s in plan["scenarios"] if s["name"] == "lmcache-valkey")
    assert "${KVBENCH_STORE_PASSWORD}" in json.dumps(lmcache["lmcache"])


def test_adaptive_mode_plans_every_repetition_but_schedules_the_first():
    plan = build_plan(request(repetitions=2, target_ci_pct=2, max_repetitions=5, scenarios=["no-offload"]))
    assert plan["adaptive"] == {"target_ci_pct": 2.0, "max_repetitions": 5}
    assert {p["repetition"] for p in plan["points"]} == {1, 2, 3, 4, 5}
    assert [s["repetitions"] for s in plan["schedule"]] == [[1, 2]]
    assert problems(plan, "plan") == []
    assert build_plan(request(repetitions=2))["adaptive"] is None
    with pytest.raises(PlanError, match="max_repetitions"):
        build_plan(request(repetitions=2, target_ci_pct=2, max_repetitions=2))
