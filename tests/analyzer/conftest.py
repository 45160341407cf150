"""Fixtures of the analyzer tests: result trees built from real GuideLLM files, and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from analyzer_fixtures import Level, write_original_point
from click.testing import CliRunner
from published_table import PUBLISHED, level_values, solve_peaks

from kvbench.cli import main


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    out: Path

    def csv(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.out / name)


@pytest.fixture
def run_analyze(tmp_path: Path) -> Callable[..., Run]:
    """Run `kvbench analyze ARGS --out <tmp>/out` in-process (one reading process unless `jobs` says
    otherwise; figures only when asked, they take most of the time); returns exit code, streams, out dir."""

    def _run(*args: str | Path, out: Path | None = None, figures: bool = False, jobs: int = 1) -> Run:
        target = out or tmp_path / "out"
        argv = ["analyze", *map(str, args), "--out", str(target), "--jobs", str(jobs)]
        if not figures:
            argv.append("--no-figures")
        result = CliRunner().invoke(main, argv)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr, target)

    return _run


@pytest.fixture(scope="session")
def published_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The original evaluation's tree (4 models x 7 scenarios x 8 levels) whose peaks are the published
    numbers: one directory per point with guidellm-results.json.zst and benchmark-config.txt."""
    root = tmp_path_factory.mktemp("original") / "results"
    peaks = solve_peaks()
    for model, scenario, _, optimal, _ in PUBLISHED:
        for concurrency, value in level_values(peaks[(model, scenario)], optimal).items():
            level = Level(
                concurrency, value, ttft_ms=50.0 + concurrency * 3.0, tpot_ms=20.0 + concurrency / 20
            )
            write_original_point(root, model, scenario, level)
    return root
