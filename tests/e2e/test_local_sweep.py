"""A real sweep on this machine: vLLM (CPU build) serving the tiny model, GuideLLM, Redis, Valkey, PCP.

The same path `make demo` takes, shortened. These tests check behaviour, never speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import zstandard

from tests.conftest import BIN, REPO, ansible_env, run_playbook

pytestmark = pytest.mark.e2e

SHORT = [
    "concurrency=2,3",
    "duration_s=8",
    "prefix_tokens=256",
    "prompt_tokens=32",
    "output_tokens=16",
    "turns=2",
    # The demo inventory runs 2 repetitions; the shortened sweep runs 1 (the warm and kill runs add a second).
    "repetitions=1",
    "redis_password=kvbench-test-secret-r",
    "valkey_password=kvbench-test-secret-v",
]
SERVICES = ("kvbench-vllm", "kvbench-kv-indexer", "kvbench-pmlogger", "kvbench-redis", "kvbench-valkey")
STATE = REPO / ".work" / "state"


def sweep(results: Path, *extra: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    args = ["-i", "inventory/local", "-e", f"results_dir={results}"]
    for item in [*SHORT, *extra]:
        args += ["-e", item]
    return run_playbook("sweep.yml", *args, timeout=timeout)


def kvbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "kvbench"), *args], capture_output=True, text=True, check=False)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def running_services() -> list[str]:
    alive = []
    for name in SERVICES:
        pidfile = STATE / "services" / f"{name}.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 0)
                alive.append(name)
            except (ProcessLookupError, ValueError):
                pass
    return alive


def metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    result = sweep(results)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "kvbench-test-secret" not in result.stdout + result.stderr
    return (results / "latest").resolve()


def test_manifest_says_what_ran(demo_run):
    manifest = load(demo_run / "manifest.json")
    assert manifest["status"] == "complete"
    assert manifest["versions"]["vllm"].startswith("0.32")
    assert manifest["versions"]["guidellm"].startswith("0.8")
    assert len(manifest["harness"]["commit"]) == 40 and isinstance(manifest["harness"]["dirty"], bool)
    host = manifest["hosts"]["localhost"]
    assert host["cpu_model"] and host["memory_gib"] > 0
    assert manifest["ended_at"] and manifest["plan_hash"] == load(demo_run / "plan.json")["plan_hash"]
    assert manifest["scenarios"][:2] == ["no-offload", "native-offload"]
    phases = {p["phase"] for p in manifest["phases"]}
    assert {"scenario", "server_start", "point"} <= phases


def test_every_record_conforms_to_its_schema(demo_run):
    from kvbench.records import problems

    kinds = {
        "plan.json": "plan",
        "manifest.json": "manifest",
        "scenario.json": "scenario",
        "point.json": "point",
    }
    checked = 0
    for path in demo_run.rglob("*.json"):
        if path.name in kinds:
            assert problems(load(path), kinds[path.name]) == [], path
            checked += 1
    assert checked == 2 + 8 + len(load(demo_run / "plan.json")["points"])


def test_the_recorded_seed_is_the_seed_guidellm_used(demo_run):
    plan = load(demo_run / "plan.json")
    ok = [load(p) for p in demo_run.glob("*/c*-r*/point.json") if load(p)["status"] == "ok"]
    for record in ok:
        point = next(
            p
            for p in plan["points"]
            if p["id"] == f"{record['scenario']}/c{record['concurrency']:04d}-r{record['repetition']}"
        )
        assert record["guidellm"]["seed"] == record["guidellm"]["seed_reported"] == point["seed"], record
        assert record["workload"]["seed"] == point["seed"]
    # Cold cache: every level its own conversations, the same for every scenario.
    assert len({(r["concurrency"], r["repetition"], r["guidellm"]["seed"]) for r in ok}) == 2


def test_every_point_is_ok_or_skipped_with_a_reason(demo_run):
    records = [load(p) for p in demo_run.glob("*/c*-r*/point.json")]
    assert len(records) == len(load(demo_run / "plan.json")["points"]) == 8 * 2
    for record in records:
        if record["scenario"] in ("no-offload", "llm-d-inmem", "llm-d-redis", "llm-d-valkey"):
            assert record["status"] == "ok", record
            assert record["evidence"]["cache_reset_verified"] is True
        else:
            assert record["status"] == "skipped" and record["reason"], record


def test_guidellm_reports_and_metrics_show_prefix_cache_hits(demo_run):
    for point in demo_run.glob("no-offload/c*-r1"):
        report = json.loads(
            zstandard.ZstdDecompressor()
            .decompressobj()
            .decompress((point / "guidellm.json.zst").read_bytes())
        )
        assert report["benchmarks"], point
        before = (point / "metrics" / "localhost-before.prom").read_text()
        after = (point / "metrics" / "localhost-after.prom").read_text()
        hits = metric(after, "vllm:prefix_cache_hits_total") - metric(before, "vllm:prefix_cache_hits_total")
        assert hits > 0, point
        assert load(point / "point.json")["evidence"]["prefix_cache_hits_delta"] == hits


def test_index_scenarios_fill_their_store(demo_run):
    for name in ("llm-d-inmem", "llm-d-redis", "llm-d-valkey"):
        for point in demo_run.glob(f"{name}/c*-r1/point.json"):
            evidence = load(point)["evidence"]
            assert evidence["index_keys_after"] > 0, (name, evidence)


def test_vllm_started_once_per_scenario_and_nothing_is_left_running(demo_run):
    for name in ("no-offload", "llm-d-inmem", "llm-d-redis", "llm-d-valkey"):
        assert load(demo_run / name / "scenario.json")["server_starts"] == 1
    assert running_services() == []


def test_checksums_cover_the_fetched_artifacts(demo_run):
    result = subprocess.run(
        ["sha256sum", "--check", "--quiet", "SHA256SUMS"],
        cwd=demo_run,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    listed = (demo_run / "SHA256SUMS").read_text()
    assert "no-offload/c0002-r1/guidellm.json.zst" in listed


def test_no_secret_reaches_results(demo_run):
    checked = 0
    for path in demo_run.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".zst":
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        assert b"kvbench-test-secret" not in data, path
        checked += 1
    assert checked > 50


def test_analyzer_reads_the_run(demo_run, tmp_path):
    result = kvbench("analyze", str(demo_run), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    peaks = (tmp_path / "peak_throughput_all.csv").read_text()
    assert "no-offload" in peaks and "llm-d-redis" in peaks
    assert (tmp_path / "report.html").stat().st_size > 0

    # Every second of the run is in exactly one row; little of it unexplained.
    timing = pd.read_csv(tmp_path / "sweep_timing.csv")
    for _run, rows in timing.groupby("run"):
        wall_s = rows["seconds"].sum()
        assert wall_s > 0
        assert rows.loc[rows["phase"] == "unaccounted", "seconds"].sum() <= 0.05 * wall_s
        assert rows.loc[rows["phase"] == "measured", "seconds"].sum() > 0


def test_metrics_extract_series_and_archives_for_every_ok_point(demo_run, tmp_path):
    result = kvbench("metrics", str(demo_run), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    points = pd.read_parquet(tmp_path / "points.parquet")
    ok = points[points["status"] == "ok"]
    assert len(ok) > 0
    assert set(ok["metrics_source"]) == {"series"}
    assert (ok["pcp_samples"] >= 1).all(), ok[["point", "pcp_samples"]].to_string()
    # The workload shares prefixes, so the GPU prefix cache hits inside every measured window.
    assert (ok["prefix_cache_hit_rate"] > 0).all()


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("warm")
    result = sweep(
        results, "scenarios=no-offload", "warm_cache=true", "repetitions=2", "guidellm_request_samples=4"
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return (results / "latest").resolve()


def test_warm_cache_replays_one_seed_per_repetition_and_the_levels_share_prefixes(warm_run):
    ok = [load(p) for p in warm_run.glob("no-offload/c*-r*/point.json")]
    assert len(ok) == 4 and all(r["status"] == "ok" for r in ok), ok
    for record in ok:
        assert record["workload"]["warm_cache"] is True
        assert record["guidellm"]["seed"] == record["guidellm"]["seed_reported"]
    seeds = {(r["repetition"], r["guidellm"]["seed"]) for r in ok}
    assert len(seeds) == 2  # one seed per repetition, shared by its two levels
    prompts = {}
    for level in (2, 3):
        report = json.loads(
            zstandard.ZstdDecompressor()
            .decompressobj()
            .decompress((warm_run / f"no-offload/c{level:04d}-r1/guidellm.json.zst").read_bytes())
        )
        prompts[level] = {p[:200] for p in _sampled_prompts(report)}
    assert prompts[2] and prompts[3] and prompts[2] & prompts[3], "the two levels share no prefix"


def _sampled_prompts(report: dict) -> list[str]:
    """The shared-prefix texts of the requests GuideLLM kept in its report (0.8: each request's request_args
    holds the chat body; the prefix is the system message)."""
    found: list[str] = []
    for benchmark in report["benchmarks"]:
        for group in (benchmark.get("requests") or {}).values():
            for request in group or []:
                args = request.get("request_args") if isinstance(request, dict) else None
                body = (json.loads(args) if isinstance(args, str) else args or {}).get("body") or {}
                for message in body.get("messages") or []:
                    if message.get("role") == "system" and isinstance(message.get("content"), str):
                        found.append(message["content"])
    return found


def test_two_runs_analysed_together_stay_apart(demo_run, warm_run, tmp_path):
    result = kvbench("analyze", str(demo_run), str(warm_run), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "complete_metrics.csv")
    assert set(table["run"]) == {demo_run.name, warm_run.name}
    baseline = table[table["scenario"] == "no-offload"].groupby(["run", "concurrency"])["repetition"]
    # One repetition in the demo run, two in the warm run: nothing merged, nothing invented.
    assert set(baseline.max().loc[demo_run.name]) == {1}
    assert set(baseline.max().loc[warm_run.name]) == {2}


def test_killing_vllm_mid_point_fails_that_point_and_a_rerun_fills_it_in(tmp_path):
    results = tmp_path / "results"
    args = ["-i", "inventory/local", "-e", f"results_dir={results}", "-e", "scenarios=no-offload"]
    for item in [*SHORT, "duration_s=20", "repetitions=2"]:
        args += ["-e", item]
    proc = subprocess.Popen(
        [str(BIN / "ansible-playbook"), "sweep.yml", *args],
        cwd=REPO,
        env=ansible_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Wait until GuideLLM is measuring the first point, then kill the server's whole process group.
        deadline = time.monotonic() + 900
        pidfile = STATE / "services" / "kvbench-vllm.pid"
        while time.monotonic() < deadline:
            busy = subprocess.run(
                ["pgrep", "-f", "guidellm.*run"], capture_output=True, text=True, check=False
            )
            if busy.returncode == 0 and pidfile.exists():
                break
            assert proc.poll() is None, "the sweep ended before the first point ran"
            time.sleep(1)
        else:
            pytest.fail("GuideLLM never started")
        os.killpg(int(pidfile.read_text()), signal.SIGKILL)
        output, _ = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = (results / "latest").resolve()
    first = load(run / "no-offload" / "c0002-r1" / "point.json")
    second = load(run / "no-offload" / "c0003-r1" / "point.json")
    assert first["status"] == "failed" and first["reason"], output[-4000:]
    assert second["status"] == "ok" and second["evidence"]["server_restarted"] is True, output[-4000:]
    # One death, recorded once: by the point it happened in, not again by the point that restarted the server.
    assert first["evidence"]["server_crash"]["detected"] == "during the point"
    assert not second["evidence"].get("server_crash")
    crashes = load(run / "no-offload" / "scenario.json")["crashes"]
    assert [crash["point"] for crash in crashes] == ["no-offload/c0002-r1"], crashes
    assert running_services() == []

    rerun = run_playbook("sweep.yml", *args, timeout=1800)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert load(run / "no-offload" / "c0002-r1" / "point.json")["status"] == "ok"
    # The point already recorded ok was not measured again.
    assert load(run / "no-offload" / "c0003-r1" / "point.json")["started_at"] == second["started_at"]
    # Cold cache, repetitions 1 and 2: GuideLLM reports the planned seed, and each point has its own.
    records = [load(p) for p in run.glob("no-offload/c*-r*/point.json")]
    assert {(r["repetition"], r["status"]) for r in records} == {(1, "ok"), (2, "ok")}
    for record in records:
        assert record["guidellm"]["seed"] == record["guidellm"]["seed_reported"], record
    assert len({r["guidellm"]["seed"] for r in records}) == 4


def _iso_epoch(text: str) -> float:
    from datetime import datetime, timezone

    whole, _, fraction = text.rstrip("Z").partition(".")  # fractions of a second are optional
    moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def _series(point_dir: Path) -> list[dict]:
    import gzip

    with gzip.open(point_dir / "metrics" / "series.jsonl.gz", "rt") as lines:
        return [json.loads(line) for line in lines]


def test_every_ok_point_has_a_metrics_series_inside_its_window(demo_run):
    checked = 0
    for path in demo_run.glob("*/c*-r*/point.json"):
        record = load(path)
        if record["status"] != "ok":
            continue
        window = record["phases"]["benchmark"]
        # The window's ends are whole seconds; the series' times are not.
        start, end = _iso_epoch(window["start"]), _iso_epoch(window["end"]) + 1
        inside = [s for s in _series(path.parent) if s["ok"] and start <= s["t"] <= end]
        assert inside, f"{path.parent}: no answered /metrics scrape inside {window}"
        assert any(k.startswith("vllm:request_success_total") for s in inside for k in s["samples"]), path
        assert record["evidence"]["watchdog"]["stalled"] is False, path
        checked += 1
    assert checked > 0


def test_every_ok_point_has_its_pcp_archive_checked_over_its_window(demo_run):
    checked = 0
    for path in demo_run.glob("*/c*-r*/point.json"):
        record = load(path)
        if record["status"] != "ok":
            continue
        archive = record["evidence"]["archive_check"]
        assert archive["result"] == "pass", (path, archive)
        assert archive["records_in_window"] > 0 and not archive["missing"], (path, archive)
        checked += 1
    assert checked > 0


def test_no_crash_and_no_restart_in_the_demo(demo_run):
    for path in demo_run.glob("*/scenario.json"):
        scenario = load(path)
        if scenario["status"] == "ran":
            assert scenario["server_restarts"] == 0 and scenario["crashes"] == [], scenario
