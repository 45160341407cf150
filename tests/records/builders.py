"""Build run directories the way both targets do: a real plan from the real catalogs, records written by the
one record writer (`kvbench plan` / `kvbench record ...`), and the real GuideLLM sample reports as results.

Nothing here assembles a record itself: every plan.json, point.json, scenario.json and manifest.json comes
from the command the harness calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import zstandard
from click.testing import CliRunner

from kvbench.cli import main
from tests.plan.catalogs import catalog

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "analyzer" / "data"
SAMPLES = {
    "0.8.1": DATA / "guidellm-0.8.1-concurrent-1-4-16.json.zst",
    "0.5.3": DATA / "guidellm-0.5.3-concurrent-1-4-16.json.zst",
}
# The samples ran at these levels with this seed (config.spec.seed / args.random_seed).
SAMPLE_LEVELS = (1, 4, 16)
SAMPLE_SEED = 889
PASSWORD_MARKER = "${KVBENCH_STORE_PASSWORD}"


def make_request(
    *,
    model: str,
    target: str,
    platform: str,
    preset: str,
    scenarios: Iterable[str],
    concurrency: Iterable[int] = SAMPLE_LEVELS,
    repetitions: int = 1,
    warm_cache: bool = False,
    seed: int = SAMPLE_SEED,
    run_id: str = "",
    guidellm_version: str = "0.8.1",
) -> dict[str, Any]:
    """A request as playbooks/preflight.yml hands it to `kvbench plan`."""
    return {
        "model": model,
        "target": target,
        "platform": platform,
        "preset": preset,
        "scenarios": ",".join(scenarios),
        "concurrency": list(concurrency),
        "repetitions": repetitions,
        "repetition_order": "blocked",
        "warm_cache": warm_cache,
        "run_id": run_id,
        "workload": {
            "duration_s": 10,
            "prompt_tokens": 128,
            "output_tokens": 64,
            "prefix_tokens": 512,
            "prefix_count_per_stream": 1,
            "turns": 2,
            "seed": seed,
        },
        "vllm": {
            "tensor_parallel_size": 1 if platform == "cpu" else 2,
            "max_num_seqs": 256,
            "block_size": "",
            "hash_seed": "0",
            "kv_offload_gib": 2,
            "port": 8000,
        },
        "wiring": {"server_host": "server-1", "epp_service": "kvbench-epp"},
        "guidellm": {
            "version": guidellm_version,
            "executable": "/opt/guidellm/bin/guidellm",
            "tokenizer": "Qwen/Qwen3-8B" if target == "kubernetes" else "/srv/models/tiny-qwen3",
            "target_url": "http://kvbench-gateway:80" if target == "kubernetes" else "http://server-1:8000",
            "output_root": "/results/{run_id}" if target == "kubernetes" else "/srv/kvbench/runs/{run_id}",
            "request_timeout_s": 600,
            "request_samples": 0,
        },
        "catalog": catalog(),
    }


def nodes_cpu_request(**overrides: Any) -> dict[str, Any]:
    """The demo's kind of run: nodes target, CPU platform, cpu-local preset, the tiny model."""
    values: dict[str, Any] = {
        "model": "tiny-qwen3",
        "target": "nodes",
        "platform": "cpu",
        "preset": "cpu-local",
        "scenarios": ["no-offload", "native-offload", "llm-d-redis"],
    }
    return make_request(**{**values, **overrides})


def kubernetes_cuda_request(**overrides: Any) -> dict[str, Any]:
    """A cluster run on GPUs with the current llm-d preset: offload, LMCache and index scenarios."""
    values: dict[str, Any] = {
        "model": "Qwen3-8B",
        "target": "kubernetes",
        "platform": "cuda",
        "preset": "llm-d-v0.5.0",
        "scenarios": ["no-offload", "native-offload", "lmcache-redis", "llm-d-valkey"],
    }
    return make_request(**{**values, **overrides})


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Caller:
    """How `kvbench` is called: in-process (fast), or as the harness calls it, `python -m kvbench` in a
    process of its own with `env` added to its environment."""

    subprocess_run: bool = False
    env: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, args: list[str], stdin: Mapping[str, Any] | None = None) -> CliResult:
        text = json.dumps(stdin) if stdin is not None else ""
        if self.subprocess_run:
            proc = subprocess.run(
                [sys.executable, "-m", "kvbench", *args],
                input=text,
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "COLUMNS": "200", **self.env},
            )
            return CliResult(proc.returncode, proc.stdout, proc.stderr)
        result = CliRunner().invoke(main, args, input=text)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)


IN_PROCESS = Caller()


def checked(result: CliResult) -> Any:
    assert result.exit_code == 0, result.stderr
    return result.json()


def plan_run(
    results_dir: Path, request: Mapping[str, Any], kvbench: Caller = IN_PROCESS
) -> tuple[dict, Path]:
    """`kvbench plan --results-dir`: the plan and the run directory it was written to."""
    answer = checked(kvbench(["plan", "--results-dir", str(results_dir)], request))
    return answer["plan"], Path(answer["run_dir"])


