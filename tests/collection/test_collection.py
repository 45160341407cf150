"""kvbench.harness as an installed Ansible collection, used from outside the repository.

The collection is built from this clone (`ansible-galaxy collection build`), installed into a temporary
collections path, and every command then runs in a temporary working directory with an empty ANSIBLE_CONFIG
and no ANSIBLE_* variable of the caller: nothing of the repository (its ansible.cfg, roles_path, filter
plugins, the collections/ link) is on any path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "standalone.yml"
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())
# What a built collection may hold at its top level: the roles, the plugins and the metadata.
COLLECTION_TOP = {"MANIFEST.json", "FILES.json", "README.md", "changelogs", "meta", "plugins", "roles"}


@dataclass(frozen=True)
class Installed:
    tarball: Path
    collections: Path  # the collections path (holds ansible_collections/kvbench/harness)
    workdir: Path  # cwd of every command: outside the repository
    env: dict[str, str]

    @property
    def root(self) -> Path:
        return self.collections / "ansible_collections" / "kvbench" / "harness"

    def run(self, *cmd: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / cmd[0]), *cmd[1:]],
            cwd=cwd or self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def outside_env(collections: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("collection")
    workdir, dist, collections = tmp / "work", tmp / "dist", tmp / "collections"
    for folder in (workdir, dist, collections):
        folder.mkdir()
    config = tmp / "empty.cfg"
    config.write_text("")
    inst = Installed(Path(), collections, workdir, outside_env(collections, config))
    build = inst.run("ansible-galaxy", "collection", "build", str(REPO), "--output-path", str(dist))
    assert build.returncode == 0, build.stdout + build.stderr
    tarballs = list(dist.glob("kvbench-harness-*.tar.gz"))
    assert len(tarballs) == 1, build.stdout
    # --no-deps: kubernetes.core (a dependency of the k8s_* roles) comes with the ansible package here.
    install = inst.run("ansible-galaxy", "collection", "install", "--no-deps", str(tarballs[0]))
    assert install.returncode == 0, install.stdout + install.stderr
    return Installed(tarballs[0], collections, workdir, inst.env)


def test_version_follows_the_project(installed: Installed) -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    found = re.search(r'^\[project\][^\[]*?^version = "([^"]+)"', pyproject, re.M | re.S)
    assert found, "no version in pyproject.toml's [project]"
    project = found.group(1)
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert galaxy["version"] == project
    manifest = json.loads((installed.root / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == project
    assert installed.tarball.name == f"kvbench-harness-{project}.tar.gz"
    # The Python requirement of the plugins is the kvbench package of the same version.
    requirements = (REPO / "meta" / "requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if line[:1].isalpha()]
    assert pins == [f"kvbench=={project}"]


def test_changelog_fragments_use_the_configured_sections() -> None:
    """antsibull-changelog's fragment format: a mapping of configured sections to lists of entries."""
    config = yaml.safe_load((REPO / "changelogs" / "config.yaml").read_text())
    prelude = config["prelude_section_name"]
    sections = {name for name, _title in config["sections"]} | {prelude}
    fragments = sorted((REPO / "changelogs" / config["notesdir"]).glob("*.y*ml"))
    assert fragments
    for path in fragments:
        data = yaml.safe_load(path.read_text())
        assert isinstance(data, dict) and data and set(data) <= sections, (path.name, sorted(sections))
        for section, entries in data.items():
            if section == prelude:
                assert isinstance(entries, str) and entries, path.name
            else:
                assert isinstance(entries, list) and all(isinstance(e, str) and e for e in entries), path.name


