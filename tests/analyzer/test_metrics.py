"""Evidence columns and `kvbench metrics`: /metrics series read inside each point's window, PCP archives read
with PCP's own tools, and the per-point summary in complete_metrics.csv.

The series are canned in the monitor's format from real vLLM 0.32 /metrics text (tests/analyzer/data, a
demo point's before/after scrapes) and from the record builders' counters; PCP archives are real ones,
written by PCP's own LOGIMPORT API (no pmcd needed).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import pytest
import zstandard
from click.testing import CliRunner

from kvbench.cli import main
from kvbench.ingest.metrics_pcp import pcp_tools_available, read_scenario_archives
from kvbench.ingest.metrics_series import point_window, read_series
from kvbench.metrics_summary import Window, point_summary, series_summary
from kvbench.plan.prometheus import parse_samples
from tests.records.builders import (
    COUNTERS_BEFORE,
    counters_after,
    finished_run,
    nodes_cpu_request,
    prometheus_text,
)

DATA = Path(__file__).resolve().parent / "data"
_SAMPLE = re.compile(r"^(?P<key>vllm:[^\s{]+(?:\{.*\})?)\s+(?P<value>\S+)$")


def real_text(when: str) -> str:
    """A real vLLM 0.32.0 (CPU) /metrics page, before or after a demo point."""
    raw = (DATA / f"vllm-0.32.0-cpu-metrics-{when}.prom.zst").read_bytes()
    return zstandard.ZstdDecompressor().decompressobj().decompress(raw).decode()


def samples_of(text: str, **overrides: float) -> dict[str, float]:
    """The monitor's `samples` object: every vllm: sample except _bucket, keyed `<metric>{<labels>}`."""
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match and "_bucket" not in match["key"]:
            value = float(match["value"])
            if not math.isnan(value):
                samples[match["key"]] = value
    samples.update(overrides)
    return samples


def write_series(point_dir: Path, scrapes: Iterable[tuple[float, str, Mapping[str, float] | None]]) -> Path:
    """`<point>/metrics/series.jsonl.gz` as the monitor writes it; samples None = a failed scrape."""
    lines = []
    for t, url, samples in scrapes:
        ok = samples is not None
        entry = {"t": t, "source": "vllm", "url": url, "ok": ok, "error": "" if ok else "refused"}
        entry["samples"] = dict(samples or {})
        lines.append(json.dumps(entry))
    path = point_dir / "metrics" / "series.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def counter_samples(counters: Mapping[str, float]) -> dict[str, float]:
    return samples_of(prometheus_text(counters))


def test_real_vllm_text_summarised_inside_the_window(tmp_path: Path) -> None:
    before, after = real_text("before"), real_text("after")
    window = Window(1000.0, 1020.0)
    url = "http://server-1:8000/metrics"
    busy = samples_of(before, **{'vllm:kv_cache_usage_perc{engine="0",model_name="tiny-qwen3"}': 0.8})
    busy['vllm:num_requests_running{engine="0",model_name="tiny-qwen3"}'] = 4.0
    busy['vllm:num_requests_waiting{engine="0",model_name="tiny-qwen3"}'] = 2.0
    idle = dict(busy)
    idle['vllm:kv_cache_usage_perc{engine="0",model_name="tiny-qwen3"}'] = 0.4
    idle['vllm:num_requests_waiting{engine="0",model_name="tiny-qwen3"}'] = 0.0
    path = write_series(
        tmp_path,
        [
            (999.0, url, samples_of(before)),
            (1005.0, url, busy),
            (1010.0, url, None),
            (1015.0, url, idle),
            (1021.0, url, samples_of(after)),
        ],
    )
    series = read_series(path)
    assert (series.scrapes, series.failed) == (5, 1)
    out = series_summary(series.frame, window)

    sums_before, sums_after = parse_samples(before), parse_samples(after)
    hits = sums_after["vllm:prefix_cache_hits_total"] - sums_before["vllm:prefix_cache_hits_total"]
    queries = sums_after["vllm:prefix_cache_queries_total"] - sums_before["vllm:prefix_cache_queries_total"]
    assert 0 < hits < queries
    assert out["prefix_cache_hit_rate"] == pytest.approx(hits / queries)
    # vLLM 0.32 splits prompt tokens by source: here every cached token is a local hit, none external.
    assert out["prompt_share_local_cache"] == pytest.approx(hits / queries)
    assert out["prompt_share_external"] == 0.0
    assert out["prompt_share_local_cache"] + out["prompt_share_computed"] == pytest.approx(1.0)
    assert math.isnan(out["external_hit_rate"])  # 0 external queries: no rate, not 0 %
    assert out["kv_usage_mean"] == pytest.approx(0.6) and out["kv_usage_max"] == pytest.approx(0.8)
    assert (out["running_mean"], out["running_max"]) == (4.0, 4.0)
    assert (out["waiting_mean"], out["waiting_max"]) == (1.0, 2.0)
    generated = sums_after["vllm:generation_tokens_total"] - sums_before["vllm:generation_tokens_total"]
    assert out["generation_tokens"] == generated > 0
    assert math.isnan(out["offload_load_bytes"])  # no connector: no offload counters


