"""Decode one result file: JSON, zstd-compressed JSON or YAML, one file at a time.

A file is decompressed into one buffer (in one step when its frame header gives the size, else
streaming), parsed with orjson, reduced to summary records and dropped, so memory is bounded by the
largest file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml
import zstandard

from kvbench.errors import InputError

_CHUNK = 4 << 20

JSON_SUFFIXES = (".json", ".json.zst")
YAML_SUFFIXES = (".yaml", ".yml", ".yaml.zst", ".yml.zst")
RESULT_SUFFIXES = JSON_SUFFIXES + YAML_SUFFIXES


def is_result_name(name: str) -> bool:
    """True for the file names the analyzer can decode."""
    return name.lower().endswith(RESULT_SUFFIXES)


def read_bytes(path: Path) -> bytes | bytearray:
    """The decompressed content of `path` (zstd when it ends in .zst)."""
    try:
        if path.suffix.lower() != ".zst":
            return path.read_bytes()
        return _read_zstd(path)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from None


def _read_zstd(path: Path) -> bytes | bytearray:
    raw = path.read_bytes()  # compressed: a small fraction of what it decodes to
    if not raw:
        raise InputError("empty file, not zstd data")
    try:
        zstandard.get_frame_parameters(raw)
    except zstandard.ZstdError:
        raise InputError("not zstd-compressed data (bad frame header)") from None
    try:
        # One frame with its size in the header (what the zstd tool writes): one allocation, no copies.
        return zstandard.ZstdDecompressor().decompress(raw, allow_extra_data=False)
    except zstandard.ZstdError:
        return _read_zstd_stream(raw)


def _read_zstd_stream(raw: bytes) -> bytearray:
    """Streaming decompression: frames without a size, concatenated frames, and precise errors."""
    out = bytearray()
    view = memoryview(raw)
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        for start in range(0, len(view), _CHUNK):
            out += dobj.decompress(view[start : start + _CHUNK])
            while dobj.eof and dobj.unused_data:
                # Concatenated frames: continue with a fresh decompressor.
                rest = dobj.unused_data
                dobj = zstandard.ZstdDecompressor().decompressobj()
                out += dobj.decompress(rest)
    except zstandard.ZstdError as exc:
        raise InputError(f"corrupt zstd data ({exc})") from None
    if not dobj.eof:
        raise InputError(f"truncated zstd data (stream ends inside a frame after {len(out)} bytes)")
    return out


def parse(path: Path, data: bytes | bytearray) -> Any:
    """Parse decoded bytes as JSON or YAML according to the file name."""
    name = path.name.lower()
    if name.endswith(YAML_SUFFIXES):
        try:
            return yaml.load(bytes(data), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            words = [getattr(exc, "context", None), getattr(exc, "problem", None)]
            problem = ", ".join(w for w in words if w)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            detail = f" ({problem})" if problem else ""
            raise InputError(f"not valid YAML{where}{detail}") from None
    if not data or data.isspace():
        raise InputError("empty document, not JSON")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})") from None


def read_document(path: Path) -> Any:
    """Decode and parse one result file."""
    return parse(path, read_bytes(path))
