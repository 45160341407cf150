"""Read what the KV-capacity section needs from a run directory: the plan (model geometry, workload, resolved
scenarios, memory_pressure), the manifest's GPU probes, and the KV cache size each scenario's vLLM logged
when it started (`GPU KV cache size: N tokens`; `CPU KV cache size` on the CPU backend).

A file that cannot be read is named in ``problems``, never a traceback.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from kvbench.errors import InputError
from kvbench.ingest.records import MANIFEST_FILE, PLAN_FILE, read_optional

# vLLM's start-up line: "GPU KV cache size: 1,234,567 tokens" (kv_cache_utils.py; from 0.32 "<DEVICE> KV cache
# size: N tokens, Maximum concurrency ..." with the device named, "CPU" on the CPU backend).
KV_CACHE_LINE = re.compile(r"\b([A-Z]{2,}(?: \+ host)?) KV cache size: ([0-9][0-9,]*) tokens")
SERVER_LOG_GLOBS = ("server/*.log.zst", "server/*.log", "c*-r*/server-*.log")


@dataclass
class RunCapacity:
    run_dir: Path
    run: str
    plan: dict[str, Any]
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> manifest hosts.<host>.gpu_probe
    kv_cache: dict[str, dict[str, Any]] = field(default_factory=dict)  # scenario -> {tokens, device, file}
    problems: list[str] = field(default_factory=list)


def _lines(path: Path) -> Iterator[str]:
    """The text lines of a log, zstd-compressed or plain, streamed (a whole vLLM log can be large)."""
    with path.open("rb") as raw:
        if path.name.endswith(".zst"):
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            yield from io.TextIOWrapper(reader, encoding="utf-8", errors="replace")
        else:
            yield from io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


def kv_cache_size(path: Path) -> tuple[int, str] | None:
    """(tokens, device) of the first KV cache size line of a server log; None when it has none."""
    for line in _lines(path):
        if "KV cache size" in line:
            match = KV_CACHE_LINE.search(line)
            if match:
                return int(match.group(2).replace(",", "")), match.group(1)
    return None


def _scenario_kv_cache(folder: Path, problems: list[str]) -> dict[str, Any] | None:
    for pattern in SERVER_LOG_GLOBS:
        for path in sorted(folder.glob(pattern)):
            try:
                found = kv_cache_size(path)
            except (OSError, zstandard.ZstdError) as exc:
                problems.append(f"{path}: cannot read the server log ({exc})")
                continue
            if found:
                return {"tokens": found[0], "device": found[1], "file": str(path)}
    return None


def read_run_capacity(run_dir: Path) -> RunCapacity:
    """The capacity inputs of one run; InputError when it has no readable plan.json."""
    plan = read_optional(run_dir / PLAN_FILE, "plan")
    if plan is None:
        raise InputError(f"{run_dir}: no {PLAN_FILE}")
    result = RunCapacity(run_dir, str(plan.get("run_id") or run_dir.name), plan)
    try:
        manifest = read_optional(run_dir / MANIFEST_FILE, "manifest")
    except InputError as exc:
        result.problems.append(str(exc))
        manifest = None
    for host, facts in ((manifest or {}).get("hosts") or {}).items():
        if isinstance(facts, dict) and isinstance(facts.get("gpu_probe"), dict):
            result.probes[str(host)] = facts["gpu_probe"]
    for scenario in plan.get("scenarios") or []:
        name = str(scenario.get("name"))
        found = _scenario_kv_cache(run_dir / name, result.problems)
        if found:
            result.kv_cache[name] = found
    return result
