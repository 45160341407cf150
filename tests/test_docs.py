"""Docs name only what exists: every repository path, `-e` variable, make target and kvbench command that
README.md and docs/ name in backticks is checked against the tree."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kvbench.cli import main as kvbench_cli

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "analyzer" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP_DIRS = (
    "analyzer/",
    "playbooks/",
    "roles/",
    "group_vars/",
    "inventory/",
    "plugins/",
    "tests/",
    "benchmarks/",
    "docs/",
    ".ci/",
)
SPANS = re.compile(r"`([^`\n]+)`")
# A path the docs name as an example or a pattern, not as a file of the tree.
PATTERN = re.compile(r"[<>*{}$]|\.\.\.")


def spans(path: Path) -> list[str]:
    return SPANS.findall(path.read_text(encoding="utf-8"))


def repo_paths(doc: Path) -> list[str]:
    found = []
    for span in spans(doc):
        for word in span.split():
            word = word.strip("(),;:'\"")
            named = word.startswith(TOP_DIRS) or word in (
                "sweep.yml",
                "ansible.cfg",
                "pyproject.toml",
                "Makefile",
            )
            if named and not PATTERN.search(word):
                found.append(word)
    return found


@cache
def defined_variables() -> set[str]:
    names: set[str] = set()
    files = [*(REPO / "group_vars" / "all").glob("*.yml"), *(REPO / "roles").glob("*/defaults/main.yml")]
    for path in files:
        names.update((yaml.safe_load(path.read_text()) or {}).keys())
    for path in (REPO / "playbooks").glob("*.yml"):
        for play in yaml.safe_load(path.read_text()) or []:
            names.update((play.get("vars") or {}).keys())
    return names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_paths_exist(doc: Path):
    missing = [p for p in repo_paths(doc) if not (REPO / p.rstrip("/")).exists()]
    assert missing == [], f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_variables_exist(doc: Path):
    text = doc.read_text(encoding="utf-8")
    named = set(re.findall(r"-e (?:'?)([a-z_][a-z0-9_]*)=", text))
    if doc.name == "README.md" and doc.parent == REPO:
        # The table of variables that matter: `name` in its first column.
        named |= {
            name
            for row in re.findall(r"^\| (`[^|]+`(?:, `[^|]+`)*(?: / `[^|]+`)?) \|", text, flags=re.M)
            for name in re.findall(r"`([a-z_][a-z0-9_]*)`", row)
        }
    missing = sorted(named - defined_variables())
    assert missing == [], f"{doc.name} names variables nothing defines: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_commands_exist(doc: Path):
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.M))
    commands = set(kvbench_cli.commands)
    problems = []
    for span in spans(doc):
        for target in re.findall(r"\bmake ([a-z][a-z0-9-]*)", span):
            if target not in targets:
                problems.append(f"make {target}")
        for command in re.findall(r"\bkvbench ([a-z][a-z-]*)", span):
            if command not in commands:
                problems.append(f"kvbench {command}")
    assert problems == [], f"{doc.name} names commands that do not exist: {problems}"


def test_every_kvbench_command_answers_help():
    runner = CliRunner()
    for name in kvbench_cli.commands:
        result = runner.invoke(kvbench_cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