LEGACY = 'vllm:kv_offload_total_bytes_total{{transfer_type="{}"}}'


def test_offload_bytes_from_either_name_and_servers_summed() -> None:
    window = Window(0.0, 10.0)
    rows = []
    # Server a: vLLM 0.32's flat counters; server b: the older transfer_type-labelled counter.
    for t, scale in ((-1.0, 0), (11.0, 1)):
        rows += [
            (t, "vllm", "a", True, 'vllm:kv_offload_load_bytes_total{engine="0"}', 3e9 * scale),
            (t, "vllm", "a", True, 'vllm:kv_offload_store_bytes_total{engine="0"}', 1e9 * scale),
            (
                t,
                "vllm",
                "b",
                True,
                'vllm:kv_offload_total_bytes_total{transfer_type="CPU_to_GPU"}',
                5e8 * scale,
            ),
            (
                t,
                "vllm",
                "b",
                True,
                'vllm:kv_offload_total_bytes_total{transfer_type="GPU_to_CPU"}',
                2e8 * scale,
            ),
        ]
    frame = pd.DataFrame.from_records(rows, columns=["t", "source", "url", "ok", "sample", "value"])
    out = series_summary(frame, window)
    # Each server counts under the name it has, never twice.
    assert out["offload_load_bytes"] == pytest.approx(3.5e9) and out["offload_store_bytes"] == pytest.approx(
        1.2e9
    )
    only_a = series_summary(frame[frame["url"] == "a"], window)
    assert only_a["offload_load_bytes"] == 3e9 and only_a["offload_store_bytes_per_s"] == pytest.approx(1e8)
    only_b = series_summary(frame[frame["url"] == "b"], window)
    assert only_b["offload_load_bytes"] == 5e8 and only_b["offload_store_bytes"] == 2e8


GAUGES = {
    'vllm:kv_cache_usage_perc{engine="0",model_name="m"}': 0.5,
    'vllm:num_requests_running{engine="0",model_name="m"}': 3.0,
    'vllm:num_requests_waiting{engine="0",model_name="m"}': 1.0,
}


def _series_for_run(run_dir: Path, late_hits: float = 500.0) -> dict[str, float]:
    """A series for every ok point: the record's before/after counters at the window's edges, halfway values
    inside, and more hits after the window closed (which must not count). Returns point dir -> hit rate."""
    rates = {}
    for point_file in sorted(run_dir.glob("*/c*-r*/point.json")):
        record = json.loads(point_file.read_text())
        if record["status"] != "ok":
            continue
        window = point_window(record)
        assert window is not None
        scrapes = []
        for number, server in enumerate(record["servers"]):
            url = f"http://{server}:8000/metrics"
            after = counters_after(record["concurrency"], number)
            half = {k: (COUNTERS_BEFORE[k] + after[k]) / 2 for k in after}
            late = {**after, "prefix_cache_hits": after["prefix_cache_hits"] + late_hits}
            scrapes += [
                (window.start - 0.5, url, counter_samples(COUNTERS_BEFORE)),
                (window.start + window.length_s / 2, url, {**counter_samples(half), **GAUGES}),
                (window.end + 0.5, url, counter_samples(after)),
                (window.end + 30.0, url, counter_samples(late)),
            ]
        write_series(point_file.parent, scrapes)
        evidence = record["evidence"]
        rates[point_file.parent.name] = (
            evidence["prefix_cache_hits_delta"] / evidence["prefix_cache_queries_delta"]
        )
    return rates


