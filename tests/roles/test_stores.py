"""The kv_store role, both flavours (redis, valkey), driven by real ansible-playbook runs against real
servers on this host.

Each test uses its own free port, state directory, service_unit directory and instance name, and stops
what it started in a finalizer, also when an assertion fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.roles

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass(frozen=True)
class Store:
    flavour: str  # kv_store_flavour; also the name of the config, log and pid files
    server: str
    cli: str
    info_marker: str  # a line of INFO server that only this server prints
    default_port: int


STORES = {
    "redis": Store("redis", "/usr/bin/redis-server", "/usr/bin/redis-cli", "redis_version:", 6379),
    "valkey": Store("valkey", "/usr/bin/valkey-server", "/usr/bin/valkey-cli", "server_name:valkey", 6380),
}
MiB = 1024 * 1024


@dataclass
class Run:
    rc: int
    output: str

    @property
    def recap(self) -> dict[str, int]:
        found = RECAP.findall(self.output)
        assert found, f"no PLAY RECAP in the output:\n{self.output[-3000:]}"
        ok, changed, unreachable, failed = (int(n) for n in found[-1])
        return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}


def changed_tasks(output: str) -> list[str]:
    """The TASK headers under which a 'changed:' line appears (for assertion messages)."""
    names, current = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: ["):
            names.append(current)
    return names


def run_playbook(playbook: str, extra: dict[str, object], scratch: Path) -> Run:
    """ansible-playbook -v with the extra vars from a 0600 file (the password stays off argv)."""
    scratch.mkdir(parents=True, exist_ok=True)
    vars_file = scratch / f"extra-{secrets.token_hex(4)}.json"
    vars_file.touch(mode=0o600)
    vars_file.write_text(json.dumps(extra))
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-v", str(PLAYBOOKS / playbook), "-e", f"@{vars_file}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    vars_file.unlink()
    return Run(proc.returncode, proc.stdout + proc.stderr)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def process_alive(pid: int) -> bool:
    """True while /proc/<pid> exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Instance:
    store: Store
    tmp: Path
    port: int
    password: str | None  # None: not passed, the role generates one into password_file
    token: str  # the random part of the password: what must never show up in output
    name: str
    outputs: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def service_dir(self) -> Path:
        return self.tmp / "services"

    @property
    def password_file(self) -> Path:
        return self.tmp / "secrets" / self.store.flavour

    @property
    def config(self) -> Path:
        return self.state_dir / f"{self.store.flavour}.conf"

    def extra(self, entries: list[str], **more: object) -> dict[str, object]:
        password = {} if self.password is None else {"kv_store_password": self.password}
        return {
            "entries": entries,
            "kv_store_flavour": self.store.flavour,
            "kv_store_port": self.port,
            **password,
            "kv_store_password_file": str(self.password_file),
            "kv_store_state_dir": str(self.state_dir),
            "kv_store_instance_name": self.name,
            "kv_store_ready_timeout_s": 20,
            "service_unit_dir": str(self.service_dir),
            **more,
        }

    def play(self, entries: list[str], **more: object) -> Run:
        run = run_playbook("kv_store_entry.yml", self.extra(entries, **more), self.tmp)
        self.outputs.append(run.output)
        return run

    def cli(self, *args: str, auth: bool = True) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("REDISCLI_AUTH", "VALKEYCLI_AUTH")}
        if auth and self.password:
            env["REDISCLI_AUTH"] = self.password
        proc = subprocess.run(
            [self.store.cli, "-h", "127.0.0.1", "-p", str(self.port), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return (proc.stdout + proc.stderr).strip()

    def server_pid(self) -> int:
        info = self.cli("INFO", "server")
        found = re.search(r"^process_id:(\d+)", info, re.M)
        assert found, f"no process_id in INFO server: {info[:500]}"
        pid = int(found.group(1))
        self.pids.add(pid)
        return pid


def _cleanup(inst: Instance) -> None:
    """Stop through the role while service_unit's pid file names a live process; then kill only the
    pids this test saw, should the role's stop have failed."""
    pidfile = inst.service_dir / f"{inst.name}.pid"
    with contextlib.suppress(FileNotFoundError, ValueError):
        inst.pids.add(int(pidfile.read_text().split()[0]))
    if any(process_alive(pid) for pid in inst.pids):
        with contextlib.suppress(Exception):
            inst.play(["stop"])
    for pid in inst.pids:
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def installed(store: Store) -> bool:
    return Path(store.server).exists() and Path(store.cli).exists()


@pytest.fixture(scope="session")
def install_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Store], None]:
    """Installs a missing server the way the sweep does, by the role's own main (then stop) on a free port:
    on a fresh machine the install path runs for real (valkey from Debian 12's backports included) instead of
    the tests skipping. Once per flavour and session."""
    attempts: dict[str, Run] = {}

    def install(store: Store) -> None:
        if installed(store):
            return
        if os.geteuid() != 0:
            pytest.skip(f"{store.server} is not installed, and installing it needs root")
        if store.flavour not in attempts:
            tmp = tmp_path_factory.mktemp(f"install-{store.flavour}")
            name = f"kvbench-{store.flavour}-install-{secrets.token_hex(3)}"
            extra = {
                "entries": ["main", "stop"],
                "kv_store_flavour": store.flavour,
                "kv_store_port": free_port(),
                "kv_store_password_file": str(tmp / "secrets" / store.flavour),
                "kv_store_state_dir": str(tmp / "state"),
                "kv_store_instance_name": name,
                "kv_store_ready_timeout_s": 20,
                "service_unit_dir": str(tmp / "services"),
            }
            attempts[store.flavour] = run_playbook("kv_store_entry.yml", extra, tmp)
            # Still running only where main started the server and stop then failed.
            kill_from_pidfile(tmp / "services" / f"{name}.pid")
        run = attempts[store.flavour]
        assert run.rc == 0 and installed(store), (
            f"the kv_store role did not install {store.flavour}:\n{run.output[-4000:]}"
        )

    return install


