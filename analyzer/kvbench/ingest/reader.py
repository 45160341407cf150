"""Decode one result file: JSON, zstd-compressed JSON or YAML, one file at a time.

Decompression streams the compressed file in chunks into one buffer that is parsed with orjson and
then dropped, so memory is bounded by the largest file.
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


def _read_zstd(path: Path) -> bytearray:
    out = bytearray()
    with path.open("rb") as handle:
        first = handle.read(_CHUNK)
        if not first:
            raise InputError("empty file, not zstd data")
        try:
            zstandard.get_frame_parameters(first)
        except zstandard.ZstdError:
            raise InputError("not zstd-compressed data (bad frame header)") from None
        dobj = zstandard.ZstdDecompressor().decompressobj()
        chunk = first
        try:
            while chunk:
                out += dobj.decompress(chunk)
                while dobj.eof and dobj.unused_data:
                    # Concatenated frames: continue with a fresh decompressor.
                    rest = dobj.unused_data
                    dobj = zstandard.ZstdDecompressor().decompressobj()
                    out += dobj.decompress(rest)
                chunk = handle.read(_CHUNK)
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
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise InputError(f"not valid YAML{where}") from None
    if not data or data.isspace():
        raise InputError("empty document, not JSON")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})") from None


def read_document(path: Path) -> Any:
    """Decode and parse one result file."""
    return parse(path, read_bytes(path))