def record(
    kind: str, run_dir: Path, options: list[str], outcome: Mapping[str, Any], kvbench: Caller = IN_PROCESS
) -> CliResult:
    """`kvbench record KIND --run-dir RUN OPTIONS` with the outcome on standard input."""
    return kvbench(["record", kind, "--run-dir", str(run_dir), *options], outcome)


def read_zst_json(path: Path) -> Any:
    return orjson.loads(zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read())


def sample_report(version: str, concurrency: int, seed: int | None = None) -> dict[str, Any]:
    """The real GuideLLM sample of `version`, holding only its benchmark at `concurrency` (a point runs one
    level), with the seed GuideLLM records set to `seed` (None keeps the sample's own)."""
    doc = read_zst_json(SAMPLES[version])
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["config"]["strategy"]["streams"] == concurrency]
    assert len(doc["benchmarks"]) == 1, f"the {version} sample has no level {concurrency}"
    if seed is not None:
        if "config" in doc and isinstance(doc["config"].get("spec", {}).get("seed"), dict):
            doc["config"]["spec"]["seed"]["value"] = seed
        else:
            doc["args"]["random_seed"] = seed
            for benchmark in doc["benchmarks"]:
                benchmark["config"]["requests"]["random_seed"] = seed
    return doc


def write_zst_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(orjson.dumps(doc)))
    return path


def prometheus_text(counters: Mapping[str, float]) -> str:
    """vLLM /metrics text holding the counters kvbench records (names of vLLM 0.11+)."""
    lines = []
    for name, value in counters.items():
        lines += [f"# TYPE vllm:{name} counter", f'vllm:{name}_total{{engine="0",model_name="m"}} {value}']
    return "\n".join(lines) + "\n"


def write_metrics(
    point_dir: Path, server: str, before: Mapping[str, float], after: Mapping[str, float]
) -> None:
    folder = point_dir / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{server}-before.prom").write_text(prometheus_text(before))
    (folder / f"{server}-after.prom").write_text(prometheus_text(after))


def counters_after(concurrency: int, server_number: int) -> dict[str, float]:
    """The counters a server shows after a point (all start at the values of COUNTERS_BEFORE)."""
    hits = 10 * concurrency + server_number
    return {
        "prefix_cache_queries": 2000,
        "prefix_cache_hits": 100 + hits,
        "external_prefix_cache_queries": 600,
        "external_prefix_cache_hits": 7 * concurrency,
        "num_preemptions": 1,
    }


COUNTERS_BEFORE: dict[str, float] = {
    "prefix_cache_queries": 1000,
    "prefix_cache_hits": 100,
    "external_prefix_cache_queries": 100,
    "external_prefix_cache_hits": 0,
    "num_preemptions": 0,
}


def point_outcome(status: str = "ok", reason: str | None = None, **extra: Any) -> dict[str, Any]:
    """What a target's point step observed, as the sweep hands it to `kvbench record point`."""
    outcome: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "started_at": "2026-03-01T10:00:00Z",
        "ended_at": "2026-03-01T10:00:15Z",
        "phases": {"benchmark": {"start": "2026-03-01T10:00:02Z", "end": "2026-03-01T10:00:14Z"}},
        "guidellm": {
            "client": {"cores": 16, "cpu_busy_pct": 37.5, "saturated_suspect": False},
            "warnings": [],
            "wall_s": 12.5,
        },
        "cache_reset_verified": True,
        "server_restarted": False,
        "index_keys_before": None,
        "index_keys_after": None,
    }
    outcome.update(extra)
    return outcome


@dataclass(frozen=True)
class SweepOptions:
    """How the canned sweep fills each point: which report, which seed GuideLLM recorded, which servers."""

    guidellm_version: str = "0.8.1"
    report_seed: str = "plan"  # plan: GuideLLM recorded the plan's seed; sample: the sample's own seed
    servers: tuple[str, ...] = ("server-1",)
    kvbench: Caller = IN_PROCESS
    # scenario -> factor on GuideLLM's output throughput (successful and total): a treatment that helps.
    throughput_scale: Mapping[str, float] = field(default_factory=dict)


def _run_point(run_dir: Path, point: Mapping[str, Any], opts: SweepOptions) -> None:
    point_dir = run_dir / point["dir"]
    seed = point["seed"] if opts.report_seed == "plan" else None
    report = sample_report(opts.guidellm_version, point["concurrency"], seed)
    scale = opts.throughput_scale.get(point["scenario"], 1.0)
    for summary in report["benchmarks"][0]["metrics"]["output_tokens_per_second"].values():
        if isinstance(summary, dict) and "mean" in summary:
            summary["mean"] *= scale
    write_zst_json(point_dir / "guidellm.json.zst", report)
    for number, server in enumerate(opts.servers):
        write_metrics(point_dir, server, COUNTERS_BEFORE, counters_after(point["concurrency"], number))
    outcome = point_outcome(
        servers=list(opts.servers), index_keys_before=0, index_keys_after=point["concurrency"]
    )
    checked(record("point", run_dir, ["--point", point["id"]], outcome, opts.kvbench))