def kill_from_pidfile(pidfile: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(pidfile.read_text().split()[0])
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(params=sorted(STORES))
def instance(
    request: pytest.FixtureRequest, tmp_path: Path, install_store: Callable[[Store], None]
) -> Iterator[Instance]:
    store = STORES[request.param]
    install_store(store)
    token = secrets.token_hex(12)
    inst = Instance(
        store=store,
        tmp=tmp_path,
        port=free_port(),
        # Quotes, a backslash and a space exercise the config quoting.
        password=f'kv "{token}" \\x',
        token=token,
        name=f"kvbench-{store.flavour}-test-{secrets.token_hex(3)}",
    )
    yield inst
    _cleanup(inst)


def server_version(store: Store) -> str:
    """The version the server binary reports ("Redis server v=7.0.15 ..." / "Valkey server v=8.0.2 ...")."""
    out = subprocess.run([store.server, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"\bv=([0-9][^ ]*)", out)
    assert found, out
    return found.group(1)


def config_value(inst: Instance, key: str) -> str:
    return inst.cli("CONFIG", "GET", key).splitlines()[-1]


def files_holding(inst: Instance, needle: str) -> list[Path]:
    return [
        path
        for root in (inst.state_dir, inst.service_dir)
        for path in root.rglob("*")
        if path.is_file() and needle.encode() in path.read_bytes()
    ]


def test_store_lifecycle(instance: Instance) -> None:
    inst = instance
    flavour = inst.store.flavour

    result = inst.tmp / "facts.json"
    first = inst.play(["main"], result_file=str(result))
    assert first.rc == 0, first.output[-4000:]
    assert first.recap["failed"] == 0

    # Authentication is enforced, and the password works.
    assert "NOAUTH" in inst.cli("PING", auth=False)
    assert inst.cli("PING") == "PONG"
    pid = inst.server_pid()
    info = inst.cli("INFO", "server")
    assert inst.store.info_marker in info, info[:500]
    assert f"config_file:{inst.config}" in info
    if flavour == "valkey":
        version = subprocess.run(
            [inst.store.server, "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert version.lower().startswith("valkey server"), version

    # main records the version the running server reports, keyed by flavour.
    assert json.loads(result.read_text())["kv_store_version_running"] == {flavour: server_version(inst.store)}

    # No maxmemory unless asked for.
    assert config_value(inst, "maxmemory") == "0"

    # dbsize reports the keys as an int fact; flush empties the store (checked independently of the
    # role's own check) and reports a change.
    for key in ("a", "b", "c"):
        assert inst.cli("SET", f"kvbench:{key}", "1") == "OK"
    run = inst.play(["dbsize", "flush"], result_file=str(result))
    assert run.rc == 0, run.output[-4000:]
    facts = json.loads(result.read_text())
    assert facts["kv_store_dbsize"] == 3
    assert facts["dbsize_type"] == "int"
    assert inst.cli("DBSIZE") == "0"
    assert run.recap["changed"] >= 1

    # flush on an empty store changes nothing.
    empty = inst.play(["flush"])
    assert empty.rc == 0, empty.output[-4000:]
    assert empty.recap["changed"] == 0, changed_tasks(empty.output)

    # main again changes nothing and keeps the same process.
    again = inst.play(["main"])
    assert again.rc == 0, again.output[-4000:]
    assert again.recap["changed"] == 0, changed_tasks(again.output)
    assert inst.server_pid() == pid

    # A config change (maxmemory from the offload budget) restarts the server with the new setting.
    changed = inst.play(["main"], kv_store_maxmemory_bytes=64 * MiB)
    assert changed.rc == 0, changed.output[-4000:]
    assert changed.recap["changed"] >= 1
    new_pid = inst.server_pid()
    assert new_pid != pid
    assert not process_alive(pid)
    assert config_value(inst, "maxmemory") == str(64 * MiB)
    assert config_value(inst, "maxmemory-policy") == "allkeys-lru"

    # The password is in no ansible output and in no file but the 0600 config.
    for output in inst.outputs:
        assert inst.token not in output
    assert files_holding(inst, inst.token) == [inst.config]
    assert inst.config.stat().st_mode & 0o777 == 0o600

    # stop closes the port and ends the process.
    stop = inst.play(["stop"])
    assert stop.rc == 0, stop.output[-4000:]
    assert not port_open(inst.port)
    assert not process_alive(new_pid)
    assert inst.token not in stop.output


def test_generated_password(instance: Instance) -> None:
    """Without kv_store_password the role generates one once into a 0600 file on the controller and
    keeps using it."""
    inst = instance
    inst.password = None
    first = inst.play(["main"])
    assert first.rc == 0, first.output[-4000:]

    secret = inst.password_file
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.parent.stat().st_mode & 0o777 == 0o700
    generated = secret.read_text().strip()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", generated), "unexpected password format"
    inst.password, inst.token = generated, generated

    assert "NOAUTH" in inst.cli("PING", auth=False)
    assert inst.cli("PING") == "PONG"

    # The second run reads the same file: nothing changes, the password stays.
    inst.password = None
    again = inst.play(["main"])
    inst.password = generated
    assert again.rc == 0, again.output[-4000:]
    assert again.recap["changed"] == 0, changed_tasks(again.output)
    assert secret.read_text().strip() == generated
    assert inst.cli("PING") == "PONG"

    for output in inst.outputs:
        assert generated not in output
    assert files_holding(inst, generated) == [inst.config]


def test_foreign_server_on_the_port_is_refused(instance: Instance) -> None:
    """A server that is not ours on the port (e.g. the distro's instance) answers PING too: main must fail."""
    inst = instance
    data = inst.tmp / "foreign"
    data.mkdir()
    foreign = subprocess.Popen(
        [
            inst.store.server,
            "--port",
            str(inst.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_open(inst.port):
            assert foreign.poll() is None, "the foreign server exited"
            assert time.monotonic() < deadline, "the foreign server did not open its port"
            time.sleep(0.1)
        inst.password = ""  # the foreign server has none; PING then succeeds against it
        run = inst.play(["main"])
        # Either service_unit sees our server exit at once (port taken), or the role's identity check
        # finds the foreign server behind the port.
        assert run.rc != 0
        assert ("exited at start" in run.output) or ("is served by another server" in run.output), run.output[
            -3000:
        ]
        assert "Address already in use" in (inst.state_dir / f"{inst.store.flavour}.log").read_text()
        assert foreign.poll() is None
    finally:
        foreign.terminate()
        foreign.wait(timeout=30)


def _deb822_stanza_for(text: str, release: str) -> dict[str, str]:
    for stanza in re.split(r"\n\s*\n", text):
        fields = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in stanza.splitlines() if ":" in line)
            if not k.startswith("#")
        }
        if "deb" in fields.get("types", "").split() and release in fields.get("suites", "").split():
            return fields
    raise AssertionError(f"no deb stanza for {release}")


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="Debian family only")
def test_backports_source_is_derived_from_the_hosts_source(tmp_path: Path) -> None:
    release = subprocess.run(
        ["sh", "-c", ". /etc/os-release && echo $VERSION_CODENAME"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    host_sources = Path("/etc/apt/sources.list.d/debian.sources")
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        f"# deb http://commented.invalid/debian {release} main\n"
        f"deb-src http://src.invalid/debian {release} main\n"
        f"deb http://updates.invalid/debian {release}-updates main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/test.gpg] "
        f"http://mirror.invalid/debian {release} main contrib\n"
    )
    other_suite = tmp_path / "other.sources"
    other_suite.write_text(
        "Types: deb\nURIs: http://x.invalid/debian\nSuites: some-other\nComponents: main\n"
    )
    cases = {"one_line": [str(tmp_path / "missing.sources"), str(one_line)], "none": [str(other_suite)]}
    if host_sources.exists():
        cases["host"] = [str(host_sources)]
    result = tmp_path / "derived.json"
    run = run_playbook(
        "kv_store_backports_derive.yml", {"cases": cases, "result_file": str(result)}, tmp_path
    )
    assert run.rc == 0, run.output[-4000:]
    derived = json.loads(result.read_text())["derived"]

    # One-line format with options; comments, deb-src and other suites are ignored.
    assert derived["one_line"] == {
        "uris": "http://mirror.invalid/debian",
        "components": "main contrib",
        "signed_by": "/usr/share/keyrings/test.gpg",
        "file": str(one_line),
    }
    # Nothing to derive from: a clear failure.
    assert derived["none"] == {}
    assert f"found no enabled 'deb' source for suite {release}" in run.output
    # The host's own deb822 source: same URI, components and keyring; no host name is written in.
    if "host" in cases:
        expected = _deb822_stanza_for(host_sources.read_text(), release)
        assert derived["host"]["uris"] == expected["uris"]
        assert derived["host"]["components"] == expected["components"]
        assert derived["host"]["signed_by"] == expected.get("signed-by", "")


def test_defaults_per_flavour(tmp_path: Path) -> None:
    """Usable alone: each flavour has its own port (so both run on one host), instance, state dir and
    password file, and no maxmemory."""
    result = tmp_path / "defaults.json"
    run = run_playbook("kv_store_defaults.yml", {"result_file": str(result)}, tmp_path)
    assert run.rc == 0, run.output[-4000:]
    defaults = json.loads(result.read_text())
    home = Path(os.environ["HOME"])
    for flavour, store in STORES.items():
        assert defaults[flavour] == {
            "port": store.default_port,
            "instance_name": f"kvbench-{flavour}",
            "state_dir": f"/var/lib/kvbench/{flavour}",
            "password_file": str(home / ".kvbench" / "secrets" / flavour),
            "maxmemory_bytes": 0,
        }


def test_both_flavours_in_one_play(tmp_path: Path, install_store: Callable[[Store], None]) -> None:
    """The sweep's pattern: include the role once per flavour in one play (flavour passed as include vars):
    each include gets its own defaults, and kv_store_version_running collects both versions."""
    for store in STORES.values():
        install_store(store)
    ports = {flavour: free_port() for flavour in STORES}
    instances = {flavour: f"kvbench-{flavour}-pair-{secrets.token_hex(3)}" for flavour in STORES}
    result = tmp_path / "pair.json"
    extra = {
        "ports": ports,
        "instances": instances,
        "state_root": str(tmp_path / "state"),
        "secrets_root": str(tmp_path / "secrets"),
        "service_unit_dir": str(tmp_path / "services"),
        "result_file": str(result),
    }
    try:
        run = run_playbook("kv_store_pair.yml", extra, tmp_path)
        assert run.rc == 0, run.output[-4000:]
        facts = json.loads(result.read_text())
        assert facts["kv_store_version_running"] == {f: server_version(s) for f, s in STORES.items()}
        for flavour in STORES:
            config = tmp_path / "state" / flavour / f"{flavour}.conf"
            assert f"port {ports[flavour]}\n" in config.read_text()
            assert not port_open(ports[flavour]), "stop left the port open"
            # One generated password per flavour.
            assert (tmp_path / "secrets" / flavour).stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "secrets" / "redis").read_text() != (tmp_path / "secrets" / "valkey").read_text()
    finally:
        for name in instances.values():
            kill_from_pidfile(tmp_path / "services" / f"{name}.pid")
