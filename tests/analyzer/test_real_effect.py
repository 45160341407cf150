"""A real effect, measured by kvbench's own sweep: the demo's vLLM (CPU build, tiny model) with its prefix
cache on (`no-offload`) and off (the `no-prefix-cache` control), 4 repetitions of 2 levels, 2,048-token
shared prefixes. The committed tree came from:

    ansible-playbook sweep.yml -i inventory/local -e scenarios=no-offload,no-prefix-cache -e concurrency=1,4
      -e duration_s=10 -e prefix_tokens=2048 -e prompt_tokens=64 -e output_tokens=16 -e turns=2
      -e repetitions=4

(GuideLLM's per-request samples are dropped from the committed reports to keep the file small.)
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import zstandard

from kvbench.stats import welch_log_ratio
from tests.records.builders import analyze

FIXTURE = Path(__file__).parent / "data" / "prefix-effect-run.tar.zst"
CONTROL = "no-prefix-cache"


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix-effect")
    with (
        FIXTURE.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        tar.extractall(root, filter="data")
    (run_dir,) = [path.parent for path in root.glob("*/manifest.json")]
    result = analyze(run_dir, out=root / "out")
    assert result.exit_code == 0, result.stderr
    return result


def test_the_prefix_cache_effect_is_significant_at_every_level(analysis) -> None:
    deltas = analysis.csv("delta_vs_baseline.csv")
    control = deltas[deltas["scenario"] == CONTROL]
    assert sorted(control["concurrency"].astype(str)) == ["1", "4", "peak"]
    assert set(control["n"]) == set(control["n_baseline"]) == {4}
    assert control["significant"].all(), control.to_string()
    # Prefilling every 2,048-token prefix again costs throughput: the whole interval lies below zero.
    assert (control["ci_high_pct"] < 0).all(), control.to_string()


def test_the_control_proves_its_cache_was_off(analysis) -> None:
    validity = analysis.csv("validity.csv")
    control = validity[validity["scenario"] == CONTROL]
    assert len(control) == 8
    assert set(control["prefix_cache_off"]) == {"pass"}
    assert set(control["cold_cache"]) == {"skip"}  # no cache to find empty
    assert set(validity[validity["scenario"] == "no-offload"]["prefix_cache_off"]) == {"skip"}


def test_repetitions_of_one_configuration_split_in_two_are_not_different(analysis) -> None:
    rows = analysis.csv("complete_metrics.csv")
    baseline = rows[(rows["scenario"] == "no-offload") & (rows["status"] == "ok")]
    for concurrency, level in baseline.groupby("concurrency"):
        first = level[level["repetition"] <= 2]["output_tok_s_successful"].to_numpy(dtype=float)
        second = level[level["repetition"] > 2]["output_tok_s_successful"].to_numpy(dtype=float)
        assert first.size == second.size == 2
        delta = welch_log_ratio(second, first)
        assert delta.p_value > 0.05, (concurrency, delta)
        assert delta.ci_low_pct <= 0.0 <= delta.ci_high_pct, (concurrency, delta)
        assert np.isfinite(delta.delta_pct)
