"""Find result files in the trees the analyzer reads.

Three layouts:
- this project's runs (docs/design.md "Results layout"), from either target: a run directory holding
  `manifest.json` and/or `plan.json`, with `<scenario>/c<CCCC>-r<R>/point.json` beside `guidellm.json.zst`.
  Identity (run, model, scenario, point) comes from point.json, never from directory names. Inside a run only
  point directories give results: the run's own records (manifest, plan, scenario, timeline, SHA256SUMS), a
  target's extras (treatment.json, diagnostics/, server/, pcp/, metrics/) are never taken for GuideLLM files;
- the original evaluation's: one directory per load point named
  `<hw>_<sw>_<model>_<scenario>_replica<N>_rate<R>` holding `guidellm-results.json.zst` and
  `benchmark-config.txt` (older runs: `<hw>_<sw>_<model>_<scenario>` with every rate in one file);
- loose GuideLLM files (`.json`, `.json.zst`, `.yaml`), given directly or found in a tree.
Discovery reads only small metadata files (point.json, manifest.json, benchmark-config.txt); problems are
collected as BadInput and never abort the rest. Schema-2 records are validated against kvbench.records.
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
from kvbench.records import SCHEMA_VERSIONS, problems

POINT_FILE = "point.json"
MANIFEST_FILE = "manifest.json"
PLAN_FILE = "plan.json"
SCENARIO_FILE = "scenario.json"
RUN_MARKERS = (MANIFEST_FILE, PLAN_FILE)
ORIGINAL_RESULT_NAMES = ("guidellm-results.json.zst", "guidellm-results.json", "guidellm-results.yaml")
ORIGINAL_CONFIG = "benchmark-config.txt"
KVBENCH_RESULT_NAMES = ("guidellm.json.zst", "guidellm.json")
# Files of this project's layout that are not GuideLLM reports, wherever they are found.
NOT_RESULTS = frozenset({MANIFEST_FILE, PLAN_FILE, SCENARIO_FILE, POINT_FILE, "treatment.json"})
# Folders of this project's layout that never hold GuideLLM reports.
SKIP_DIRS = frozenset({"pcp", "pcp-archives", "metrics", "server", "diagnostics", "__pycache__"})

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


@dataclass(frozen=True)
class RunInfo:
    """What a kvbench run directory's manifest (or, before it is written, its plan) says about the run."""

    path: Path
    run: str | None
    model: str | None
    params_b: float | None
    scenarios: tuple[str, ...]


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


def check_record(record: dict[str, Any], kind: str) -> None:
    """InputError naming every violation when a record of the current schema does not conform.

    Point, scenario and manifest records of schema 1 (older runs, docs/design.md, no schema files) are read
    as they are; a schema this analyzer does not know is refused.
    """
    current = SCHEMA_VERSIONS[kind]
    version = record.get("schema_version", 1)
    if version != current:
        if version in (1, None):
            return
        known = ", ".join(str(v) for v in sorted({1, current}))
        raise InputError(f"kvbench {kind} record of schema_version {version!r}; this analyzer reads {known}")
    found = problems(record, kind)
    if found:
        more = f" (+{len(found) - 5} more)" if len(found) > 5 else ""
        raise InputError(
            f"not a valid kvbench {kind} record (schema {version}): {'; '.join(found[:5])}{more}"
        )


def _model_name(model: Any) -> str | None:
    if isinstance(model, Mapping):
        model = model.get("name")
    return str(model) if model not in (None, "") else None


