"""Read a scenario's pmlogger archives with PCP's own tools into a tidy frame.

Archives sit under `<scenario>/pcp/<host>/` (nodes: `<host>-<stamp>.{meta,index,0}`; Kubernetes:
`segment-NN/archive.*`), possibly compressed. PCP 6 cannot read `.zst` volumes, so every compressed file
of an archive is decompressed (zstd, xz) into a temporary directory first. Values come from PCP's own
Python API (kvbench/ingest/pcp_dump.py, run by the Python that has PCP's binding: $PCP_PYTHON_PROG, else
/usr/bin/python3): every archive record, counters raw; no hand parsing of the binary format.
"""

from __future__ import annotations

import functools
import io
import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import zstandard

from kvbench.errors import InputError

PCP_COLUMNS: tuple[str, ...] = ("t", "host", "archive", "metric", "instance", "value")
_COMPRESSED = {".zst": "zst", ".xz": "xz"}
_DUMP = Path(__file__).with_name("pcp_dump.py")
_TIMEOUT_S = 300


def _pcp_python() -> str:
    return os.environ.get("PCP_PYTHON_PROG") or "/usr/bin/python3"


@dataclass(frozen=True)
class Archive:
    """One pmlogger archive: its base path (without .meta) and the host directory it came from."""

    base: Path
    host: str


@functools.cache
def pcp_tools_available() -> bool:
    """Whether PCP's Python binding can be run (the archives can be read)."""
    try:
        probe = subprocess.run(
            [_pcp_python(), "-c", "import pcp.pmapi"], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _strip_compression(name: str) -> str:
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_archives(scenario_dir: Path) -> list[Archive]:
    """Every archive under `<scenario>/pcp/`, by its .meta file (compressed or not)."""
    root = scenario_dir / "pcp"
    if not root.is_dir():
        return []
    found: dict[Path, Archive] = {}
    for meta in sorted(root.rglob("*.meta*")):
        plain = _strip_compression(meta.name)
        if not plain.endswith(".meta") or not meta.is_file():
            continue
        base = meta.with_name(plain[: -len(".meta")])
        host = meta.relative_to(root).parts[0] if len(meta.relative_to(root).parts) > 1 else "unknown"
        found.setdefault(base, Archive(base, host))
    return list(found.values())


def _archive_files(base: Path) -> list[Path]:
    """The files of one archive: <base>.meta, <base>.index, <base>.<n>, each maybe compressed."""
    files = []
    for path in sorted(base.parent.glob(base.name + ".*")):
        rest = _strip_compression(path.name)[len(base.name) + 1 :]
        if rest in ("meta", "index") or rest.isdigit():
            files.append(path)
    return files


def _decompress(source: Path, target: Path) -> None:
    if source.name.endswith(".zst"):
        with source.open("rb") as src, target.open("wb") as dst:
            zstandard.ZstdDecompressor().copy_stream(src, dst)
    elif source.name.endswith(".xz"):
        with lzma.open(source) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        try:
            os.symlink(source.resolve(), target)
        except OSError:
            shutil.copyfile(source, target)


def _run(argv: list[str], what: Path) -> str:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{what}: {argv[0]} failed: {exc}") from None
    if proc.returncode != 0:
        # The reader's last line of error output says why (a PCP error such as a bad archive label).
        last = (proc.stderr.strip().splitlines() or [""])[-1][:300]
        raise InputError(f"{what}: not a readable PCP archive ({last})")
    return proc.stdout


def _tidy(text: str, archive: Archive) -> pd.DataFrame:
    frame = pd.read_csv(
        io.StringIO(text),
        names=["t", "metric", "instance", "value"],
        dtype={"t": float, "metric": str, "instance": str, "value": float},
        keep_default_na=False,
    )
    frame["host"] = archive.host
    frame["archive"] = archive.base.name
    return frame[list(PCP_COLUMNS)]


@functools.lru_cache(maxsize=8)
def _read_cached(
    base: Path, host: str, stamp: tuple[tuple[str, float], ...], prefixes: tuple[str, ...] | None
) -> pd.DataFrame:
    archive = Archive(base, host)
    files = _archive_files(base)
    if not any(_strip_compression(f.name).endswith(".meta") for f in files):
        raise InputError(f"{base}.meta: missing")
    with tempfile.TemporaryDirectory(prefix="kvbench-pcp-") as tmp:
        for path in files:
            _decompress(path, Path(tmp) / _strip_compression(path.name))
        local = Path(tmp) / base.name
        text = _run([_pcp_python(), str(_DUMP), str(local), *(prefixes or ())], base)
    return _tidy(text, archive)


def read_archive(archive: Archive, prefixes: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every numeric value of every metric of the archive (or of those starting with one of `prefixes`):
    PCP_COLUMNS, counters raw (not rates)."""
    files = _archive_files(archive.base)
    stamp = tuple((f.name, f.stat().st_mtime) for f in files)
    return _read_cached(archive.base, archive.host, stamp, prefixes).copy()


def read_scenario_archives(
    scenario_dir: Path, prefixes: tuple[str, ...] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """All archives of a scenario concatenated, and a problem line for each one that could not be read."""
    frames, problems = [], []
    for archive in find_archives(scenario_dir):
        try:
            frames.append(read_archive(archive, prefixes))
        except InputError as exc:
            problems.append(str(exc))
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=list(PCP_COLUMNS)), problems
    return pd.concat(frames, ignore_index=True), problems
