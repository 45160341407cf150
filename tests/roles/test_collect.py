"""The collect role, driven by a real ansible-playbook run on this machine (connection local)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.conftest import run_with_vars

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
PLAYBOOK = REPO / "tests" / "roles" / "playbooks" / "collect.yml"

pytestmark = pytest.mark.roles


def run_collect(
    tmp_path: Path, extra_vars: dict[str, Any], hosts: str = "localhost,"
) -> subprocess.CompletedProcess:
    return run_with_vars(PLAYBOOK, extra_vars, tmp_path, inventory=hosts, timeout=300)


def sums_lines(run_dir: Path) -> list[str]:
    return (run_dir / "SHA256SUMS").read_text().splitlines()


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    src = tmp_path / "host"
    src.mkdir()
    (src / "report.json").write_text(json.dumps({"benchmarks": list(range(20000))}))
    (src / "console.log").write_text("line one\nline two\n")
    (src / "before.prom").write_text("vllm:prefix_cache_queries_total 0\n")
    return src


def test_fetch_compress_checksum_and_idempotent(tmp_path: Path, sources: Path) -> None:
    run_dir = tmp_path / "results" / "run1"
    point = run_dir / "no-offload" / "c0004-r1"
    extra = {
        "collect_items": [
            {"src": str(sources / "report.json"), "dest": "guidellm.json", "compress": True},
            {"src": str(sources / "console.log"), "dest": "guidellm.log"},
            {"src": str(sources / "before.prom"), "dest": "metrics/localhost-before.prom", "compress": False},
            {"src": str(sources / "absent.prom"), "dest": "metrics/localhost-after.prom", "optional": True},
        ],
        "collect_dest": str(point),
        "collect_run_dir": str(run_dir),
        "result_file": str(tmp_path / "result.json"),
    }
    first = run_collect(tmp_path, extra)
    assert first.returncode == 0, first.stdout[-3000:]
    facts = json.loads((tmp_path / "result.json").read_text())

    # The compressed report decompresses to the original bytes.
    packed = point / "guidellm.json.zst"
    original = (sources / "report.json").read_bytes()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(packed.read_bytes()) == original
    assert packed.stat().st_size < len(original)
    assert (point / "guidellm.log").read_bytes() == (sources / "console.log").read_bytes()
    assert (point / "metrics" / "localhost-before.prom").is_file()

    # The optional missing file is recorded, not fatal, and not invented.
    assert [m["src"] for m in facts["collect_missing"]] == [str(sources / "absent.prom")]
    assert not (point / "metrics" / "localhost-after.prom").exists()
    assert {f["path"] for f in facts["collect_files"]} == {
        "no-offload/c0004-r1/guidellm.json.zst",
        "no-offload/c0004-r1/guidellm.log",
        "no-offload/c0004-r1/metrics/localhost-before.prom",
    }

    # SHA256SUMS verifies with sha256sum itself, from the run directory.
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=run_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(sums_lines(run_dir)) == 3

    # No temp files are left behind.
    leftovers = [p.name for p in run_dir.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []

    # Second run: nothing changes, no duplicate lines.
    before = (run_dir / "SHA256SUMS").read_text()
    second = run_collect(tmp_path, extra)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "changed=0" in second.stdout
    assert (run_dir / "SHA256SUMS").read_text() == before

    # A changed source is fetched again and its line replaced, still one line per path.
    (sources / "console.log").write_text("line one\nline two\nline three\n")
    third = run_collect(tmp_path, extra)
    assert third.returncode == 0, third.stdout[-3000:]
    lines = sums_lines(run_dir)
    paths = [line.split("  ", 1)[1] for line in lines]
    assert len(paths) == len(set(paths)) == 3
    assert (point / "guidellm.log").read_text().endswith("line three\n")
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=run_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_missing_required_file_fails_naming_it(tmp_path: Path, sources: Path) -> None:
    run_dir = tmp_path / "results" / "run2"
    missing = sources / "server.log"
    result = run_collect(
        tmp_path,
        {
            "collect_items": [
                {"src": str(sources / "console.log"), "dest": "guidellm.log"},
                {"src": str(missing), "dest": "server-localhost.log"},
            ],
            "collect_dest": str(run_dir / "s" / "c0001-r1"),
            "collect_run_dir": str(run_dir),
            "result_file": str(tmp_path / "result.json"),
        },
    )
    assert result.returncode != 0
    assert f"required file(s) missing: {missing}" in result.stdout
    assert not (run_dir / "SHA256SUMS").exists()


def test_damaged_sums_file_is_named_without_traceback(tmp_path: Path, sources: Path) -> None:
    run_dir = tmp_path / "results" / "run3"
    run_dir.mkdir(parents=True)
    (run_dir / "SHA256SUMS").write_text("this is not a checksum line\n")
    result = run_collect(
        tmp_path,
        {
            "collect_items": [{"src": str(sources / "console.log"), "dest": "guidellm.log"}],
            "collect_dest": str(run_dir / "s" / "c0001-r1"),
            "collect_run_dir": str(run_dir),
            "result_file": str(tmp_path / "result.json"),
        },
    )
    assert result.returncode != 0
    assert f"{run_dir / 'SHA256SUMS'}:1: not a sha256sum line" in result.stdout
    assert "Traceback" not in result.stdout


def test_two_hosts_at_once_keep_both_lines(tmp_path: Path, sources: Path) -> None:
    run_dir = tmp_path / "results" / "run4"
    result = run_collect(
        tmp_path,
        {
            "collect_items": [
                {
                    "src": str(sources / "report.json"),
                    "dest": "server-{{ inventory_hostname }}.log",
                    "compress": True,
                }
            ],
            "collect_dest": str(run_dir / "scenario"),
            "collect_run_dir": str(run_dir),
            "result_file": str(tmp_path / "result-{{ inventory_hostname }}.json"),
        },
        hosts="gpu1,gpu2,gpu3,",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    paths = sorted(line.split("  ", 1)[1] for line in sums_lines(run_dir))
    assert paths == [f"scenario/server-gpu{i}.log.zst" for i in (1, 2, 3)]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=run_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
