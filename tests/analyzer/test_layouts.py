"""This project's results layout and the original evaluation's, including its older variants."""

from __future__ import annotations

import json
import math
from pathlib import Path

from analyzer_fixtures import KvbenchRun, Level, make_report, write_original_point, write_zst_json

from kvbench.ingest import ingest
from kvbench.ingest.layouts import parse_original_dirname


def test_kvbench_tree_keeps_failed_point_and_excludes_it_from_peaks(tmp_path: Path, run_analyze) -> None:
    run = KvbenchRun(tmp_path / "results", "Qwen3-0.6B")
    for scenario, values in {
        "no-offload": (100.0, 180.0, 150.0),
        "lmcache-local": (90.0, 160.0, 170.0),
    }.items():
        for concurrency, value in zip((1, 8, 32), values, strict=True):
            run.point(scenario, Level(concurrency, value))
    # The highest level of no-offload failed; had it counted, its (absent) number could not win anyway,
    # so give the failed point a result file with a huge throughput to prove it is not read.
    failed = run.point("no-offload", Level(64, 9999.0), status="failed", reason="vLLM died (OOM)")
    assert (failed / "guidellm.json.zst").is_file()
    run.scenario("native-offload", status="skipped", reason="OffloadingConnector needs a GPU")

    result = run_analyze(tmp_path / "results")
    assert result.exit_code == 0, result.stderr
    metrics = result.csv("complete_metrics.csv")
    bad = metrics[metrics["status"] != "ok"]
    assert sorted(bad["status"]) == ["failed", "skipped"]
    row = bad[bad["status"] == "failed"].iloc[0]
    assert (row["model"], row["scenario"], row["concurrency"], row["repetition"]) == (
        "Qwen3-0.6B",
        "no-offload",
        64,
        1,
    )
    assert row["reason"] == "vLLM died (OOM)"
    assert math.isnan(row["output_tok_s_successful"]) and math.isnan(row["ttft_ms_mean"])
    skipped = bad[bad["status"] == "skipped"].iloc[0]
    assert skipped["scenario"] == "native-offload"
    assert skipped["reason"] == "OffloadingConnector needs a GPU"
    assert set(metrics["run"].dropna()) == {"Qwen3-0.6B-local-1a2b3c4d"}
    assert set(metrics["layout"]) == {"kvbench"}

    peaks = result.csv("peak_throughput_all.csv").set_index("scenario")
    assert peaks.at["no-offload", "peak_output_tok_s"] == 180.0
    assert peaks.at["no-offload", "optimal_concurrency"] == 8
    assert peaks.at["lmcache-local", "optimal_concurrency"] == 32
    assert round(peaks.at["lmcache-local", "delta_vs_baseline_pct"], 6) == round((170 / 180 - 1) * 100, 6)
    assert "native-offload" not in peaks.index
    report = (result.out / "report.md").read_text()
    assert "no-offload / concurrency 64: failed (vLLM died (OOM))" in report


def test_kvbench_repetitions_are_averaged_per_level(tmp_path: Path, run_analyze) -> None:
    run = KvbenchRun(tmp_path / "results", "Qwen3-8B")
    run.point("no-offload", Level(1, 40.0), repetition=1)
    run.point("no-offload", Level(1, 50.0), repetition=2)
    run.point("no-offload", Level(4, 44.0), repetition=1)
    run.point("no-offload", Level(4, 47.0), repetition=2)
    result = run_analyze(tmp_path / "results")
    metrics = result.csv("complete_metrics.csv")
    assert list(metrics["repetition"]) == [1, 2, 1, 2]
    peak = result.csv("peak_throughput_all.csv").iloc[0]
    # level 1 averages 45, level 4 averages 45.5: the mean per level decides, not the single best run
    assert peak["optimal_concurrency"] == 4
    assert peak["peak_output_tok_s"] == 45.5
    assert peak["repetitions_at_peak"] == 2


