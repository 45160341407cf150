"""Read result trees and files into flat records, one per benchmark (or per failed point)."""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvbench.errors import BadInput, InputError
from kvbench.ingest.guidellm import METRIC_COLUMNS, extract_records, report_labels
from kvbench.ingest.layouts import RunInfo, Unit, discover
from kvbench.ingest.metrics_point import output_tokens_of, point_metrics_columns
from kvbench.ingest.point_columns import empty_point_columns, point_columns
from kvbench.ingest.reader import read_document
from kvbench.metrics_summary import empty_summary
from kvbench.naming import canonical_scenario, model_short_name

__all__ = ["IngestResult", "RunInfo", "StrictStop", "Unit", "default_jobs", "discover", "ingest", "read_all"]

Item = Unit | BadInput | RunInfo


class StrictStop(Exception):
    """Raised in strict mode at the first bad input."""

    def __init__(self, bad: BadInput) -> None:
        super().__init__(bad.line())
        self.bad = bad


@dataclass
class IngestResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    bad: list[BadInput] = field(default_factory=list)
    files_read: int = 0
    runs: list[RunInfo] = field(default_factory=list)


def _int_or_nan(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(int(str(value).strip()))
    except ValueError:
        return math.nan


def _first(*values: Any) -> Any:
    for value in values:
        if value is None:
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        if isinstance(value, str) and not value.strip():
            continue
        return value
    return None


def _empty_record() -> dict[str, Any]:
    record: dict[str, Any] = {column: math.nan for column in METRIC_COLUMNS}
    record.update(
        benchmark_index=math.nan,
        strategy=None,
        rate=math.nan,
        guidellm_version=None,
        report_format=math.nan,
        start_time=math.nan,
        data_model=None,
    )
    return record


def _text_or_empty(value: Any) -> str:
    return str(value) if value not in (None, "") else ""


def _identify(unit: Unit, record: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """Fill run, model, scenario, concurrency, repetition, provenance and the point record's columns."""
    hints = unit.hints
    record["layout"] = unit.layout
    record["source_file"] = str(unit.file) if unit.file is not None else str(hints.get("point_file", ""))
    record.update(empty_point_columns())
    record.update(empty_summary())
    if unit.layout == "kvbench":
        point = hints.get("point") or {}
        model = hints["model"]
        scenario_raw = hints["scenario"]
        concurrency = _first(record.get("concurrency"), _int_or_nan(hints.get("concurrency")))
        record.update(point_columns(point))
        if hints.get("point_file") and point:
            # The point's /metrics series and PCP archives, summarised inside its measured window.
            record.update(point_metrics_columns(Path(hints["point_file"]), point, output_tokens_of(record)))
        guidellm = point.get("guidellm") if isinstance(point.get("guidellm"), dict) else {}
        record.update(
            repetition=_int_or_nan(hints.get("repetition")),
            run=hints.get("run"),
            hardware=None,
            software=None,
            # vLLM servers behind the router (point records from the replicas option on); older records: none.
            replicas=_int_or_nan((point.get("config") or {}).get("replicas")),
            guidellm_version=_first(record.get("guidellm_version"), guidellm.get("version")),
        )
    elif unit.layout == "original":
        cfg = unit.config
        dirname = hints.get("dirname", {})
        model = _first(
            cfg.get("Model Name"),
            model_short_name(cfg["Model"]) if cfg.get("Model") else None,
            record.get("data_model"),
            dirname.get("model"),
        )
        scenario_raw = _first(cfg.get("Parameters"), dirname.get("scenario"))
        concurrency = _first(
            record.get("concurrency"),
            _int_or_nan(cfg.get("Rate (Concurrency)")),
            _int_or_nan(cfg.get("Rate")),
            _int_or_nan(dirname.get("rate")),
        )
        hardware = _first(cfg.get("Hardware"), dirname.get("hardware"))
        software = _first(cfg.get("Software"), dirname.get("software"))
        record.update(
            repetition=1.0,
            run="_".join(str(x) for x in (hardware, software) if x) or None,
            hardware=hardware,
            software=software,
            replicas=_first(_int_or_nan(cfg.get("Replicas")), _int_or_nan(dirname.get("replicas"))),
        )
    else:
        path = unit.file
        stem = path.name if path is not None else "unknown"
        for suffix in (".zst", ".json", ".yaml", ".yml"):
            stem = stem.removesuffix(suffix)
        model = _first(labels.get("model"), record.get("data_model"))
        scenario_raw = _first(labels.get("scenario"), stem)
        concurrency = record.get("concurrency")
        record.update(repetition=1.0, run=labels.get("run"), hardware=None, software=None, replicas=math.nan)
    scenario_raw = str(scenario_raw) if scenario_raw is not None else "unknown"
    record["run"] = _text_or_empty(record.get("run"))
    record["model"] = str(model) if model is not None else "unknown"
    record["scenario_raw"] = scenario_raw
    record["scenario"] = canonical_scenario(scenario_raw)
    record["concurrency"] = concurrency if concurrency is not None else math.nan
    record.pop("data_model", None)
    return record


def _read_unit(unit: Unit) -> list[dict[str, Any]]:
    """Records of one unit; InputError when its file cannot be used."""
    status = unit.hints.get("status", "ok")
    if unit.layout == "kvbench" and status != "ok":
        record = _empty_record()
        record.update(status=status, reason=unit.hints.get("reason") or f"point {status}")
        return [_identify(unit, record, {})]
    note = unit.hints.get("reason") if unit.layout == "kvbench" else None
    assert unit.file is not None
    if not unit.file.is_file():
        raise InputError("GuideLLM result file is missing")
    doc = read_document(unit.file)
    records = extract_records(doc)
    labels = report_labels(doc)
    del doc  # per-request samples go now: memory stays bounded by one file
    for record in records:
        record.update(status="ok", reason=note)
        _identify(unit, record, labels)
    return records


def _error_record(unit: Unit, reason: str) -> dict[str, Any] | None:
    """A row for a point whose identity is known but whose result file is unusable."""
    if unit.layout == "loose":
        return None
    record = _empty_record()
    record.update(status="error", reason=reason)
    return _identify(unit, record, {})


@dataclass
class _Outcome:
    """What reading one discovered item gave; small, so it travels cheaply between processes."""

    records: list[dict[str, Any]]
    bad: BadInput | None
    file_read: bool


def _process(item: Item) -> _Outcome:
    """Read one item; never raises for a bad input (runs in worker processes too)."""
    if isinstance(item, BadInput):
        return _Outcome([], item, False)
    if isinstance(item, RunInfo):
        return _Outcome([], None, False)
    try:
        records = _read_unit(item)
    except Exception as exc:  # one unusable input must never stop the others
        reason = str(exc) if isinstance(exc, InputError) else f"cannot analyze ({type(exc).__name__}: {exc})"
        bad = BadInput(item.file or Path(str(item.hints.get("point_file", "?"))), reason)
        error_row = _error_record(item, reason)
        return _Outcome([error_row] if error_row is not None else [], bad, False)
    return _Outcome(records, None, item.file is not None)


def _outcomes(items: Sequence[Item], jobs: int) -> Iterator[_Outcome]:
    """Outcomes in the order of `items`; with jobs > 1 read by a pool of worker processes.

    Each worker holds one decoded file at a time, so memory stays bounded by `jobs` x the largest file.
    """
    if jobs <= 1 or len(items) < 2:
        yield from map(_process, items)
        return
    context = multiprocessing.get_context("spawn")
    # concurrent.futures rather than multiprocessing.Pool: a worker that dies (killed, out of memory) breaks
    # the executor with an error instead of leaving its task unanswered forever. The rest is then read here.
    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=context) as pool:
        futures = [pool.submit(_process, item) for item in items]
        for index, future in enumerate(futures):
            try:
                yield future.result()
            except BrokenProcessPool:
                yield from map(_process, items[index:])
                return


def default_jobs() -> int:
    """Worker processes used unless told otherwise: the CPUs, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def read_all(
    items: Sequence[Item],
    strict: bool = False,
    on_bad: Callable[[BadInput], None] | None = None,
    on_done: Callable[[Item], None] | None = None,
    jobs: int = 1,
) -> IngestResult:
    """Read discovered items. Bad inputs are collected (StrictStop at the first when strict); the runs met
    on the way are kept for ordering."""
    result = IngestResult(runs=[item for item in items if isinstance(item, RunInfo)])
    outcomes = _outcomes(items, jobs)
    try:
        for item, outcome in zip(items, outcomes, strict=True):
            if on_done is not None:
                on_done(item)
            if outcome.bad is not None:
                if strict:
                    raise StrictStop(outcome.bad)
                result.bad.append(outcome.bad)
                if on_bad is not None:
                    on_bad(outcome.bad)
            result.records.extend(outcome.records)
            result.files_read += outcome.file_read
    finally:
        outcomes.close()  # stops the worker pool at once when strict mode stops early
    return result


def ingest(paths: Iterable[Path], strict: bool = False, jobs: int = 1) -> IngestResult:
    """Discover and read everything under `paths`."""
    return read_all(list(discover(list(paths))), strict=strict, jobs=jobs)
