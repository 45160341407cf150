"""Real GuideLLM 0.5.3 and 0.8.1 result files, as .json.zst, .json and .yaml."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
import zstandard
from analyzer_fixtures import SAMPLE_053, SAMPLE_081, SAMPLES, read_zst_json, template

from kvbench.ingest import ingest


def _expected(doc: dict) -> list[dict[str, float]]:
    """The numbers the analyzer must report, read straight from the document."""
    rows = []
    for bench in doc["benchmarks"]:
        m = bench["metrics"]
        rows.append(
            {
                "concurrency": bench["config"]["strategy"]["streams"],
                "output_tok_s_successful": m["output_tokens_per_second"]["successful"]["mean"],
                "output_tok_s_total": m["output_tokens_per_second"]["total"]["mean"],
                "total_tok_s": m["tokens_per_second"]["total"]["mean"],
                "requests_s": m["requests_per_second"]["successful"]["mean"],
                "ttft_ms_mean": m["time_to_first_token_ms"]["successful"]["mean"],
                "ttft_ms_median": m["time_to_first_token_ms"]["successful"]["median"],
                "ttft_ms_p90": m["time_to_first_token_ms"]["successful"]["percentiles"]["p90"],
                "ttft_ms_p99": m["time_to_first_token_ms"]["successful"]["percentiles"]["p99"],
                "tpot_ms_p99": m["time_per_output_token_ms"]["successful"]["percentiles"]["p99"],
                "itl_ms_median": m["inter_token_latency_ms"]["successful"]["median"],
                "latency_s_p90": m["request_latency"]["successful"]["percentiles"]["p90"],
                "requests_successful": m["request_totals"]["successful"],
                "requests_errored": m["request_totals"]["errored"],
                "requests_incomplete": m["request_totals"]["incomplete"],
                "duration_s": bench["duration"],
            }
        )
    return rows


@pytest.mark.parametrize("version", ["0.5.3", "0.8.1"])
def test_real_sample_values_match_the_json(version: str) -> None:
    path = SAMPLES[version]
    result = ingest([path])
    assert result.bad == []
    assert result.files_read == 1
    expected = _expected(read_zst_json(path))
    records = result.records
    assert [r["concurrency"] for r in records] == [1.0, 4.0, 16.0]
    for record, want in zip(records, expected, strict=True):
        for key, value in want.items():
            assert record[key] == pytest.approx(value, rel=1e-12), key
        assert record["guidellm_version"] == version
        assert record["report_format"] == (1 if version == "0.5.3" else 2)
        assert record["model"] == "mock-qwen3"
        assert record["status"] == "ok"
        assert record["layout"] == "loose"
        assert record["source_file"] == str(path)


def test_loose_file_scenario_comes_from_labels_or_name() -> None:
    old, new = ingest([SAMPLE_053]).records, ingest([SAMPLE_081]).records
    # 0.8 runs carry labels (this sample: scenario=mock); 0.5 files are named by their file name.
    assert {r["scenario"] for r in new} == {"mock"}
    assert {r["scenario"] for r in old} == {"guidellm-0.5.3-concurrent-1-4-16"}


def test_successful_and_total_throughput_differ_where_guidellm_says_so(tmp_path: Path) -> None:
    doc = read_zst_json(SAMPLE_081)
    doc["benchmarks"][2]["metrics"]["output_tokens_per_second"]["total"]["mean"] = 2600.0
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    record = ingest([path]).records[2]
    assert record["output_tok_s_successful"] == pytest.approx(2131.25)
    assert record["output_tok_s_total"] == pytest.approx(2600.0)


@pytest.mark.parametrize("version", ["0.5.3", "0.8.1"])
def test_plain_json_and_yaml_read_like_zst(tmp_path: Path, version: str) -> None:
    doc = template(version)  # the real sample with two per-request records per status (YAML is slow)
    json_path = tmp_path / f"{version}.json"
    json_path.write_text(json.dumps(doc))
    yaml_path = tmp_path / f"{version}.yaml"
    yaml_path.write_text(yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False))
    reference = ingest([SAMPLES[version]]).records
    for path in (json_path, yaml_path):
        result = ingest([path])
        assert result.bad == [], path
        assert len(result.records) == 3
        for got, want in zip(result.records, reference, strict=True):
            for key in ("concurrency", "output_tok_s_successful", "ttft_ms_p99", "requests_total"):
                assert got[key] == pytest.approx(want[key]), (path.name, key)


def test_guidellm_04_file_without_metadata_is_read(tmp_path: Path) -> None:
    doc = read_zst_json(SAMPLE_053)
    del doc["metadata"]  # GuideLLM 0.4.x wrote no metadata block
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    result = ingest([path])
    assert result.bad == []
    assert [r["guidellm_version"] for r in result.records] == ["unknown"] * 3
    assert all(math.isnan(r["report_format"]) for r in result.records)


def test_sample_tree_cli(tmp_path: Path, run_analyze) -> None:
    tree = tmp_path / "samples"
    tree.mkdir()
    for path in SAMPLES.values():
        shutil.copy(path, tree / path.name)
    run = run_analyze(tree)
    assert run.exit_code == 0, run.stderr
    metrics = run.csv("complete_metrics.csv")
    assert sorted(metrics["guidellm_version"].unique()) == ["0.5.3", "0.8.1"]
    assert len(metrics) == 6
    peaks = run.csv("peak_throughput_all.csv")
    assert set(peaks["optimal_concurrency"]) == {16}
    # no no-offload scenario among loose files: deltas are empty and the user is told so
    assert peaks["delta_vs_baseline_pct"].isna().all()
    assert "baseline scenario 'no-offload' is not in the results" in run.stderr


def test_zstd_written_by_streams_and_in_several_frames(tmp_path: Path) -> None:
    """Files compressed by a pipe (no size in the header) or in several frames (zstd of appended parts)."""
    data = json.dumps(read_zst_json(SAMPLE_081)).encode()
    streamed = tmp_path / "streamed.json.zst"
    streamed.write_bytes(zstandard.ZstdCompressor(write_content_size=False).compress(data))
    frames = tmp_path / "frames.json.zst"
    half = len(data) // 2
    frames.write_bytes(
        zstandard.ZstdCompressor().compress(data[:half]) + zstandard.ZstdCompressor().compress(data[half:])
    )
    reference = ingest([SAMPLE_081]).records
    for path in (streamed, frames):
        result = ingest([path])
        assert result.bad == [], path
        assert [r["output_tok_s_successful"] for r in result.records] == [
            r["output_tok_s_successful"] for r in reference
        ]