def test_complete_metrics_hit_rate_matches_the_record_deltas(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request(scenarios=["no-offload"]))
    _series_for_run(run_dir)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["analyze", str(run_dir), "--out", str(out), "--no-figures", "-j", "1"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "complete_metrics.csv")
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == 3
    assert (ok["metrics_source"] == "series").all()
    expected = ok["prefix_cache_hits_delta"] / ok["prefix_cache_queries_delta"]
    assert ok["prefix_cache_hit_rate"].to_numpy() == pytest.approx(expected.to_numpy())
    external = ok["external_prefix_cache_hits_delta"] / ok["external_prefix_cache_queries_delta"]
    assert ok["external_hit_rate"].to_numpy() == pytest.approx(external.to_numpy())
    assert (ok["preemptions"] == ok["preemptions_delta"]).all()
    assert ((ok["prefix_cache_hit_rate"] >= 0) & (ok["prefix_cache_hit_rate"] <= 1)).all()
    # The report explains the scenario with the same numbers.
    report = (out / "report.md").read_text()
    evidence = report.split("Evidence per Scenario", 1)[1]
    lowest, highest = ok.sort_values("concurrency").iloc[[0, -1]]["prefix_cache_hit_rate"]
    assert (
        f"GPU prefix-cache hit rate {100 * lowest:.0f} % at c=1 → {100 * highest:.0f} % at c=16" in evidence
    )
    assert "preempted 3 times over 3 point(s)" in evidence


def test_without_a_series_the_columns_come_from_the_record(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request(scenarios=["no-offload"]))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["analyze", str(run_dir), "--out", str(out), "--no-figures", "-j", "1"])
    assert result.exit_code == 0, result.output
    ok = pd.read_csv(out / "complete_metrics.csv").query("status == 'ok'")
    assert (ok["metrics_source"] == "snapshots").all()
    expected = ok["prefix_cache_hits_delta"] / ok["prefix_cache_queries_delta"]
    assert ok["prefix_cache_hit_rate"].to_numpy() == pytest.approx(expected.to_numpy())
    assert ok["kv_usage_mean"].isna().all()


def test_kvbench_metrics_writes_tidy_tables_and_figures(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request(scenarios=["no-offload"]))
    rates = _series_for_run(run_dir)
    out = tmp_path / "metrics"
    result = CliRunner().invoke(main, ["metrics", str(run_dir), "--out", str(out), "--csv"])
    assert result.exit_code == 0, result.output
    points = pd.read_parquet(out / "points.parquet")
    by_point = dict(zip(points["point"], points["prefix_cache_hit_rate"], strict=True))
    assert by_point == pytest.approx(rates)
    series = pd.read_parquet(out / "series.parquet")
    assert set(series["point"]) == set(rates)
    # Two of the four scrapes per server fall inside no window: the edges and the late one.
    inside = series[series["in_window"]]
    assert not inside.empty and (inside["t_rel_s"] >= 0).all()
    assert len(series[~series["in_window"]]) > len(inside)
    assert pd.read_csv(out / "points.csv")["point"].tolist() == points["point"].tolist()
    assert (points["kv_usage_max"] == 0.5).all() and (points["waiting_max"] == 1.0).all()
    for figure in ("evidence_hit_rates.png", "evidence_kv_usage_peak_level.png"):
        assert (out / figure).stat().st_size > 0
    assert not (out / "evidence_energy_per_token.png").exists()  # no power data: not drawn


