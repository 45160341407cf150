"""Read rendered scenario folders: manifests, the vLLM container, its flags, the EPP configuration."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

CORE_GROUPS = {"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1"}


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def deployment(docs: list[dict], component: str) -> dict:
    hits = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(hits) == 1, f"expected one {component} Deployment, found {len(hits)}"
    return hits[0]


def container(dep: dict, name: str) -> dict:
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def flags(args: list[str]) -> dict[str, str]:
    """`--name value` pairs and `--name=value` tokens of an argv; bare flags map to ''."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            out[key] = value
        elif arg.startswith("--"):
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is not None and not nxt.startswith("--"):
                out[arg[2:]] = nxt
                i += 1
            else:
                out[arg[2:]] = ""
        i += 1
    return out


def env_of(cont: dict) -> dict[str, dict]:
    return {e["name"]: e for e in cont.get("env", [])}


def epp_config(docs: list[dict]) -> dict:
    epp = container(deployment(docs, "epp"), "epp")
    return yaml.safe_load(flags(epp["args"])["config-text"])


def plugin(cfg: dict, kind: str) -> dict | None:
    return next((p for p in cfg["plugins"] if p["type"] == kind), None)


def memory_gib(quantity: str) -> float:
    assert quantity.endswith("Gi"), quantity
    return float(quantity[:-2])


def settings(folder: Path) -> dict:
    return json.loads((folder / "settings.json").read_text())


def shell_words(text: str) -> list[str]:
    return shlex.split(text)
