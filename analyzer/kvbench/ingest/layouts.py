"""Find result files in the trees the analyzer reads.

Three layouts:
- this project's runs (docs/design.md "Results layout"): `<scenario>/c<CCCC>-r<R>/point.json` beside
  `guidellm.json.zst`;
- the original evaluation's: one directory per load point named
  `<hw>_<sw>_<model>_<scenario>_replica<N>_rate<R>` holding `guidellm-results.json.zst` and
  `benchmark-config.txt` (older runs: `<hw>_<sw>_<model>_<scenario>` with every rate in one file);
- loose GuideLLM files (`.json`, `.json.zst`, `.yaml`), given directly or found in a tree.
Discovery reads only small metadata files (point.json, benchmark-config.txt); problems are collected
as BadInput and never abort the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kvbench.errors import BadInput, InputError
from kvbench.ingest.reader import is_result_name

POINT_FILE = "point.json"
ORIGINAL_RESULT_NAMES = ("guidellm-results.json.zst", "guidellm-results.json", "guidellm-results.yaml")
ORIGINAL_CONFIG = "benchmark-config.txt"
KVBENCH_RESULT_NAMES = ("guidellm.json.zst", "guidellm.json")
# Files of this project's layout that are not GuideLLM reports.
NOT_RESULTS = frozenset({"manifest.json", "scenario.json", POINT_FILE})
SKIP_DIRS = frozenset({"pcp", "pcp-archives", "metrics", "__pycache__"})

_POINT_DIR_RE = re.compile(r"^c(?P<concurrency>\d+)-r(?P<repetition>\d+)$")
_ORIGINAL_DIR_RE = re.compile(
    r"^(?P<hardware>[^_]+)_(?P<software>[^_]+)_(?P<model>[^_]+)_(?P<scenario>.+?)"
    r"(?:_replica(?P<replicas>\d+))?(?:_rate(?P<rate>\d+))?$"
)


@dataclass
class Unit:
    """One thing to read: a result file (or a point without one) plus what is known about it."""

    layout: str  # kvbench | original | loose
    file: Path | None
    hints: dict[str, Any] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)


def parse_original_dirname(name: str) -> dict[str, Any]:
    """Fields of an original-layout directory name; {} when it does not match."""
    match = _ORIGINAL_DIR_RE.match(name)
    if not match:
        return {}
    fields: dict[str, Any] = {k: v for k, v in match.groupdict().items() if v is not None}
    for key in ("replicas", "rate"):
        if key in fields:
            fields[key] = int(fields[key])
    return fields


def parse_benchmark_config(text: str) -> dict[str, str]:
    """`Key: value` lines of benchmark-config.txt."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            config[key.strip()] = value.strip()
    return config


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError("not a JSON object")
    return data


def _kvbench_point(point_dir: Path) -> Unit:
    point_path = point_dir / POINT_FILE
    point = _read_json_object(point_path)
    if point.get("kind", "kvbench.point") != "kvbench.point":
        raise InputError(f"not a kvbench point record (kind {point.get('kind')!r})")
    missing = [k for k in ("model", "scenario", "concurrency") if point.get(k) in (None, "")]
    if missing:
        raise InputError(f"point record lacks {', '.join(missing)}")
    guidellm = point.get("guidellm") if isinstance(point.get("guidellm"), Mapping) else {}
    file_name = guidellm.get("file") or "guidellm.json.zst"
    status = str(point.get("status") or "ok")
    hints = {
        "model": str(point["model"]),
        "scenario": str(point["scenario"]),
        "concurrency": point.get("concurrency"),
        "repetition": point.get("repetition") or 1,
        "status": status,
        "reason": point.get("reason"),
        "run": point.get("run_id"),
        "point_file": point_path,
    }
    return Unit("kvbench", point_dir / str(file_name), hints)


