"""`kvbench export mlflow` against a real MLflow tracking server (SQLite backend, local artifact store),
started once for the module; what was logged is read back through MlflowClient.

The run is made by the record path (tests/records/builders.py: a real plan, records written by
`kvbench record`, the real GuideLLM sample reports), analysed by `kvbench analyze`, with a /metrics series
for one point and secrets planted in plan.json that must not reach MLflow.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from test_metrics import write_archive

from kvbench.cli import main
from kvbench.ingest.metrics_pcp import pcp_tools_available
from kvbench.secrets_filter import is_secret_name, redact
from tests.records.builders import analyze, finished_run, nodes_cpu_request

mlflow = pytest.importorskip("mlflow", reason="the dev extra installs MLflow (kvbench[mlflow])")
from mlflow.tracking import MlflowClient  # noqa: E402

SECRETS = ("hf_SECRET_TOKEN_VALUE", "store-pw-in-url", "plain-password-value")
SERIES_POINT = "llm-d-redis/c0004-r1"
STARTUP_LIMIT_S = 180
EXPERIMENT = "kvbench-test"
PCP = pcp_tools_available() and Path("/usr/bin/python3").exists()
PCP_START_S = 1_772_359_200  # the builders' points measure from 10:00:02 to 10:00:14 on 2026-03-01


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """`mlflow server` started on a free loopback port (not yet waited for, so the run is built meanwhile);
    its whole process group is stopped after the module."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = (root / "server.log").open("wb")
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    argv += ["--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    # No background job runner (it forks eight huey consumers; tracking needs none of them).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True
    )
    try:
        yield server, f"http://127.0.0.1:{port}", root / "server.log"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def tracking_uri(mlflow_server: tuple[subprocess.Popen, str, Path]) -> str:
    """The server's URI once it answers /health."""
    server, uri, log = mlflow_server
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while not _answers(f"{uri}/health"):
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    return uri


def _write_series(point_dir: Path, scrapes: list[tuple[float, bool, float]]) -> None:
    """metrics/series.jsonl.gz as the point monitor writes it: one JSON line per scrape."""
    lines = []
    for t, ok, running in scrapes:
        samples = {
            'vllm:num_requests_running{engine="0",model_name="tiny-qwen3"}': running,
            'vllm:kv_cache_usage_perc{engine="0",model_name="tiny-qwen3"}': running / 10,
        }
        entry = {"t": t, "source": "vllm", "url": "http://server-1:8000/metrics", "ok": ok}
        entry.update({"samples": samples} if ok else {"error": "connection refused"})
        lines.append(json.dumps(entry))
    folder = point_dir / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "series.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


SCRAPES = [(1772359203.0, True, 2.0), (1772359204.0, False, 0.0), (1772359205.5, True, 4.0)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, mlflow_server: tuple) -> Path:
    """A finished run (one scenario skipped on the CPU), analysed into RUN/analysis with figures, with a
    /metrics series for one point and secrets planted in its plan. Built while the server starts."""
    results = tmp_path_factory.mktemp("run") / "results"
    request = nodes_cpu_request(scenarios=["no-offload", "native-offload", "llm-d-redis"], concurrency=[1, 4])
    run_dir = finished_run(results, request)
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["vllm"]["hf_token"] = SECRETS[0]
    scenario = next(s for s in plan["scenarios"] if s["name"] == "llm-d-redis")
    scenario["vllm"]["env"]["LMCACHE_REMOTE_URL"] = f"redis://:{SECRETS[1]}@127.0.0.1:6379/0"
    scenario["vllm"]["env"]["REDIS_PASSWORD"] = SECRETS[2]
    (run_dir / "plan.json").write_text(json.dumps(plan, indent=2))
    _write_series(run_dir / SERIES_POINT, SCRAPES)
    if PCP:
        # A real pmlogger-format archive (PCP's own pmi library) covering the points' benchmark phase.
        base = run_dir / "llm-d-redis" / "pcp" / "gpu-node" / "gpu-node-20260301T100000Z"
        write_archive(base, t0=PCP_START_S, records=20, cpus=2, saturated=1)
    analysis = analyze(run_dir, out=run_dir / "analysis", figures=True)
    assert analysis.exit_code == 0, analysis.stderr
    return run_dir


def _export(run_dir: Path, uri: str) -> str:
    result = CliRunner().invoke(
        main, ["export", "mlflow", str(run_dir), "--tracking-uri", uri, "--experiment", EXPERIMENT]
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.stderr
    return result.stderr


def _runs(client: MlflowClient, run_id: str) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id], f"tags.`kvbench.run_id` = '{run_id}'"))


