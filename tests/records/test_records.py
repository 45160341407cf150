"""The record path: `kvbench plan` and `kvbench record` build runs from the real catalogs; every record
conforms to its schema, a record that does not is named with its violation, and an ok point records the
seed that GuideLLM's own report gives."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from secrets import token_hex
from typing import Any

import pytest
import zstandard

from kvbench.ingest.reader import read_document
from kvbench.plan.guidellm import report_seed
from kvbench.records import validate
from tests.records.builders import (
    IN_PROCESS,
    PASSWORD_MARKER,
    SAMPLE_SEED,
    Caller,
    SweepOptions,
    analyze,
    finished_run,
    kubernetes_cuda_request,
    nodes_cpu_request,
    plan_run,
    point_outcome,
    record,
)

REQUESTS = {"nodes-cpu": nodes_cpu_request, "kubernetes-cuda": kubernetes_cuda_request}
SUPPORTED = {
    "nodes-cpu": {"no-offload": True, "native-offload": False, "llm-d-redis": True},
    "kubernetes-cuda": {
        "no-offload": True,
        "native-offload": True,
        "lmcache-redis": True,
        "llm-d-valkey": True,
    },
}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _point_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {str(p.parent.relative_to(run_dir)): _json(p) for p in sorted(run_dir.glob("*/c*-r*/point.json"))}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_plan_is_built_once_from_the_real_catalogs(tmp_path: Path, name: str) -> None:
    results = tmp_path / "results"
    plan, run_dir = plan_run(results, REQUESTS[name](), Caller(subprocess_run=True))
    assert run_dir == (results / plan["run_id"]).resolve()
    assert validate(_json(run_dir / "plan.json"), "plan") == plan
    assert (results / "latest").resolve() == run_dir
    assert "  plan.json\n" in (run_dir / "SHA256SUMS").read_text()
    assert {s["name"]: s["supported"] for s in plan["scenarios"]} == SUPPORTED[name]
    assert len(plan["points"]) == len(SUPPORTED[name]) * 3
    # Cold cache: every level of a scenario gets its own seed; every scenario the same seeds.
    seeds = {(p["scenario"], p["concurrency"]): p["seed"] for p in plan["points"]}
    assert sorted({seed for (_, _), seed in seeds.items()}) == [SAMPLE_SEED + c for c in (1, 4, 16)]
    # The same request plans the same run again (resume), even from another process.
    again, again_dir = plan_run(results, REQUESTS[name]())
    assert (again["run_id"], again["plan_hash"], again_dir) == (plan["run_id"], plan["plan_hash"], run_dir)


@pytest.mark.parametrize(
    ("name", "version"), [("nodes-cpu", "0.8.1"), ("nodes-cpu", "0.5.3"), ("kubernetes-cuda", "0.8.1")]
)
def test_ok_points_record_the_seed_guidellm_reports(tmp_path: Path, name: str, version: str) -> None:
    request = REQUESTS[name](guidellm_version=version)
    run_dir = finished_run(tmp_path / "results", request, SweepOptions(guidellm_version=version))
    plan = validate(_json(run_dir / "plan.json"), "plan")
    planned = {p["id"]: p for p in plan["points"]}
    points = _point_records(run_dir)
    assert sorted(points) == sorted(planned)
    for point_id, point in points.items():
        validate(point, "point")
        supported = SUPPORTED[name][point["scenario"]]
        assert point["status"] == ("ok" if supported else "skipped"), (point_id, point["reason"])
        assert point["guidellm"]["seed"] == point["workload"]["seed"] == planned[point_id]["seed"]
        assert point["guidellm"]["argv"] == planned[point_id]["argv"]
        if not supported:
            assert point["reason"] == next(
                s["skip_reason"] for s in plan["scenarios"] if s["name"] == point["scenario"]
            )
            assert point["guidellm"]["seed_reported"] is None
            continue
        report = read_document(run_dir / point_id / point["guidellm"]["file"])
        assert point["guidellm"]["seed_reported"] == report_seed(report) == point["guidellm"]["seed"]
        assert point["guidellm"]["version"] == version
        # counters from the /metrics snapshots the target left in metrics/
        assert point["evidence"]["prefix_cache_hits_delta"] == 10 * point["concurrency"]
        assert point["evidence"]["prefix_cache_queries_delta"] == 1000
    for scenario, supported in SUPPORTED[name].items():
        scenario_record = validate(_json(run_dir / scenario / "scenario.json"), "scenario")
        assert scenario_record["status"] == ("ran" if supported else "skipped")
    manifest = validate(_json(run_dir / "manifest.json"), "manifest")
    assert manifest["status"] == "complete"
    assert manifest["scenarios"] == list(SUPPORTED[name])
    assert manifest["model"]["name"] == request["model"]


def test_sums_cover_every_record_and_verify(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request())
    sums = {}
    for line in (run_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    records = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*.json") if p.name != "guidellm.json"}
    assert records <= set(sums)
    for name, digest in sums.items():
        assert hashlib.sha256((run_dir / name).read_bytes()).hexdigest() == digest, name


def test_a_report_of_another_seed_fails_the_point(tmp_path: Path) -> None:
    """The sample report as GuideLLM wrote it says seed 889; a cold-cache plan asks 889 + concurrency."""
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request(), SweepOptions(report_seed="sample"))
    for point_id, point in _point_records(run_dir).items():
        if point["scenario"] == "native-offload":
            continue
        assert point["status"] == "failed", point_id
        assert point["guidellm"]["seed_reported"] == SAMPLE_SEED
        assert (
            point["reason"]
            == f"GuideLLM reports seed {SAMPLE_SEED}, the plan asked for {point['guidellm']['seed']}"
        )
    result = analyze(tmp_path / "results", out=tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    metrics = result.csv("complete_metrics.csv")
    assert set(metrics["status"]) == {"failed", "skipped"}
    assert metrics["output_tok_s_successful"].isna().all()
    assert result.csv("peak_throughput_all.csv").empty


def test_warm_cache_replays_one_seed_per_repetition(tmp_path: Path) -> None:
    """With warm_cache every level of repetition 1 replays the base seed, which is the sample's own (889);
    repetition 2 gets a seed of its own, so the same sample report no longer matches it."""
    request = nodes_cpu_request(scenarios=["no-offload"], warm_cache=True, repetitions=2)
    run_dir = finished_run(tmp_path / "results", request, SweepOptions(report_seed="sample"))
    points = _point_records(run_dir)
    assert len(points) == 6
    for point in points.values():
        if point["repetition"] == 1:
            assert point["status"] == "ok"
            assert point["guidellm"]["seed"] == point["guidellm"]["seed_reported"] == SAMPLE_SEED
        else:
            assert point["status"] == "failed"
            assert point["guidellm"]["seed"] == SAMPLE_SEED + 100_000
    metrics = analyze(tmp_path / "results", out=tmp_path / "out").csv("complete_metrics.csv")
    ok = metrics[metrics["status"] == "ok"]
    assert list(ok["repetition"]) == [1, 1, 1]
    assert set(ok["seed"]) == set(ok["seed_reported"]) == {SAMPLE_SEED}
    assert set(ok["warm_cache"]) == {True}
    assert list(metrics.loc[metrics["status"] == "failed", "repetition"]) == [2, 2, 2]


def test_the_writer_refuses_an_outcome_that_does_not_conform(tmp_path: Path) -> None:
    _, run_dir = plan_run(tmp_path / "results", nodes_cpu_request())
    result = record("point", run_dir, ["--point", "no-offload/c0001-r1"], point_outcome(status="finished"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"kvbench: {run_dir}: point no-offload/c0001-r1: ")
    assert "status: 'finished' is not one of ['ok', 'failed', 'skipped']" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "no-offload" / "c0001-r1" / "point.json").exists()
    unknown = record("point", run_dir, ["--point", "no-offload/c9999-r1"], point_outcome())
    assert unknown.exit_code == 2 and "no-offload/c9999-r1" in unknown.stderr


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("{", "not valid JSON"),
        ("missing-points", "not a valid kvbench plan record: (top): 'points' is a required property"),
    ],
)
def test_the_writer_names_a_damaged_plan(tmp_path: Path, damage: str, message: str) -> None:
    _, run_dir = plan_run(tmp_path / "results", nodes_cpu_request())
    plan_path = run_dir / "plan.json"
    if damage == "{":
        plan_path.write_text("{")
    else:
        plan = _json(plan_path)
        del plan["points"]
        plan_path.write_text(json.dumps(plan))
    result = record("manifest", run_dir, [], {"status": "running"}, Caller(subprocess_run=True))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"kvbench: {plan_path}: {message}")
    assert "Traceback" not in result.stderr


def test_analyze_names_records_that_do_not_conform(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", nodes_cpu_request())
    damaged = {
        "no-offload/c0001-r1": (
            lambda p: p.update(status="done"),
            "not a valid kvbench point record (schema 2): "
            "status: 'done' is not one of ['ok', 'failed', 'skipped']",
        ),
        "no-offload/c0004-r1": (
            lambda p: p.pop("evidence"),
            "not a valid kvbench point record (schema 2): (top): 'evidence' is a required property",
        ),
        "llm-d-redis/c0016-r1": (
            lambda p: p.update(schema_version=3),
            "kvbench point record of schema_version 3; this analyzer reads 1, 2",
        ),
    }
    for point_id, (change, _) in damaged.items():
        path = run_dir / point_id / "point.json"
        point = _json(path)
        change(point)
        path.write_text(json.dumps(point))
    manifest_path = run_dir / "manifest.json"
    manifest = _json(manifest_path)
    manifest["status"] = "finished"
    manifest_path.write_text(json.dumps(manifest))

    result = analyze(tmp_path / "results", out=tmp_path / "out")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for point_id, (_, message) in damaged.items():
        wanted = f"kvbench: {run_dir / point_id / 'point.json'}: {message}"
        assert wanted in lines, f"{wanted!r} not in\n{result.stderr}"
    assert (
        f"kvbench: {manifest_path}: not a valid kvbench manifest record (schema 2): "
        "status: 'finished' is not one of ['running', 'complete', 'interrupted']"
    ) in lines
    metrics = result.csv("complete_metrics.csv")
    ok = metrics[metrics["status"] == "ok"]
    assert len(ok) == 6 - len(damaged)  # the other points of the run are still read
    assert set(ok["run"]) == {run_dir.name}


def test_in_process_and_subprocess_writers_agree(tmp_path: Path) -> None:
    """The record the harness writes (`python -m kvbench`) is the record the tests write in-process."""
    one = finished_run(
        tmp_path / "a", nodes_cpu_request(scenarios=["no-offload"]), SweepOptions(kvbench=IN_PROCESS)
    )
    two = finished_run(
        tmp_path / "b",
        nodes_cpu_request(scenarios=["no-offload"]),
        SweepOptions(kvbench=Caller(subprocess_run=True)),
    )
    for point_id, point in _point_records(one).items():
        other = _point_records(two)[point_id]
        assert {k: v for k, v in point.items() if k != "ended_at"} == {
            k: v for k, v in other.items() if k != "ended_at"
        }


SECRET_SCENARIOS = {
    "nodes-cpu": ["no-offload", "llm-d-redis", "llm-d-valkey", "lmcache-redis"],
    "kubernetes-cuda": ["no-offload", "lmcache-redis", "lmcache-valkey", "llm-d-redis", "llm-d-valkey"],
}


def _every_text(run_dir: Path) -> dict[Path, str]:
    """Every file of a run as text, compressed reports decompressed."""
    texts = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".zst":
            data = zstandard.ZstdDecompressor().stream_reader(data).read()
        texts[path] = data.decode("utf-8", errors="replace")
    return texts


@pytest.mark.parametrize("name", sorted(SECRET_SCENARIOS))
def test_no_file_of_a_finished_run_holds_a_secret(tmp_path: Path, name: str) -> None:
    """The record path runs with the store passwords and the HF token in its environment (as the controller
    may have them); no file of the run it writes holds them. Configs carry only the password marker."""
    secrets = {
        "redis": "redis-" + token_hex(16),
        "valkey": "valkey-" + token_hex(16),
        "hf": "hf_" + token_hex(17),
    }
    env = {
        "KVBENCH_STORE_PASSWORD": secrets["redis"],
        "REDIS_PASSWORD": secrets["redis"],
        "VALKEY_PASSWORD": secrets["valkey"],
        "HF_TOKEN": secrets["hf"],
        "HUGGING_FACE_HUB_TOKEN": secrets["hf"],
    }
    request = REQUESTS[name](scenarios=SECRET_SCENARIOS[name], concurrency=[4])
    run_dir = finished_run(tmp_path / "results", request, SweepOptions(kvbench=Caller(True, env)))
    texts = _every_text(run_dir)
    assert len(texts) > 15
    for path, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{path} holds the {what} secret"
    plan = _json(run_dir / "plan.json")
    lmcache = {s["name"]: s["lmcache"] for s in plan["scenarios"] if s["lmcache"]}
    if name == "kubernetes-cuda":
        assert lmcache["lmcache-redis"]["remote_url"] == f"redis://:{PASSWORD_MARKER}@kvbench-redis:6379"
        assert lmcache["lmcache-valkey"]["extra_config"]["valkey_username"] == PASSWORD_MARKER
        assert PASSWORD_MARKER in texts[run_dir / "lmcache-redis" / "scenario.json"]
    else:
        assert lmcache == {}  # LMCache cannot run on the CPU platform: nothing resolved, nothing to leak