def test_the_collection_holds_roles_plugins_and_metadata_only(installed: Installed) -> None:
    with tarfile.open(installed.tarball) as tar:
        names = tar.getnames()
    assert {name.split("/", 1)[0] for name in names} <= COLLECTION_TOP, sorted(names)[:20]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert {n.split("/")[1] for n in names if n.startswith("roles/") and n.count("/") >= 2} == set(
        p.name for p in (REPO / "roles").iterdir() if p.is_dir()
    )
    for plugin in ("plugins/filter/kvbench_plan_filters.py", "plugins/filter/vllm_metrics.py"):
        assert plugin in names
    assert "plugins/modules/kvbench_files.py" in names
    assert "meta/runtime.yml" in names

    # Ansible finds kvbench.harness in the temporary path, and only there.
    listed = installed.run("ansible-galaxy", "collection", "list", "kvbench.harness", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [Path(p) for p in json.loads(listed.stdout)] == [installed.collections / "ansible_collections"]


def entry_points(role: str) -> dict[str, list[str]]:
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return {name: sorted(spec.get("options") or {}) for name, spec in specs["argument_specs"].items()}


def test_ansible_doc_documents_every_role(installed: Installed) -> None:
    doc = installed.run("ansible-doc", "-t", "role", *(f"kvbench.harness.{role}" for role in ROLES))
    assert doc.returncode == 0, doc.stderr[-3000:]
    assert "[WARNING]" not in doc.stderr, doc.stderr[-3000:]
    # Names come as *name* with ANSIBLE_NOCOLOR.
    sections = dict(re.findall(r"^> ROLE: \*?kvbench\.harness\.(\w+)\*? \(([^)]*)\)", doc.stdout, re.M))
    assert sorted(sections) == ROLES
    assert {Path(path) for path in sections.values()} == {installed.root}
    by_role = dict(zip(re.findall(r"^> ROLE: \*?kvbench\.harness\.(\w+)", doc.stdout, re.M),
                       re.split(r"^> ROLE: .*$", doc.stdout, flags=re.M)[1:], strict=True))  # fmt: skip
    for role in ROLES:
        text = by_role[role]
        for entry, options in entry_points(role).items():
            assert re.search(rf"^ENTRY POINT: \*?{entry}\*? - ", text, re.M), f"{role}: entry point {entry}"
            missing = [o for o in options if not re.search(rf"^\s*[-=] \*?{re.escape(o)}\b", text, re.M)]
            assert missing == [], f"{role}.{entry}: options not documented: {missing}"

    module = installed.run("ansible-doc", "-t", "module", "kvbench.harness.kvbench_files")
    assert module.returncode == 0, module.stderr[-3000:]
    assert "redact" in module.stdout


def test_ansible_lint_passes_on_the_installed_collection(installed: Installed) -> None:
    lint = installed.run(
        "ansible-lint", "--offline", "--profile", "production", "-q", cwd=installed.root, timeout=900
    )
    assert lint.returncode == 0, (lint.stdout + lint.stderr)[-6000:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.roles
def test_kv_store_and_pcp_by_fqcn_outside_the_repository(installed: Installed, tmp_path: Path) -> None:
    """An ops team's playbook: Valkey through kvbench.harness.kv_store and pmcd + pmlogger through
    kvbench.harness.pcp, the collection's filters and module by FQCN; the services answer; then they stop."""
    port, tag = free_port(), secrets.token_hex(3)
    services = tmp_path / "services"
    password_file = tmp_path / "secrets" / "valkey"
    archive = tmp_path / "archive" / "pcp"
    extra = {
        "ansible_python_interpreter": sys.executable,
        "kv_store_port": port,
        "kv_store_state_dir": str(tmp_path / "valkey"),
        "kv_store_password_file": str(password_file),
        "kv_store_instance_name": f"kvbench-valkey-collection-{tag}",
        "kv_store_ready_timeout_s": 20,
        "pcp_state_dir": str(tmp_path / "pcp"),
        "pcp_logger_archive": str(archive),
        "pcp_logger_instance_name": f"kvbench-pmlogger-collection-{tag}",
        "pcp_logger_interval_s": 1,
        "pcp_logger_metrics": [{"name": "mem.util.free", "optional": False}],
        "service_unit_dir": str(services),
    }
    # The playbook runs from the temporary working directory, as a file of the user's own.
    playbook = installed.workdir / f"standalone-{tag}.yml"
    playbook.write_text(PLAYBOOK.read_text())

    def play(phase: str, **more: object) -> subprocess.CompletedProcess:
        vars_file = tmp_path / f"vars-{phase}.json"
        vars_file.write_text(json.dumps({**extra, "phase": phase, **more}))
        return installed.run(
            "ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"@{vars_file}", str(playbook)
        )

    stopped = False
    try:
        result, secret = tmp_path / "start.json", tmp_path / "note.txt"
        start = play("start", result_file=str(result), secret_file=str(secret))
        assert start.returncode == 0, (start.stdout + start.stderr)[-6000:]

        # Valkey answers on the port, with the password the role generated, and only with it.
        env = {k: v for k, v in os.environ.items() if k not in ("REDISCLI_AUTH", "VALKEYCLI_AUTH")}
        cli = ["/usr/bin/valkey-cli", "-h", "127.0.0.1", "-p", str(port)]

        def valkey(*args: str, auth: bool = True) -> str:
            auth_env = {"REDISCLI_AUTH": password_file.read_text().strip()} if auth else {}
            proc = subprocess.run(
                [*cli, *args], env={**env, **auth_env}, capture_output=True, text=True, timeout=30
            )
            return (proc.stdout + proc.stderr).strip()

        assert "NOAUTH" in valkey("PING", auth=False)
        assert valkey("PING") == "PONG"
        assert "server_name:valkey" in valkey("INFO", "server")

        # pmcd answers, and pmlogger is writing the archive.
        pmcd = subprocess.run(["pminfo", "-f", "pmcd.version"], capture_output=True, text=True, timeout=60)
        assert pmcd.returncode == 0 and "value" in pmcd.stdout, pmcd.stdout + pmcd.stderr
        label = subprocess.run(["pmdumplog", "-L", str(archive)], capture_output=True, text=True, timeout=60)
        assert label.returncode == 0, label.stdout + label.stderr

        facts = json.loads(result.read_text())
        assert facts["pcp_logger_logged"] == ["mem.util.free"]
        # The collection's filters (kvbench.plan through the Python requirement) and module, by FQCN.
        assert facts["csv_list"] == ["valkey", "redis"]
        assert facts["counters"]["prefix_cache_hits"] == 42
        assert secret.read_text() == "token=<redacted>\n"

        result = tmp_path / "stop.json"
        stop = play("stop", result_file=str(result))
        stopped = stop.returncode == 0
        assert stopped, (stop.stdout + stop.stderr)[-6000:]
        assert not port_open(port)
        check = json.loads(result.read_text())["pcp_archive_check"]
        assert check["metrics_present"] == ["mem.util.free"]
        assert check["metrics_missing"] == []
    finally:
        # Whatever a failed run left running: stop through the roles, then kill what the pid files name.
        if not stopped:
            with contextlib.suppress(Exception):
                play("stop", pcp_logger_fail_on_missing=False)
        for pidfile in services.glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError, FileNotFoundError):
                pid = int(pidfile.read_text().split()[0])
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
