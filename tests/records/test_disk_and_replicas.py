"""Canned records through the real record path: disk-tier evidence decides whether a disk scenario is a
result, and per-replica counters reach the records and the analyzer's routing tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kvbench.replicas import replica_table, routing_summary
from tests.records.builders import (
    COUNTERS_BEFORE,
    analyze,
    checked,
    counters_after,
    kubernetes_cuda_request,
    plan_run,
    point_outcome,
    record,
    sample_report,
    write_metrics,
    write_zst_json,
)

# concurrency -> disk-tier evidence the target measured (None: not recorded)
DISK_EVIDENCE = {
    1: {"path": "/kv-disk/lmcache-disk", "device": "nvme0n1", "files_after": 48, "read_bytes_delta": 3 << 30},
    4: {"path": "/kv-disk/lmcache-disk", "device": "nvme0n1", "files_after": 48, "read_bytes_delta": 0},
    16: None,
}


def _record_point(run_dir: Path, point: dict, servers: dict[str, dict], **extra) -> None:
    folder = run_dir / point["dir"]
    write_zst_json(folder / "guidellm.json.zst", sample_report("0.8.1", point["concurrency"], point["seed"]))
    for server, after in servers.items():
        write_metrics(folder, server, {**COUNTERS_BEFORE, "request_success": 0}, after)
    outcome = point_outcome(servers=list(servers), **extra)
    checked(record("point", run_dir, ["--point", point["id"]], outcome))


@pytest.fixture(scope="module")
def disk_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    request = kubernetes_cuda_request(scenarios=["no-offload", "lmcache-disk"], run_id="disk")
    plan, run_dir = plan_run(tmp_path_factory.mktemp("disk"), request)
    for point in plan["points"]:
        disk = DISK_EVIDENCE[point["concurrency"]] if point["scenario"] == "lmcache-disk" else None
        after = {**counters_after(point["concurrency"], 0), "request_success": 10}
        _record_point(run_dir, point, {"vllm-0": after}, disk_tier=disk)
    return run_dir


def test_the_point_record_keeps_the_disk_tier_and_its_evidence(disk_run: Path) -> None:
    point = json.loads((disk_run / "lmcache-disk" / "c0001-r1" / "point.json").read_text())
    assert point["config"]["disk_tier"]["path"] == "/kv-disk/lmcache-disk"
    assert point["evidence"]["disk_tier"]["read_bytes_delta"] == 3 << 30
    plain = json.loads((disk_run / "no-offload" / "c0001-r1" / "point.json").read_text())
    assert plain["config"]["disk_tier"] is None and plain["evidence"]["disk_tier"] is None


def test_a_disk_tier_without_hits_is_invalid_never_a_result(disk_run: Path, tmp_path: Path) -> None:
    result = analyze(disk_run, out=tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    validity = result.csv("validity.csv").set_index(["scenario", "concurrency"]).sort_index()
    disk = validity.loc["lmcache-disk"]
    assert disk.at[1, "disk_tier_engaged"] == "pass"
    assert "3072.0 MiB read" in disk.at[1, "disk_tier_engaged_evidence"]
    assert disk.at[4, "disk_tier_engaged"] == "invalid" and disk.at[4, "verdict"] == "invalid"
    assert "no disk-tier hits" in disk.at[4, "disk_tier_engaged_evidence"]
    assert disk.at[16, "disk_tier_engaged"] == "invalid"
    assert "no disk-tier evidence recorded" in disk.at[16, "disk_tier_engaged_evidence"]
    assert set(validity.loc["no-offload", "disk_tier_engaged"]) == {"skip"}
    # Only the proven point may enter the peaks.
    peaks = result.csv("peak_throughput_all.csv").set_index("scenario")
    assert peaks.at["lmcache-disk", "optimal_concurrency"] == 1


@pytest.fixture(scope="module")
def routed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    request = kubernetes_cuda_request(scenarios=["llm-d-redis"], concurrency=[4], run_id="routed")
    request["vllm"].update(replicas=2, tensor_parallel_size=1)
    plan, run_dir = plan_run(tmp_path_factory.mktemp("routed"), request)
    point = plan["points"][0]
    # Replica a took 30 requests and hit often; replica b 10 and hit less.
    a = {**COUNTERS_BEFORE, "prefix_cache_queries": 1000 + 3000, "prefix_cache_hits": 100 + 2400}
    b = {**COUNTERS_BEFORE, "prefix_cache_queries": 1000 + 1000, "prefix_cache_hits": 100 + 200}
    _record_point(
        run_dir,
        point,
        {"vllm-a": {**a, "request_success": 30}, "vllm-b": {**b, "request_success": 10}},
        index_keys_before=0,
        index_keys_after=50,
    )
    return json.loads((run_dir / point["dir"] / "point.json").read_text()), run_dir


def test_the_plan_and_record_carry_the_replicas(routed_run: tuple[dict, Path]) -> None:
    point, _ = routed_run
    assert point["config"]["replicas"] == 2 and point["config"]["tensor_parallel_size"] == 1
    per_server = point["evidence"]["per_server"]
    assert per_server["vllm-a"]["requests_finished_delta"] == 30
    assert per_server["vllm-b"]["requests_finished_delta"] == 10


def test_the_analyzer_reads_per_replica_counts_and_hit_rates(routed_run: tuple[dict, Path]) -> None:
    point, _ = routed_run
    table = replica_table([point]).set_index("replica")
    assert table.at["vllm-a", "request_share"] == pytest.approx(0.75)
    assert table.at["vllm-a", "hit_rate"] == pytest.approx(0.8)
    assert table.at["vllm-b", "hit_rate"] == pytest.approx(0.2)
    summary = routing_summary(replica_table([point])).iloc[0]
    assert summary["replicas"] == 2 and summary["requests_finished"] == 40
    assert summary["max_request_share"] == pytest.approx(0.75)
    assert summary["request_share_cv"] == pytest.approx(0.5)  # |30 - 20| / 20
    assert summary["hit_rate_pooled"] == pytest.approx(2600 / 4000)
    assert (summary["hit_rate_min"], summary["hit_rate_max"]) == (pytest.approx(0.2), pytest.approx(0.8))


def test_a_counter_reset_or_a_missing_counter_is_no_count() -> None:
    record = {
        "scenario": "llm-d-redis",
        "concurrency": 4,
        "repetition": 1,
        "evidence": {
            "per_server": {
                "a": {"requests_finished_delta": -5, "prefix_cache_queries_delta": 0},
                "b": {"prefix_cache_hits_delta": 3},
            }
        },
    }
    table = replica_table([record]).set_index("replica")
    assert math.isnan(table.at["a", "requests_finished"]) and math.isnan(table.at["a", "hit_rate"])
    assert math.isnan(table.at["b", "request_share"])
    assert replica_table([{"scenario": "x", "evidence": {}}]).empty


def test_the_report_shows_the_replicas_and_a_flagged_disk_tier(
    routed_run: tuple[dict, Path], tmp_path: Path
) -> None:
    _, run_dir = routed_run
    slow = {
        "status": "ok",
        "device": "sdb",
        "seq_read_mib_s": 120.0,
        "seq_write_mib_s": 90.0,
        "rand_read_iops": 400,
        "rand_write_iops": 380,
        "expected": {"seq_read_mib_s": 1000, "rand_read_iops": 20000},
        "slow_fraction": 0.5,
    }
    hosts = {"gpu-1": {"disk_probe": {"/kv-disk/lmcache-disk": slow}}}
    checked(record("manifest", run_dir, [], {"status": "complete", "hosts": hosts}))
    result = analyze(run_dir, out=tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    routing = result.csv("routing.csv")
    assert list(routing["replicas"]) == [2] and routing.at[0, "max_request_share"] == pytest.approx(0.75)
    assert set(result.csv("replicas.csv")["replica"]) == {"vllm-a", "vllm-b"}
    report = (result.out / "report.md").read_text()
    section = report[report.index("## Replicas and disk tiers") :]
    assert "| llm-d-redis | 4 | 1 | 2 | 75% | 65% | 20% to 80% |" in section
    assert "disk tier `/kv-disk/lmcache-disk` on gpu-1 (sdb)" in section
    assert "rand_read_iops 400 IOPS is below 50% of the expected 20000 IOPS" in section