def test_a_damaged_series_is_named_not_a_traceback(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request(scenarios=["no-offload"]))
    _series_for_run(run_dir)
    victim = sorted(run_dir.glob("no-offload/c*-r*/metrics/series.jsonl.gz"))[0]
    victim.write_bytes(b"not gzip at all")
    truncated = sorted(run_dir.glob("no-offload/c*-r*/metrics/series.jsonl.gz"))[1]
    truncated.write_bytes(truncated.read_bytes()[:-12])  # an interrupted writer: no gzip trailer
    result = CliRunner().invoke(main, ["metrics", str(run_dir), "--out", str(tmp_path / "m"), "--no-figures"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"{victim}: not a gzip file" in result.output
    points = pd.read_parquet(tmp_path / "m" / "points.parquet").set_index("point")
    assert points.loc[victim.parent.parent.name, "metrics_source"] == "snapshots"
    assert points.loc[truncated.parent.parent.name, "series_scrapes"] > 0


# --- PCP archives ---------------------------------------------------------------------------------------

PMI_SCRIPT = r"""
import sys, json
from pcp import pmi
import cpmapi as c
spec = json.loads(sys.argv[2])
log = pmi.pmiLogImport(sys.argv[1])
log.pmiSetHostname("gpu-node")
log.pmiSetTimezone("UTC")
ms = log.pmiUnits(0, 1, 0, 0, c.PM_TIME_MSEC, 0)
none = log.pmiUnits(0, 0, 0, 0, 0, 0)
cpus = log.pmiInDom(60, 0)
gpus = log.pmiInDom(120, 0)
for i in range(spec["cpus"]):
    log.pmiAddInstance(cpus, "cpu%d" % i, i)
log.pmiAddInstance(gpus, "gpu0", 0)
for item, state in enumerate(("user", "idle")):
    log.pmiAddMetric("kernel.percpu.cpu." + state, log.pmiID(60, 0, item), c.PM_TYPE_U64, cpus,
                     c.PM_SEM_COUNTER, ms)
log.pmiAddMetric("nvidia.energy", log.pmiID(120, 0, 20), c.PM_TYPE_U64, gpus, c.PM_SEM_COUNTER, none)
log.pmiAddMetric("nvidia.power", log.pmiID(120, 0, 21), c.PM_TYPE_U32, gpus, c.PM_SEM_INSTANT, none)
user = [0] * spec["cpus"]
idle = [0] * spec["cpus"]
for k in range(spec["records"]):
    for i in range(spec["cpus"]):
        log.pmiPutValue("kernel.percpu.cpu.user", "cpu%d" % i, str(user[i]))
        log.pmiPutValue("kernel.percpu.cpu.idle", "cpu%d" % i, str(idle[i]))
        busy = 1000 if i < spec["saturated"] else 200
        user[i] += busy
        idle[i] += 1000 - busy
    log.pmiPutValue("nvidia.energy", "gpu0", str(k * 300000))
    log.pmiPutValue("nvidia.power", "gpu0", "300000")
    log.pmiWrite(spec["t0"] + k, 0)
log.pmiEnd()
"""


def write_archive(base: Path, t0: int, records: int, cpus: int, saturated: int) -> None:
    base.parent.mkdir(parents=True, exist_ok=True)
    spec = json.dumps({"t0": t0, "records": records, "cpus": cpus, "saturated": saturated})
    subprocess.run(["/usr/bin/python3", "-c", PMI_SCRIPT, str(base), spec], check=True, timeout=60)


pcp_only = pytest.mark.skipif(
    not (pcp_tools_available() and Path("/usr/bin/python3").exists()), reason="PCP is not installed"
)


@pcp_only
def test_a_zst_archive_is_read_and_summarised_in_the_window(tmp_path: Path) -> None:
    scenario = tmp_path / "no-offload"
    base = scenario / "pcp" / "gpu-node" / "gpu-node-20260301T100000Z"
    write_archive(base, t0=1_772_359_200, records=20, cpus=4, saturated=2)
    # PCP 6 cannot read .zst: compress every volume, the reader must decompress them first.
    for path in list(base.parent.glob(base.name + ".*")):
        path.with_name(path.name + ".zst").write_bytes(zstandard.ZstdCompressor().compress(path.read_bytes()))
        path.unlink()
    frame, problems = read_scenario_archives(scenario)
    assert problems == []
    assert set(frame["metric"]) == {
        "kernel.percpu.cpu.user",
        "kernel.percpu.cpu.idle",
        "nvidia.energy",
        "nvidia.power",
    }
    assert set(frame["host"]) == {"gpu-node"}
    assert frame["t"].min() == 1_772_359_200

    window = Window(1_772_359_202.0, 1_772_359_212.0)
    out = point_summary(None, frame, window, {}, output_tokens=1000.0)
    assert out["cpu_count"] == 4
    assert out["cpu_saturated_mean"] == 2 and out["cpu_saturated_max"] == 2
    assert out["cpu_busy_mean"] == pytest.approx((1.0 + 1.0 + 0.2 + 0.2) / 4)
    assert out["pcp_samples"] == 11
    assert out["gpu_power_w_mean"] == pytest.approx(300.0)
    assert out["gpu_energy_j"] == pytest.approx(10 * 300.0)  # 300 J per second over 10 s
    assert out["joules_per_output_token"] == pytest.approx(3.0)


@pcp_only
def test_a_broken_archive_is_a_problem_line(tmp_path: Path) -> None:
    scenario = tmp_path / "no-offload"
    meta = scenario / "pcp" / "node" / "archive.meta"
    meta.parent.mkdir(parents=True)
    meta.write_bytes(b"\x00" * 64)
    frame, problems = read_scenario_archives(scenario)
    assert frame.empty
    assert len(problems) == 1 and str(scenario / "pcp" / "node" / "archive") in problems[0]


def test_the_window_is_the_benchmark_phase_else_the_point() -> None:
    phases = {"benchmark": {"start": "2026-03-01T10:00:02Z", "end": "2026-03-01T10:00:14Z"}}
    window = point_window({"phases": phases, "started_at": "2026-03-01T10:00:00Z"})
    assert window == Window(1_772_359_202.0, 1_772_359_214.0)
    whole = point_window({"started_at": "2026-03-01T10:00:00Z", "ended_at": "2026-03-01T10:00:15Z"})
    assert whole is not None and whole.length_s == 15.0
    assert point_window({"started_at": "garbage"}) is None
