"""kvbench.records: the run directory's contract. Versioned schemas, validation, and record assembly.

Writers (``kvbench record``) validate before writing; ``kvbench analyze`` validates on reading and names a
record that does not conform. Readers ignore unknown keys; writers add keys, never rename them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

KINDS = {
    "kvbench.plan": "plan",
    "kvbench.point": "point",
    "kvbench.scenario": "scenario",
    "kvbench.manifest": "manifest",
}
SCHEMA_VERSIONS = {"plan": 1, "point": 2, "scenario": 2, "manifest": 2}


class RecordError(ValueError):
    """A record that does not conform to its schema; the message lists every violation."""


def _schema_text(name: str) -> dict[str, Any]:
    return json.loads(resources.files("kvbench.records").joinpath(f"schemas/{name}.schema.json").read_text())


@cache
def _validator(name: str) -> Draft202012Validator:
    common = _schema_text("common")
    registry = Registry().with_resource("kvbench/common.schema.json", Resource.from_contents(common))
    return Draft202012Validator(_schema_text(name), registry=registry)


def problems(record: Any, expected: str | None = None) -> list[str]:
    """Every way `record` violates its schema ([] when it conforms); `expected`: a key of SCHEMA_VERSIONS."""
    if not isinstance(record, dict):
        return ["not a JSON object"]
    name = KINDS.get(str(record.get("kind")))
    if name is None or (expected and name != expected):
        want = f"kvbench.{expected}" if expected else " or ".join(KINDS)
        return [f"kind is {record.get('kind')!r}, expected {want}"]
    errors = sorted(_validator(name).iter_errors(record), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors]


def validate(record: Any, expected: str | None = None) -> dict[str, Any]:
    """The record itself when it conforms; RecordError listing the violations otherwise."""
    found = problems(record, expected)
    if found:
        raise RecordError("; ".join(found[:8]) + (f" (+{len(found) - 8} more)" if len(found) > 8 else ""))
    return record