def _everything_logged(client: MlflowClient, runs: list, tmp: Path) -> str:
    """Every param name and value, tag, metric name and downloaded artifact of the runs, as one text."""
    parts = []
    for run in runs:
        parts += [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(run.data.metrics)]
        folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp / run.info.run_id)))
        parts += [p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def exported(tracking_uri: str, demo_run: Path) -> tuple[str, str]:
    return tracking_uri, _export(demo_run, tracking_uri)


def test_every_point_is_a_nested_run_with_params_metrics_and_artifacts(
    exported: tuple[str, str], demo_run: Path
) -> None:
    uri, stderr = exported
    assert "7 MLflow run(s)" in stderr and "7 created" in stderr, stderr
    plan = json.loads((demo_run / "plan.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    runs = _runs(client, plan["run_id"])
    parents = [r for r in runs if r.data.tags["kvbench.kind"] == "sweep"]
    points = {r.data.tags["kvbench.point_id"]: r for r in runs if r.data.tags["kvbench.kind"] == "point"}
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == plan["run_id"]
    assert set(points) == {p["id"] for p in plan["points"]}
    metrics = pd.read_csv(demo_run / "analysis" / "complete_metrics.csv")
    for point in plan["points"]:
        run = points[point["id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == point["id"]
        params = run.data.params
        assert params["scenario"] == point["scenario"]
        assert params["concurrency"] == str(point["concurrency"])
        assert params["seed"] == str(point["seed"])
        row = metrics[
            (metrics["scenario"] == point["scenario"])
            & (metrics["concurrency"] == point["concurrency"])
            & (metrics["repetition"] == point["repetition"])
        ].iloc[0]
        assert run.data.tags["kvbench.status"] == row["status"]
        if row["status"] == "ok":
            assert params["config.platform"] == "cpu"
            assert params["workload.prompt_tokens"] == "128"
            assert params["scenario.vllm.args"].startswith('["--served-model-name"')
            assert run.data.metrics["output_tok_s_successful"] == pytest.approx(
                row["output_tok_s_successful"]
            )
            assert run.data.metrics["ttft_ms_p99"] == pytest.approx(row["ttft_ms_p99"])
            assert run.data.metrics["prefix_cache_hits_delta"] == pytest.approx(
                row["prefix_cache_hits_delta"]
            )
            assert run.data.tags["kvbench.verdict"] == row["verdict"]
        else:
            assert run.data.tags["kvbench.reason"] == row["reason"]
            assert "output_tok_s_successful" not in run.data.metrics
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["point.json"]
    assert parent.data.params["model.name"] == "tiny-qwen3"
    assert parent.data.params["concurrency"] == "[1,4]"
    assert json.loads(parent.data.params["scenarios"]) == ["no-offload", "native-offload", "llm-d-redis"]
    peaks = pd.read_csv(demo_run / "analysis" / "peak_throughput_all.csv").set_index("scenario")
    peak = parent.data.metrics["llm-d-redis/peak_output_tok_s"]
    assert peak == pytest.approx(peaks.at["llm-d-redis", "peak_output_tok_s"])
    analysis = {a.path for a in client.list_artifacts(parent.info.run_id, "analysis")}
    assert {"analysis/report.md", "analysis/report.html", "analysis/peak_throughput_all.csv"} <= analysis
    assert any(path.endswith(".png") for path in analysis)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "records")} == {
        "records/plan.json",
        "records/manifest.json",
    }


def test_metrics_series_are_histories_with_their_timestamps(
    exported: tuple[str, str], demo_run: Path
) -> None:
    uri, _ = exported
    client = MlflowClient(tracking_uri=uri)
    plan = json.loads((demo_run / "plan.json").read_text())
    run = next(
        r for r in _runs(client, plan["run_id"]) if r.data.tags.get("kvbench.point_id") == SERIES_POINT
    )
    key = "metrics/server-1:8000/vllm:num_requests_running/engine:0/model_name:tiny-qwen3"
    history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    # The failed scrape (ok false) has no samples: two values, at their scrape times, steps 0 and 1.
    assert [(m.timestamp, m.step, m.value) for m in history] == [
        (1772359203000, 0, 2.0),
        (1772359205500, 1, 4.0),
    ]
    other = next(
        r
        for r in _runs(client, plan["run_id"])
        if r.data.tags.get("kvbench.point_id") == "no-offload/c0001-r1"
    )
    assert not any(name.startswith("metrics/") for name in other.data.metrics)


def test_no_secret_reaches_mlflow(exported: tuple[str, str], demo_run: Path, tmp_path: Path) -> None:
    uri, _ = exported
    client = MlflowClient(tracking_uri=uri)
    plan = json.loads((demo_run / "plan.json").read_text())
    runs = _runs(client, plan["run_id"])
    logged = _everything_logged(client, runs, tmp_path)
    assert "tiny-qwen3" in logged and "# KV-cache strategy evaluation" in logged  # params and artifacts read
    for secret in SECRETS:
        assert secret not in logged
    names = [name for run in runs for name in run.data.params]
    assert not [n for n in names if "hf_token" in n or "PASSWORD" in n]
    redis = next(r for r in runs if r.data.tags.get("kvbench.point_id") == "llm-d-redis/c0001-r1")
    assert redis.data.params["scenario.vllm.env.LMCACHE_REMOTE_URL"] == "redis://***@127.0.0.1:6379/0"


def test_export_again_updates_instead_of_duplicating(exported: tuple[str, str], demo_run: Path) -> None:
    uri, _ = exported
    client = MlflowClient(tracking_uri=uri)
    plan = json.loads((demo_run / "plan.json").read_text())
    before = {r.info.run_id: r for r in _runs(client, plan["run_id"])}
    lengths = {
        (run_id, key): len(client.get_metric_history(run_id, key))
        for run_id, run in before.items()
        for key in run.data.metrics
    }
    stderr = _export(demo_run, uri)
    assert "0 created, 0 updated, 7 unchanged" in stderr, stderr
    after = {r.info.run_id: r for r in _runs(client, plan["run_id"])}
    assert set(after) == set(before)
    for run_id, run in after.items():
        assert run.data.params == before[run_id].data.params
        assert set(run.data.metrics) == set(before[run_id].data.metrics)
    assert {key: len(client.get_metric_history(*key)) for key in lengths} == lengths
    # One more scrape in the series: its history grows by that value only.
    series_run = next(r for r in after.values() if r.data.tags.get("kvbench.point_id") == SERIES_POINT)
    key = "metrics/server-1:8000/vllm:kv_cache_usage_perc/engine:0/model_name:tiny-qwen3"
    assert len(client.get_metric_history(series_run.info.run_id, key)) == 2
    _write_series(demo_run / SERIES_POINT, [*SCRAPES, (1772359207.0, True, 6.0)])
    stderr = _export(demo_run, uri)
    assert "0 created, 1 updated, 6 unchanged" in stderr, stderr
    history = client.get_metric_history(series_run.info.run_id, key)
    assert sorted(m.value for m in history) == pytest.approx([0.2, 0.4, 0.6])
    assert len(_runs(client, plan["run_id"])) == len(before)


def test_missing_mlflow_is_a_clear_message(demo_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    result = CliRunner().invoke(
        main, ["export", "mlflow", str(demo_run), "--tracking-uri", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1
    assert "pip install 'kvbench[mlflow]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_tracking_server_is_a_clear_message(
    demo_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(main, ["export", "mlflow", str(demo_run), "--tracking-uri", uri])
    assert result.exit_code == 1
    assert f"{uri}: cannot use the tracking server" in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_run_directory_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["export", "mlflow", str(tmp_path), "--tracking-uri", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1
    assert f"{tmp_path}: not a kvbench run directory" in result.stderr


@pytest.mark.skipif(not PCP, reason="PCP is not installed (the pcp role installs it)")
def test_pcp_values_are_histories_clipped_to_each_point(exported: tuple[str, str], demo_run: Path) -> None:
    uri, _ = exported
    client = MlflowClient(tracking_uri=uri)
    plan = json.loads((demo_run / "plan.json").read_text())
    runs = {r.data.tags.get("kvbench.point_id"): r for r in _runs(client, plan["run_id"])}
    power = client.get_metric_history(runs[SERIES_POINT].info.run_id, "pcp/gpu-node/nvidia.power/gpu0")
    # One value a second inside the benchmark phase (10:00:02 to 10:00:14), at the archive's own times.
    assert sorted(m.timestamp for m in power) == [(PCP_START_S + s) * 1000 for s in range(2, 15)]
    assert {m.value for m in power} == {300000.0}
    user = client.get_metric_history(
        runs[SERIES_POINT].info.run_id, "pcp/gpu-node/kernel.percpu.cpu.user/cpu1"
    )
    assert len(user) == 13
    assert not any(k.startswith("pcp/") for k in runs["no-offload/c0001-r1"].data.metrics)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("hf_token", True),
        ("vllm.env.HF_TOKEN", True),
        ("REDIS_PASSWORD", True),
        ("valkey_passwd", True),
        ("apiKey", True),
        ("aws.secret_access_key", True),
        ("credentials", True),
        ("workload.prompt_tokens", False),  # counts of tokens, not a token
        ("evidence.index_keys_after", False),
        ("vllm.hash_seed", False),
        ("scenario.lmcache.remote_url", False),
    ],
)
def test_credential_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_redact_drops_credentials_and_masks_urls() -> None:
    document = {
        "env": {"HF_TOKEN": "hf_x", "LMCACHE_REMOTE_URL": "redis://user:pw@h:6379/0", "PORT": "8000"},
        "argv": ["serve", "--api-key", "k1", "--redis-password=pw2", "--port", "8000"],
    }
    assert redact(document) == {
        "env": {"LMCACHE_REMOTE_URL": "redis://***@h:6379/0", "PORT": "8000"},
        "argv": ["serve", "--api-key", "***", "--redis-password=***", "--port", "8000"],
    }
