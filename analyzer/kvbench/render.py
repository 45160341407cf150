"""Write the run directory's files: atomically (temp file + rename) and checksummed in SHA256SUMS."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SUMS_FILE = "SHA256SUMS"
_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, document: Any) -> None:
    write_atomically(path, (json.dumps(document, indent=2, sort_keys=False) + "\n").encode())


def update_sums(run_dir: Path, paths: Iterable[Path]) -> None:
    """Put the sha256 of each path (relative to run_dir) into run_dir/SHA256SUMS, under an exclusive lock.

    The file keeps the `sha256sum` format (`sha256sum -c SHA256SUMS` verifies a run), one sorted line
    per path,
    shared with the collect role, which writes the same format under the same lock.
    """
    sums_path = run_dir / SUMS_FILE
    # The collect role locks the same directory (flock works on directories), so neither loses lines.
    lock = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries: dict[str, str] = {}
        if sums_path.exists():
            for line in sums_path.read_text(encoding="utf-8").splitlines():
                match = _SUM_LINE.match(line)
                if match:
                    entries[match.group(2)] = match.group(1)
        for path in paths:
            entries[str(path.relative_to(run_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
        text = "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))
        write_atomically(sums_path, text.encode())
    finally:
        os.close(lock)


def write_table(path: Path, frame: Any, csv: bool = False) -> list[Path]:
    """A pandas DataFrame as <path>.parquet (pyarrow), and <path>.csv too when `csv`; both atomically."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    written = [path.with_suffix(".parquet")]
    write_atomically(written[0], buffer.getvalue())
    if csv:
        written.append(path.with_suffix(".csv"))
        write_atomically(written[1], frame.to_csv(index=False).encode())
    return written