def _original_point(point_dir: Path, result_name: str) -> Unit:
    hints: dict[str, Any] = {"dirname": parse_original_dirname(point_dir.name)}
    config: dict[str, str] = {}
    config_path = point_dir / ORIGINAL_CONFIG
    if config_path.is_file():
        try:
            config = parse_benchmark_config(config_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            config = {}
    return Unit("original", point_dir / result_name, hints, config)


def _point_without_record(point_dir: Path, file_name: str, manifest: Mapping[str, Any]) -> Unit | None:
    """A point directory of this project's layout whose point.json was never written (interrupted run)."""
    match = _POINT_DIR_RE.match(point_dir.name)
    if match is None:
        return None
    model = manifest.get("model")
    if isinstance(model, Mapping):
        model = model.get("name")
    hints = {
        "model": str(model) if model else "unknown",
        "scenario": point_dir.parent.name,
        "concurrency": int(match["concurrency"]),
        "repetition": int(match["repetition"]),
        "status": "ok",
        "reason": "no point.json; model, scenario and point taken from the path",
        "run": manifest.get("run_id"),
        "point_file": point_dir / POINT_FILE,
    }
    return Unit("kvbench", point_dir / file_name, hints)


def _scenario_without_points(scenario_dir: Path, manifest: Mapping[str, Any]) -> Unit | None:
    """A row for a scenario that the harness skipped or failed before any point ran."""
    try:
        scenario = _read_json_object(scenario_dir / "scenario.json")
    except InputError:
        return None
    status = scenario.get("status")
    if status not in ("skipped", "failed"):
        return None
    model = manifest.get("model")
    if isinstance(model, Mapping):
        model = model.get("name")
    hints = {
        "model": str(model) if model else "unknown",
        "scenario": str(scenario.get("name") or scenario_dir.name),
        "concurrency": None,
        "repetition": 1,
        "status": str(status),
        "reason": scenario.get("reason") or scenario.get("skip_reason"),
        "run": manifest.get("run_id"),
        "point_file": scenario_dir / "scenario.json",
    }
    return Unit("kvbench", None, hints)


def _walk(root: Path) -> Iterator[Unit | BadInput]:
    manifests: dict[Path, dict[str, Any]] = {}
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable.append):
        while unreadable:
            error = unreadable.pop(0)
            yield BadInput(Path(error.filename or root), f"cannot read directory: {error.strerror or error}")
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        here = Path(dirpath)
        names = set(filenames)
        if "manifest.json" in names:
            try:
                manifests[here] = _read_json_object(here / "manifest.json")
            except InputError:
                manifests[here] = {}
        if POINT_FILE in names:
            dirnames[:] = []
            try:
                yield _kvbench_point(here)
            except InputError as exc:
                yield BadInput(here / POINT_FILE, str(exc))
            continue
        run_manifest = manifests.get(here.parent.parent)
        kvbench_result = next((n for n in KVBENCH_RESULT_NAMES if n in names), None)
        if run_manifest is not None and kvbench_result is not None:
            unit = _point_without_record(here, kvbench_result, run_manifest)
            if unit is not None:
                dirnames[:] = []
                yield unit
                continue
        result_name = next((n for n in ORIGINAL_RESULT_NAMES if n in names), None)
        if result_name is not None:
            dirnames[:] = []
            yield _original_point(here, result_name)
            continue
        if "scenario.json" in names and here.parent in manifests:
            has_points = any((here / d / POINT_FILE).is_file() for d in dirnames)
            if not has_points:
                unit = _scenario_without_points(here, manifests[here.parent])
                if unit is not None:
                    yield unit
        for name in sorted(filenames):
            if name in NOT_RESULTS or name.startswith(".") or not is_result_name(name):
                continue
            yield Unit("loose", here / name)
    for error in unreadable:
        yield BadInput(Path(error.filename or root), f"cannot read directory: {error.strerror or error}")


def discover(paths: list[Path]) -> Iterator[Unit | BadInput]:
    """Units to read from the given files and directories, in a stable order."""
    for path in paths:
        if path.is_dir():
            found = False
            for item in _walk(path):
                found = True
                yield item
            if not found:
                yield BadInput(path, "no GuideLLM results found in this directory")
        elif path.name == POINT_FILE:
            try:
                yield _kvbench_point(path.parent)
            except InputError as exc:
                yield BadInput(path, str(exc))
        elif path.name in ORIGINAL_RESULT_NAMES:
            yield _original_point(path.parent, path.name)
        elif path.is_file():
            yield Unit("loose", path)
        else:
            yield BadInput(path, "no such file or directory")