def test_original_dirname_parsing() -> None:
    assert parse_original_dirname("1x2xL40S_upstream-llm-d-0.4.0_Qwen3-0.6B_no-offload_replica1_rate50") == {
        "hardware": "1x2xL40S",
        "software": "upstream-llm-d-0.4.0",
        "model": "Qwen3-0.6B",
        "scenario": "no-offload",
        "replicas": 1,
        "rate": 50,
    }
    assert (
        parse_original_dirname("1x2xL40S_upstream-llm-d-0.7.0_Qwen3-14B_cpu+fs-offload-20k_replica1_rate1")[
            "scenario"
        ]
        == "cpu+fs-offload-20k"
    )
    # the first runs had one directory per (model, scenario) and every rate in one file
    assert parse_original_dirname("1x1xL40S_upstream-llm-d-0.4.0_Qwen3-8B_llm-d-redis") == {
        "hardware": "1x1xL40S",
        "software": "upstream-llm-d-0.4.0",
        "model": "Qwen3-8B",
        "scenario": "llm-d-redis",
    }
    assert parse_original_dirname("not-an-evaluation-dir") == {}


def test_original_layout_directory_name_is_only_a_fallback(tmp_path: Path) -> None:
    root = tmp_path / "results"
    # No benchmark-config.txt: model, scenario from the name; concurrency from the data.
    write_original_point(root, "Qwen3-14B", "no-offload", Level(50, 60.0), config=False)
    # benchmark-config.txt wins over the directory name, and the data's concurrency over both.
    write_original_point(
        root,
        "Qwen3-14B",
        "lmcache-local",
        Level(100, 61.0),
        dirname="1x2xL40S_upstream-llm-d-0.4.0_Qwen3-8B_wrong-name_replica1_rate7",
        config_overrides={"Rate (Concurrency)": "99"},
    )
    # An old spelling of the baseline maps to the canonical name.
    write_original_point(root, "Qwen3-14B", "no-cpu-offload", Level(1, 20.0), config=False)
    result = ingest([root])
    assert result.bad == []
    rows = {(r["scenario"], r["concurrency"]): r for r in result.records}
    assert set(rows) == {("no-offload", 50.0), ("lmcache-local", 100.0), ("no-offload", 1.0)}
    assert rows[("no-offload", 50.0)]["model"] == "Qwen3-14B"
    assert rows[("lmcache-local", 100.0)]["model"] == "Qwen3-14B"
    assert rows[("no-offload", 1.0)]["scenario_raw"] == "no-cpu-offload"
    assert rows[("no-offload", 50.0)]["run"] == "1x2xL40S_upstream-llm-d-0.4.0"


def test_original_layout_name_fallback_when_data_says_nothing(tmp_path: Path) -> None:
    point = write_original_point(tmp_path, "Qwen3-8B", "native-offload-10k", Level(150, 70.0), config=False)
    path = point / "guidellm-results.json.zst"
    doc = make_report([Level(150, 70.0)], model="Qwen/Qwen3-8B")
    doc["benchmarks"][0]["config"]["strategy"] = {"type_": "concurrent"}  # no streams recorded
    doc["benchmarks"][0]["config"]["backend"]["model"] = None  # model left to the server's default
    doc["args"]["model"] = None
    write_zst_json(path, doc)
    (record,) = ingest([tmp_path]).records
    assert record["model"] == "Qwen3-8B"
    assert record["concurrency"] == 150.0
    assert record["scenario"] == "native-offload"  # the v0.5.0 runs' name for the 10k-block default


def test_original_multi_rate_directory(tmp_path: Path) -> None:
    """The first evaluation runs: `<hw>_<sw>_<model>_<scenario>/` with all rates in one file."""
    point = tmp_path / "1x2xL40S_upstream-llm-d-0.4.0_Qwen3-0.6B_no-offload"
    levels = [Level(c, v) for c, v in ((1, 100.0), (50, 600.0), (100, 580.0))]
    write_zst_json(point / "guidellm-results.json.zst", make_report(levels, model="Qwen/Qwen3-0.6B"))
    (point / "benchmark-config.txt").write_text(
        "Rate: 1,50,100\nModel Name: Qwen3-0.6B\nParameters: no-offload\n"
    )
    records = ingest([tmp_path]).records
    assert [(r["model"], r["scenario"], r["concurrency"]) for r in records] == [
        ("Qwen3-0.6B", "no-offload", 1.0),
        ("Qwen3-0.6B", "no-offload", 50.0),
        ("Qwen3-0.6B", "no-offload", 100.0),
    ]