def sweep(run_dir: Path, plan: Mapping[str, Any], options: SweepOptions | None = None) -> None:
    """Do what roles/sweep does after the preflight, with canned results: manifest (running), every
    segment's points and scenario record, manifest (complete). Each record through `kvbench record`."""
    opts = options or SweepOptions()
    checked(record("manifest", run_dir, [], {"status": "running"}, opts.kvbench))
    by_id = {p["id"]: p for p in plan["points"]}
    for segment in plan["schedule"]:
        scenario = next(s for s in plan["scenarios"] if s["name"] == segment["scenario"])
        for point_id in segment["points"]:
            (run_dir / by_id[point_id]["dir"] / "metrics").mkdir(parents=True, exist_ok=True)
            if segment["supported"]:
                _run_point(run_dir, by_id[point_id], opts)
            else:
                outcome = point_outcome("skipped", scenario["skip_reason"])
                checked(record("point", run_dir, ["--point", point_id], outcome, opts.kvbench))
        status = "ran" if segment["supported"] else "skipped"
        notes = {"status": status, "server_starts": int(segment["supported"]), "segment": segment["number"]}
        checked(record("scenario", run_dir, ["--scenario", scenario["name"]], notes, opts.kvbench))
        phase = {"phase": "scenario", "scenario": scenario["name"], "point": None, "status": "ok"}
        times = {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:05:00Z"}
        with (run_dir / "timeline.jsonl").open("a") as timeline:
            timeline.write(json.dumps({**phase, **times}, sort_keys=True) + "\n")
    outcome = {"status": "complete", "harness": {"commit": "0" * 40, "dirty": False}, "versions": {}}
    checked(record("manifest", run_dir, [], outcome, opts.kvbench))


def finished_run(results_dir: Path, request: Mapping[str, Any], options: SweepOptions | None = None) -> Path:
    """A finished run directory: plan, records and results, all written by the record path."""
    plan, run_dir = plan_run(results_dir, request, (options or SweepOptions()).kvbench)
    sweep(run_dir, plan, options)
    return run_dir


def add_kubernetes_extras(run_dir: Path, plan: Mapping[str, Any]) -> None:
    """What the Kubernetes target leaves beside the records: the treatment check, diagnostics (pod YAML,
    events, container logs), the vLLM pods' whole logs and PCP archives from each node."""
    for scenario in plan["scenarios"]:
        folder = run_dir / scenario["name"]
        if not folder.is_dir():
            continue
        (folder / "treatment.json").write_text(
            json.dumps(
                {"valid": True, "reasons": [], "evidence": {"external_prefix_cache_hits": 42}}, indent=2
            )
        )
        diagnostics = folder / "diagnostics"
        (diagnostics / "logs").mkdir(parents=True, exist_ok=True)
        (diagnostics / "pods.yaml").write_text("- apiVersion: v1\n  kind: Pod\n  metadata: {name: vllm-0}\n")
        (diagnostics / "events.yaml").write_text("- kind: Event\n  reason: Scheduled\n")
        (diagnostics / "logs" / "vllm-0-vllm.log").write_text("INFO Started server process\n")
        server = folder / "server"
        server.mkdir(exist_ok=True)
        (server / "kvbench-vllm-0.log").write_text("INFO: Application startup complete.\n")
        pcp = folder / "pcp" / "node-a"
        pcp.mkdir(parents=True, exist_ok=True)
        (pcp / "node-a-20260301T100000Z.0").write_bytes(b"\x00PCP archive")
        (pcp / "node-a-20260301T100000Z.meta").write_bytes(b"\x00meta")
        (pcp / ".metrics.json").write_text(json.dumps({"asked": ["kernel.all.load"], "logged": []}))
    (run_dir / "treatment.json").write_text(json.dumps({"valid": True}))
    (run_dir / "diagnostics").mkdir(exist_ok=True)
    (run_dir / "diagnostics" / "cluster.yaml").write_text("apiVersion: v1\nkind: List\nitems: []\n")


@dataclass
class Analysis:
    """What `kvbench analyze` gave: exit status, its stderr and the output directory."""

    exit_code: int
    stderr: str
    out: Path

    def csv(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.out / name)

    def bad_input_lines(self) -> list[str]:
        """stderr lines naming an input that could not be read (`kvbench: <path>: <reason>`)."""
        return [line for line in self.stderr.splitlines() if line.startswith("kvbench: /")]


def analyze(*paths: Path, out: Path, figures: bool = False) -> Analysis:
    """`kvbench analyze PATHS --out OUT`, in-process, reading in this process."""
    args = ["analyze", *map(str, paths), "--out", str(out), "--jobs", "1"]
    result = IN_PROCESS([*args, "--figures" if figures else "--no-figures"])
    return Analysis(result.exit_code, result.stderr, out)
