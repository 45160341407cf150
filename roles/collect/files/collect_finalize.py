#!/usr/bin/env python3
"""Controller side of the kvbench `collect` role: plan fetches, compress, rename, record sha256 sums.

Run with the controller's Ansible python (ansible_playbook_python); reads one JSON request on stdin
and prints one JSON answer on stdout. Two commands:

plan      {"items": [{"final": abs path, "compress": bool, "src_sha256": hex}]}
          -> {"fetch": [indices of items whose controller copy is missing or differs]}
finalize  {"run_dir": abs, "sums_file": abs, "level": int, "fetched": [indices fetched to their tmp],
           "items": [{"final": abs path, "tmp": abs path, "compress": bool}]}
          -> {"changed": bool, "files": [{"path", "sha256", "bytes", "compressed"}]}

finalize turns each fetched temp file into its final name (zstd-compressing it when asked) with an
atomic rename, then rewrites the sums file (one "<sha256>  <path>" line per path, paths relative to
run_dir, sorted) through a temp file + rename under an exclusive lock, so hosts finalising at the
same time do not lose each other's lines. Errors are one line on stderr naming the file; exit 2.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20
SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


class CollectError(Exception):
    """A problem with one named file; reported without a traceback."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_zst(path: Path) -> str | None:
    """sha256 of the decompressed content of a .zst file; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        import zstandard

        with path.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
    except ImportError:
        proc = subprocess.run(["zstd", "-dcq", str(path)], capture_output=True, check=False)
        if proc.returncode != 0:
            return None
        digest.update(proc.stdout)
    except Exception:  # a damaged archive just means "fetch again"
        return None
    return digest.hexdigest()


def compress(src: Path, dst: BinaryIO, level: int) -> None:
    try:
        import zstandard
    except ImportError:
        with src.open("rb") as fh:
            subprocess.run(["zstd", "-q", f"-{level}", "--check", "-c"], stdin=fh, stdout=dst, check=True)
        return
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
    with src.open("rb") as fh:
        cctx.copy_stream(fh, dst, size=src.stat().st_size)


def write_atomically(final: Path, fill: Any) -> None:
    """Write final through a temp file in its directory: fill(fileobj), fsync, rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def plan(request: dict[str, Any]) -> dict[str, Any]:
    fetch = []
    for index, item in enumerate(request["items"]):
        final = Path(item["final"])
        if not final.is_file():
            fetch.append(index)
            continue
        have = sha256_of_zst(final) if item["compress"] else sha256_file(final)
        if have != item["src_sha256"]:
            fetch.append(index)
    return {"fetch": fetch}


def place(item: dict[str, Any], level: int) -> bool:
    """Move one fetched temp file to its final name; return whether the final file changed."""
    final, tmp = Path(item["final"]), Path(item["tmp"])
    if not tmp.is_file():
        raise CollectError(f"{tmp}: fetched file is missing on the controller")
    if item["compress"]:
        staged = tmp.with_name(tmp.name + ".zst")
        try:
            with staged.open("wb") as out:
                compress(tmp, out, level)
        except (OSError, subprocess.CalledProcessError) as err:
            staged.unlink(missing_ok=True)
            raise CollectError(f"{tmp}: zstd compression failed: {err}") from err
        tmp.unlink()
        tmp = staged
    if final.is_file() and sha256_file(final) == sha256_file(tmp):
        tmp.unlink()
        return False
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)
    return True


def read_sums(path: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    if not path.exists():
        return sums
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = SUM_LINE.match(line)
        if not match:
            raise CollectError(f"{path}:{number}: not a sha256sum line: {line[:80]!r}")
        sums[match.group(2)] = match.group(1)
    return sums


def finalize(request: dict[str, Any]) -> dict[str, Any]:
    run_dir = Path(request["run_dir"]).resolve()
    sums_path = Path(request["sums_file"])
    changed = False
    files = []
    fetched = set(request.get("fetched", []))
    for index, item in enumerate(request["items"]):
        final = Path(item["final"])
        if index in fetched:
            changed |= place(item, int(request.get("level", 6)))
        if not final.is_file():
            raise CollectError(f"{final}: expected on the controller after the fetch, not found")
        rel = os.path.relpath(final.resolve(), run_dir)
        if rel.startswith(".."):
            raise CollectError(f"{final}: outside the run directory {run_dir}")
        if "\n" in rel or "\\" in rel:
            raise CollectError(f"{final}: name with a newline or backslash cannot go into {sums_path}")
        files.append(
            {
                "path": rel,
                "sha256": sha256_file(final),
                "bytes": final.stat().st_size,
                "compressed": bool(item["compress"]),
            }
        )
    sums_path.parent.mkdir(parents=True, exist_ok=True)
    # Lock the directory of the sums file itself (flock works on directories): no stray lock file.
    lock = os.open(sums_path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sums = read_sums(sums_path)
        updated = dict(sums) | {entry["path"]: entry["sha256"] for entry in files}
        if updated != sums or not sums_path.exists():
            text = "".join(f"{digest}  {path}\n" for path, digest in sorted(updated.items()))
            write_atomically(sums_path, lambda out: out.write(text.encode("utf-8")))
            changed = True
    finally:
        os.close(lock)
    return {"changed": changed, "files": files}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in {"plan", "finalize"}:
        print("usage: collect_finalize.py plan|finalize < request.json", file=sys.stderr)
        return 2
    try:
        request = json.load(sys.stdin)
        answer = plan(request) if sys.argv[1] == "plan" else finalize(request)
    except CollectError as err:
        print(f"collect: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as err:
        print(f"collect: {sys.argv[1]} failed: {err!r}", file=sys.stderr)
        return 2
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