def test_same_point_twice_becomes_a_second_repetition(tmp_path: Path, run_analyze) -> None:
    for tree in ("a", "b"):
        write_original_point(
            tmp_path / tree, "Qwen3-8B", "no-offload", Level(50, 100.0 if tree == "a" else 110.0)
        )
    result = run_analyze(tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 0
    metrics = result.csv("complete_metrics.csv")
    assert list(metrics["repetition"]) == [1, 2]
    assert "kept as repetition 2" in result.stderr
    assert result.csv("peak_throughput_all.csv").iloc[0]["peak_output_tok_s"] == 105.0


def test_kvbench_point_without_record_takes_identity_from_its_path(tmp_path: Path) -> None:
    run = KvbenchRun(tmp_path / "results", "Qwen3-14B")
    point = run.point("llm-d-valkey", Level(150, 64.0), repetition=2)
    (point / "point.json").unlink()  # the run was interrupted before the record was written
    (record,) = ingest([tmp_path / "results"]).records
    assert (record["model"], record["scenario"], record["concurrency"], record["repetition"]) == (
        "Qwen3-14B",
        "llm-d-valkey",
        150.0,
        2.0,
    )
    assert record["status"] == "ok"
    assert "no point.json" in record["reason"]
    assert record["output_tok_s_successful"] == 64.0


def test_schema_1_point_records_of_older_runs_are_still_read(tmp_path: Path, run_analyze) -> None:
    """point.json of schema 1 (docs/design.md before records were versioned): no `config`, the evidence
    under `validity`, the base seed in `workload` and the point's seed in `guidellm`."""
    run = KvbenchRun(tmp_path / "results", "Qwen3-32B-AWQ")
    point = run.point("no-offload", Level(50, 61.5))
    record = json.loads((point / "point.json").read_text())
    record.update(
        workload={"duration_s": 120, "prompt_tokens": 128, "output_tokens": 128, "prefix_tokens": 10000,
                  "prefix_count": 100, "turns": 5, "seed": 889},
        guidellm={"version": "0.8.1", "file": "guidellm.json.zst", "seed": 939,
                  "client": {"cores": 16, "cpu_busy_pct": 99.4, "saturated_suspect": True}},
        servers=["gpu1"],
        validity={"cache_reset_verified": True, "prefix_cache_queries_delta": 5000,
                  "prefix_cache_hits_delta": 4200, "external_prefix_cache_hits_delta": 0,
                  "index_keys_before": None, "index_keys_after": None, "preemptions_delta": 3,
                  "server_restarted": False},
    )  # fmt: skip
    (point / "point.json").write_text(json.dumps(record))
    result = run_analyze(tmp_path / "results")
    assert result.exit_code == 0, result.stderr
    (row,) = result.csv("complete_metrics.csv").to_dict("records")
    assert (row["run"], row["model"], row["scenario"], row["output_tok_s_successful"]) == (
        "Qwen3-32B-AWQ-local-1a2b3c4d",
        "Qwen3-32B-AWQ",
        "no-offload",
        61.5,
    )
    assert (row["seed"], row["requested_duration_s"], row["prefix_count"]) == (939, 120, 100)
    assert row["client_saturated_suspect"] is True and row["client_cpu_busy_pct"] == 99.4
    assert row["cache_reset_verified"] is True and row["server_restarted"] is False
    assert (row["prefix_cache_hits_delta"], row["preemptions_delta"]) == (4200, 3)
    assert row["servers"] == "gpu1"
    assert math.isnan(row["seed_reported"]) and math.isnan(row["cpu_offload_bytes"])


def test_target_extras_beside_bare_reports_are_not_results(tmp_path: Path, run_analyze) -> None:
    """A tree without records (a Kubernetes run from before the record path): the reports are read as loose
    files, and treatment.json, diagnostics/, server/ and pcp/ are never taken for GuideLLM results."""
    scenario = tmp_path / "old-k8s" / "lmcache-redis"
    write_zst_json(scenario / "guidellm.json.zst", make_report([Level(4, 300.0)], version="0.8.1"))
    (scenario / "treatment.json").write_text(json.dumps({"valid": True, "reasons": []}))
    (scenario / "diagnostics").mkdir()
    (scenario / "diagnostics" / "pods.yaml").write_text("- kind: Pod\n")
    (scenario / "server").mkdir()
    (scenario / "server" / "vllm-0.log").write_text("INFO ready\n")
    (scenario / "pcp" / "node-a").mkdir(parents=True)
    (scenario / "pcp" / "node-a" / ".metrics.json").write_text("{}")
    result = run_analyze(tmp_path / "old-k8s")
    assert result.exit_code == 0, result.stderr
    metrics = result.csv("complete_metrics.csv")
    assert list(metrics["source_file"]) == [str(scenario / "guidellm.json.zst")]
    assert list(metrics["output_tok_s_successful"]) == [300.0]
