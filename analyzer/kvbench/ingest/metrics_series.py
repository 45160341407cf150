"""Read a point's /metrics time series (`<point>/metrics/series.jsonl.gz`) and its measured window.

The series is gzip JSON lines, one per scrape: {"t": unix seconds, "source": "vllm", "url": ..., "ok": bool,
"error": ..., "samples": {"<metric>{<labels>}": value}}. A line cut off by an interruption, or one that is
not such an object, is skipped and counted; an unreadable file is an InputError naming it. The window is the
point record's benchmark phase (GuideLLM's measured run), else the whole point.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from kvbench.errors import InputError
from kvbench.metrics_summary import Window

SERIES_FILE = "series.jsonl.gz"
SERIES_COLUMNS: tuple[str, ...] = ("t", "source", "url", "ok", "sample", "value")


def _unix(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def point_window(record: Mapping[str, Any]) -> Window | None:
    """The benchmark phase of a point record, else started_at..ended_at; None without usable times."""
    phases = record.get("phases")
    bench = phases.get("benchmark") if isinstance(phases, Mapping) else None
    for start_text, end_text in (
        (bench.get("start"), bench.get("end")) if isinstance(bench, Mapping) else (None, None),
        (record.get("started_at"), record.get("ended_at")),
    ):
        start, end = _unix(start_text), _unix(end_text)
        if start is not None and end is not None and end > start:
            return Window(start, end)
    return None


@dataclass
class Series:
    """The scrapes of one point: tidy samples plus the scrapes that failed or could not be read."""

    frame: pd.DataFrame  # SERIES_COLUMNS, one row per sample of an ok scrape
    scrapes: int
    failed: int
    skipped_lines: int


def _empty() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in SERIES_COLUMNS})


def read_series(path: Path) -> Series:
    """The series file at `path`; InputError naming it when it cannot be read as gzip."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError):
        # An interrupted writer leaves a gzip without its trailer: keep what was flushed.
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        except zlib.error as exc:
            raise InputError(f"{path}: not a gzip file ({exc})") from None
    rows: list[tuple[float, str, str, bool, str, float]] = []
    scrapes = failed = skipped = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            skipped += 1
            continue
        t = entry.get("t") if isinstance(entry, dict) else None
        if not isinstance(t, int | float) or isinstance(t, bool):
            skipped += 1
            continue
        scrapes += 1
        samples = entry.get("samples")
        if entry.get("ok") is not True or not isinstance(samples, dict):
            failed += 1
            continue
        source, url = str(entry.get("source") or ""), str(entry.get("url") or "")
        for sample, value in samples.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                rows.append((float(t), source, url, True, str(sample), float(value)))
    frame = pd.DataFrame.from_records(rows, columns=list(SERIES_COLUMNS)) if rows else _empty()
    return Series(frame, scrapes, failed, skipped)


def point_series(point_dir: Path) -> Series | None:
    """The series of a point directory; None when it has none."""
    path = point_dir / "metrics" / SERIES_FILE
    return read_series(path) if path.is_file() else None