def _params_b(model: Any) -> float | None:
    value = model.get("params_b") if isinstance(model, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_run_info(run_dir: Path) -> tuple[RunInfo | None, BadInput | None]:
    """The run's description from manifest.json, else plan.json; a record that does not conform is named."""
    for name in RUN_MARKERS:
        path = run_dir / name
        if not path.is_file():
            continue
        kind = "manifest" if name == MANIFEST_FILE else "plan"
        try:
            record = _read_json_object(path)
        except InputError as exc:
            return RunInfo(run_dir, None, None, None, ()), BadInput(path, str(exc))
        bad = None
        try:
            check_record(record, kind)
        except InputError as exc:
            bad = BadInput(path, str(exc))
        raw = record.get("scenarios")
        scenarios = raw if isinstance(raw, list) else []
        names = tuple(str(s.get("name") if isinstance(s, Mapping) else s) for s in scenarios)
        run = record.get("run_id")
        info = RunInfo(
            run_dir,
            str(run) if run else None,
            _model_name(record.get("model")),
            _params_b(record.get("model")),
            tuple(n for n in names if n and n != "None"),
        )
        return info, bad
    return None, None


def _kvbench_point(point_dir: Path) -> Unit:
    point_path = point_dir / POINT_FILE
    point = _read_json_object(point_path)
    if point.get("kind", "kvbench.point") != "kvbench.point":
        raise InputError(f"not a kvbench point record (kind {point.get('kind')!r})")
    check_record(point, "point")
    missing = [k for k in ("model", "scenario", "concurrency") if point.get(k) in (None, "")]
    if missing:
        raise InputError(f"point record lacks {', '.join(missing)}")
    guidellm = point.get("guidellm") if isinstance(point.get("guidellm"), Mapping) else {}
    status = str(point.get("status") or "ok")
    if "file" in guidellm and guidellm["file"] is None:
        file_name = None if status != "ok" else KVBENCH_RESULT_NAMES[0]
    else:
        file_name = str(guidellm.get("file") or KVBENCH_RESULT_NAMES[0])
    hints = {
        "model": str(point["model"]),
        "scenario": str(point["scenario"]),
        "concurrency": point.get("concurrency"),
        "repetition": point.get("repetition") or 1,
        "status": status,
        "reason": point.get("reason"),
        "run": point.get("run_id"),
        "point_file": point_path,
        "point": point,
    }
    return Unit("kvbench", point_dir / file_name if file_name else None, hints)


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


def _point_without_record(point_dir: Path, file_name: str, run: RunInfo) -> Unit | None:
    """A point directory of this project's layout whose point.json was never written (interrupted run)."""
    match = _POINT_DIR_RE.match(point_dir.name)
    if match is None:
        return None
    hints = {
        "model": run.model or "unknown",
        "scenario": point_dir.parent.name,
        "concurrency": int(match["concurrency"]),
        "repetition": int(match["repetition"]),
        "status": "ok",
        "reason": "no point.json; model, scenario and point taken from the path",
        "run": run.run,
        "point_file": point_dir / POINT_FILE,
    }
    return Unit("kvbench", point_dir / file_name, hints)


def _scenario_record(scenario_dir: Path) -> tuple[dict[str, Any] | None, BadInput | None]:
    path = scenario_dir / SCENARIO_FILE
    try:
        record = _read_json_object(path)
        check_record(record, "scenario")
    except InputError as exc:
        return None, BadInput(path, str(exc))
    return record, None


def _scenario_without_points(scenario_dir: Path, scenario: Mapping[str, Any], run: RunInfo) -> Unit | None:
    """A row for a scenario that the harness skipped or failed before any point ran."""
    status = scenario.get("status")
    if status not in ("skipped", "failed"):
        return None
    hints = {
        "model": run.model or "unknown",
        "scenario": str(scenario.get("name") or scenario_dir.name),
        "concurrency": None,
        "repetition": 1,
        "status": str(status),
        "reason": scenario.get("reason") or scenario.get("skip_reason"),
        "run": scenario.get("run_id") or run.run,
        "point_file": scenario_dir / SCENARIO_FILE,
    }
    return Unit("kvbench", None, hints)


def _is_kvbench_run(folder: Path) -> bool:
    """`folder` holds a manifest or plan that is a kvbench record (or one too damaged to tell)."""
    for name in RUN_MARKERS:
        path = folder / name
        if path.is_file():
            try:
                return str(_read_json_object(path).get("kind", "kvbench.")).startswith("kvbench.")
            except InputError:
                return True
    return False


def _enclosing_run(root: Path) -> Path | None:
    """The run directory `root` lies in: itself or one of the three folders above it (a scenario, a point,
    a point's metrics/)."""
    if _is_kvbench_run(root):
        return root
    for candidate in list(root.resolve().parents)[:3]:
        if _is_kvbench_run(candidate):
            return candidate
    return None


class _Walk:
    """One directory tree, walked once; remembers the run directories met on the way (by real path)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[Path, RunInfo] = {}

    def run_of(self, folder: Path) -> RunInfo | None:
        """The run `folder` belongs to: itself or an ancestor is a run directory."""
        real = folder.resolve()
        for candidate in (real, *real.parents):
            if candidate in self.runs:
                return self.runs[candidate]
        return None

    def enter_run(self, run_dir: Path) -> Iterator[RunInfo | BadInput]:
        info, bad = read_run_info(run_dir)
        info = info or RunInfo(run_dir, None, None, None, ())
        self.runs[run_dir.resolve()] = info
        yield info
        if bad is not None:
            yield bad

    def items(self) -> Iterator[Unit | BadInput | RunInfo]:
        unreadable: list[OSError] = []
        enclosing = _enclosing_run(self.root)
        if enclosing is not None:
            yield from self.enter_run(enclosing)
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=unreadable.append):
            while unreadable:
                error = unreadable.pop(0)
                yield BadInput(
                    Path(error.filename or self.root), f"cannot read directory: {error.strerror or error}"
                )
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
            here = Path(dirpath)
            names = set(filenames)
            new_run = not names.isdisjoint(RUN_MARKERS) and here.resolve() not in self.runs
            if new_run and _is_kvbench_run(here):
                yield from self.enter_run(here)
            run = self.run_of(here)
            if run is not None:
                yield from self._in_run(here, names, dirnames, run)
            else:
                yield from self._outside_runs(here, names, dirnames)
        for error in unreadable:
            yield BadInput(
                Path(error.filename or self.root), f"cannot read directory: {error.strerror or error}"
            )

    def _in_run(
        self, here: Path, names: set[str], dirnames: list[str], run: RunInfo
    ) -> Iterator[Unit | BadInput]:
        """A folder of a kvbench run: only point directories and scenario records count."""
        run_dir = run.path.resolve()
        if POINT_FILE in names:
            dirnames[:] = []
            try:
                yield _kvbench_point(here)
            except InputError as exc:
                yield BadInput(here / POINT_FILE, str(exc))
            return
        result = next((n for n in KVBENCH_RESULT_NAMES if n in names), None)
        if result is not None and here.resolve().parent.parent == run_dir:
            unit = _point_without_record(here, result, run)
            if unit is not None:
                dirnames[:] = []
                yield unit
                return
        if SCENARIO_FILE in names and here.resolve().parent == run_dir:
            scenario, bad = _scenario_record(here)
            if bad is not None:
                yield bad
            has_points = any((here / d / POINT_FILE).is_file() for d in dirnames)
            if scenario is not None and not has_points:
                unit = _scenario_without_points(here, scenario, run)
                if unit is not None:
                    yield unit

    def _outside_runs(self, here: Path, names: set[str], dirnames: list[str]) -> Iterator[Unit | BadInput]:
        if POINT_FILE in names:  # a point directory copied out of its run
            dirnames[:] = []
            try:
                yield _kvbench_point(here)
            except InputError as exc:
                yield BadInput(here / POINT_FILE, str(exc))
            return
        result_name = next((n for n in ORIGINAL_RESULT_NAMES if n in names), None)
        if result_name is not None:
            dirnames[:] = []
            yield _original_point(here, result_name)
            return
        for name in sorted(names):
            if name in NOT_RESULTS or name.startswith(".") or not is_result_name(name):
                continue
            yield Unit("loose", here / name)


def _point_path(path: Path) -> Iterator[Unit | BadInput | RunInfo]:
    """A point.json given directly, and its run when the point still lies in one."""
    run_dir = path.parent.parent.parent
    if _is_kvbench_run(run_dir):
        info, bad = read_run_info(run_dir)
        if info is not None:
            yield info
        if bad is not None:
            yield bad
    try:
        yield _kvbench_point(path.parent)
    except InputError as exc:
        yield BadInput(path, str(exc))


def discover(paths: list[Path]) -> Iterator[Unit | BadInput | RunInfo]:
    """Units to read from the given files and directories, in a stable order, with the runs they belong to."""
    for path in paths:
        if path.is_dir():
            found = False
            for item in _Walk(path).items():
                found = found or not isinstance(item, RunInfo)
                yield item
            if not found:
                yield BadInput(path, "no GuideLLM results found in this directory")
        elif path.name == POINT_FILE:
            yield from _point_path(path)
        elif path.name in ORIGINAL_RESULT_NAMES:
            yield _original_point(path.parent, path.name)
        elif path.is_file():
            yield Unit("loose", path)
        else:
            yield BadInput(path, "no such file or directory")
