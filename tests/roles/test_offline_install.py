"""The roles' offline install path: a wheelhouse built from the local package index, installed by the vllm
role with pip cut off from every index (--no-index from the role, no pip configuration, an unroutable proxy).

The wheelhouse holds python-dateutil and its requirements: resolving mode must find them there, and closure
mode (--no-deps over every wheel) must install every wheel. The role treats vllm_package as any pip
distribution, so a small one stands in for vLLM; lmcache and guidellm share the same option pattern.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_with_vars
from tests.roles.conftest import PLAYBOOKS

PACKAGE = "python-dateutil"


def _installed(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {d["name"].lower(): d["version"] for d in json.loads(out)}


def test_vllm_role_installs_from_a_wheelhouse_without_an_index(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    # Built here from the machine's configured package index, as an operator builds one for an offline node.
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", wheelhouse, PACKAGE],
        check=True,
    )
    wheels = sorted(p.name for p in wheelhouse.glob("*.whl"))
    version = next(w for w in wheels if w.startswith("python_dateutil-")).split("-")[1]
    requirements = {w.split("-")[0].lower().replace("_", "-") for w in wheels} - {PACKAGE}
    assert requirements, (
        f"{PACKAGE} {version} pulled no requirement: nothing for the resolver to find ({wheels})"
    )

    result_file = tmp_path / "result.json"
    extra = {
        "wheelhouse": str(wheelhouse),
        "package": PACKAGE,
        "version": version,
        "venv_resolve": str(tmp_path / "venv-resolve"),
        "venv_closure": str(tmp_path / "venv-closure"),
        "result_file": str(result_file),
        "vllm_python": "python3",
    }
    run = run_with_vars(PLAYBOOKS / "offline_install.yml", extra, tmp_path, timeout=600)
    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{run.stderr[-2000:]}"

    recorded = json.loads(result_file.read_text())
    assert recorded == {"resolved": version, "closure": version}
    for venv in ("venv-resolve", "venv-closure"):
        installed = _installed(tmp_path / venv)
        assert installed.get(PACKAGE) == version, (venv, installed)
        assert requirements <= installed.keys(), (venv, requirements, installed)
