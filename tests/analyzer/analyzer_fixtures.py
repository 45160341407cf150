"""Builders of GuideLLM reports and result trees for the analyzer tests.

Reports are real GuideLLM files (the samples in data/, written by GuideLLM 0.5.3 and 0.8.1 against
its mock server) with the strategy and a few summary metrics set to chosen values and the
per-request sample lists cut to two records each, so every key the analyzer meets is GuideLLM's own.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zstandard

DATA = Path(__file__).parent / "data"
SAMPLE_053 = DATA / "guidellm-0.5.3-concurrent-1-4-16.json.zst"
SAMPLE_081 = DATA / "guidellm-0.8.1-concurrent-1-4-16.json.zst"
SAMPLES = {"0.5.3": SAMPLE_053, "0.8.1": SAMPLE_081}


def read_zst_json(path: Path) -> Any:
    return orjson.loads(zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read())


@functools.cache
def _template(version: str) -> bytes:
    doc = read_zst_json(SAMPLES[version])
    for benchmark in doc["benchmarks"]:
        for status, items in list(benchmark["requests"].items()):
            if isinstance(items, list):
                benchmark["requests"][status] = items[:2]
    return orjson.dumps(doc)


def template(version: str) -> dict[str, Any]:
    """A fresh copy of the real sample report of `version` with short per-request lists."""
    return orjson.loads(_template(version))


@dataclass
class Level:
    """What one benchmark of a synthetic report should say."""

    concurrency: int
    output_tok_s: float
    ttft_ms: float = 120.0
    tpot_ms: float = 25.0
    total_factor: float = 1.08  # output tok/s of all requests / of successful ones
    errored: int = 0
    incomplete: int = 3


def _set_summary(summary: dict[str, Any], mean: float) -> None:
    summary["mean"] = mean
    summary["median"] = mean
    percentiles = summary.get("percentiles") or {}
    for key in list(percentiles):
        percentiles[key] = mean * (1.5 if key in ("p99", "p999") else 1.2 if key == "p90" else 1.0)
    summary["percentiles"] = percentiles


def _benchmark(
    template_benchmark: Mapping[str, Any], level: Level, model: str, streams: Sequence[int]
) -> Any:
    bench = copy.deepcopy(dict(template_benchmark))
    strategy = bench["config"]["strategy"]
    strategy.update(streams=level.concurrency, max_concurrency=level.concurrency)
    strategy["worker_count"] = min(level.concurrency, 10)
    bench["config"]["profile"]["streams"] = list(streams)
    bench["config"]["backend"]["model"] = model
    metrics = bench["metrics"]
    _set_summary(metrics["output_tokens_per_second"]["successful"], level.output_tok_s)
    _set_summary(metrics["output_tokens_per_second"]["total"], level.output_tok_s * level.total_factor)
    _set_summary(metrics["time_to_first_token_ms"]["successful"], level.ttft_ms)
    _set_summary(metrics["time_per_output_token_ms"]["successful"], level.tpot_ms)
    _set_summary(metrics["inter_token_latency_ms"]["successful"], level.tpot_ms * 0.9)
    successful = max(1, int(level.output_tok_s * 120 / 128))
    metrics["request_totals"] = {
        "successful": successful,
        "errored": level.errored,
        "incomplete": level.incomplete,
        "total": successful + level.errored + level.incomplete,
    }
    bench["duration"] = 120.0
    return bench


def make_report(
    levels: Sequence[Level], model: str = "Qwen/Qwen3-14B", version: str = "0.5.3"
) -> dict[str, Any]:
    """A GuideLLM report (of the given version's format) holding one benchmark per level."""
    doc = template(version)
    base = doc["benchmarks"][0]
    streams = [level.concurrency for level in levels]
    doc["benchmarks"] = [_benchmark(base, level, model, streams) for level in levels]
    if "args" in doc:
        doc["args"]["model"] = model
        doc["args"]["rate"] = [float(s) for s in streams]
    else:
        doc["config"]["spec"]["backend"]["model"] = model
        doc["config"]["spec"]["profile"]["streams"] = streams
    return doc


def write_zst_json(path: Path, doc: Any) -> Path:
    """zstd-compressed JSON with a content checksum, as the zstd command line writes by default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(orjson.dumps(doc)))
    return path


def write_original_point(
    root: Path,
    model: str,
    scenario: str,
    level: Level,
    hardware: str = "1x2xL40S",
    software: str = "upstream-llm-d-0.4.0",
    config: bool = True,
    dirname: str | None = None,
    config_overrides: Mapping[str, str] | None = None,
) -> Path:
    """One point directory of the original evaluation's layout."""
    name = dirname or f"{hardware}_{software}_{model}_{scenario}_replica1_rate{level.concurrency}"
    point = root / name
    write_zst_json(point / "guidellm-results.json.zst", make_report([level], model=f"Qwen/{model}"))
    if config:
        # The keys and their order as in the evaluation's benchmark-config.txt files.
        values = {
            "Run ID": name,
            "Date": "Fri 20 Feb 2026 20:53:46 AEDT",
            "Target": "http://llm-d-inference-gateway-istio:80",
            "Rate Type": "concurrent",
            "Rate (Concurrency)": str(level.concurrency),
            "Max Seconds": "120",
            "Random Seed": "889",
            "Prompt Tokens": "128",
            "Output Tokens": "128",
            "Prefix Tokens": "10000",
            "Prefix Count": "2",
            "Turns": "5",
            "Hardware": hardware,
            "Software": software,
            "Model": f"Qwen/{model}",
            "Model Name": model,
            "Parameters": scenario,
            "Replicas": "1",
            "Experiment Name": name,
            "vLLM Extra Args": "",
            "EPP Backend": "in-memory",
        }
        values.update(config_overrides or {})
        (point / "benchmark-config.txt").write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return point


@dataclass
class KvbenchRun:
    """A run directory in this project's results layout (docs/design.md)."""

    root: Path
    model: str
    run_id: str = ""
    scenarios: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run_id = self.run_id or f"{self.model}-local-1a2b3c4d"
        self.dir = self.root / self.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self._manifest()

    def _manifest(self) -> None:
        manifest = {
            "schema_version": 1,
            "kind": "kvbench.manifest",
            "run_id": self.run_id,
            "status": "complete",
            "model": {"name": self.model},
            "scenarios": self.scenarios,
        }
        (self.dir / "manifest.json").write_text(json.dumps(manifest))

    def scenario(self, name: str, status: str = "ran", reason: str | None = None) -> Path:
        path = self.dir / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "scenario.json").write_text(json.dumps({"name": name, "status": status, "reason": reason}))
        if name not in self.scenarios:
            self.scenarios.append(name)
            self._manifest()
        return path

    def point(
        self,
        scenario: str,
        level: Level,
        repetition: int = 1,
        status: str = "ok",
        reason: str | None = None,
        version: str = "0.8.1",
        write_result: bool = True,
    ) -> Path:
        point = self.scenario(scenario) / f"c{level.concurrency:04d}-r{repetition}"
        point.mkdir(parents=True, exist_ok=True)
        record = {
            "schema_version": 1,
            "kind": "kvbench.point",
            "run_id": self.run_id,
            "model": self.model,
            "scenario": scenario,
            "concurrency": level.concurrency,
            "repetition": repetition,
            "status": status,
            "reason": reason,
            "guidellm": {"version": version, "file": "guidellm.json.zst"},
            "validity": {"cache_reset_verified": True},
            "some_future_key": {"readers": "ignore unknown keys"},
        }
        (point / "point.json").write_text(json.dumps(record))
        if write_result:
            write_zst_json(
                point / "guidellm.json.zst", make_report([level], model=self.model, version=version)
            )
        return point
