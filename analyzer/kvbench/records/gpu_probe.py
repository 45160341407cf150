"""The GPU probe's result (roles/gpu_probe) as the manifest keeps it under hosts.<host>.gpu_probe.

A probe that printed something its schema does not admit must not stop the sweep at the manifest: it is
kept as `failed`, with the violation as the reason, and the figures it claimed are dropped.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator


@cache
def _validator() -> Draft202012Validator:
    text = resources.files("kvbench.records").joinpath("schemas/manifest.schema.json").read_text()
    return Draft202012Validator(json.loads(text)["$defs"]["gpu_probe"])


def checked_probe(probe: Any) -> dict[str, Any]:
    """`probe` itself when it conforms; otherwise a `failed` probe naming the first violation."""
    errors = sorted(_validator().iter_errors(probe), key=lambda e: list(e.absolute_path))
    if not errors:
        return probe
    where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
    return {
        "status": "failed",
        "reason": f"the probe's result does not conform ({where}: {errors[0].message})"[:500],
        "gpus": [],
        "bandwidth": [],
    }


def with_checked_probes(hosts: dict[str, Any]) -> dict[str, Any]:
    """The manifest's hosts, each host's gpu_probe (where it has one) checked."""
    return {
        host: {**facts, "gpu_probe": checked_probe(facts["gpu_probe"])}
        if isinstance(facts, dict) and "gpu_probe" in facts
        else facts
        for host, facts in hosts.items()
    }
