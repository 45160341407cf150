"""`kvbench adapt`: the cells of a run whose interval is still wider than the target, and the repetition
each should run next; the same statistics as the analyzer (kvbench.stats.needs_more)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from noisy_runs import Noise, noisy_run

from tests.records.builders import IN_PROCESS, Caller, kubernetes_cuda_request

LEVELS = (1, 4, 16)


@pytest.fixture(scope="module")
def two_repetitions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plan of up to 5 repetitions of which 2 ran: lmcache-redis varies by 10 %, the others by 0.05 %;
    llm-d-valkey ran once, and native-offload never engaged (invalid, so it has no usable point)."""
    noise = Noise(
        seed=5,
        cv=0.0005,
        cv_of={"lmcache-redis": 0.10},
        repetitions_of={"no-offload": 2, "native-offload": 2, "lmcache-redis": 2, "llm-d-valkey": 1},
        zero_counters=frozenset({"native-offload"}),
    )
    results = tmp_path_factory.mktemp("adapt")
    return noisy_run(results, kubernetes_cuda_request(repetitions=5, run_id="adaptive"), noise)


def adapt(run_dir: Path, *options: str, kvbench: Caller = IN_PROCESS) -> dict:
    result = kvbench(["adapt", "--run-dir", str(run_dir), *options])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_adapt_lists_the_cells_still_too_wide(two_repetitions: Path) -> None:
    answer = adapt(two_repetitions, "--target-ci-pct", "2", "--max-repetitions", "5")
    assert answer["metric"] == "output_tok_s_successful"
    assert answer["runs"] == ["adaptive"]
    wider = {(w["scenario"], w["concurrency"]): w for w in answer["wider"]}
    assert set(wider) == {(s, c) for s in ("lmcache-redis", "llm-d-valkey") for c in LEVELS}
    for concurrency in LEVELS:
        assert wider[("lmcache-redis", concurrency)]["n"] == 2
        assert wider[("lmcache-redis", concurrency)]["ci_pct"] > 2.0
        assert wider[("llm-d-valkey", concurrency)]["n"] == 1
        assert wider[("llm-d-valkey", concurrency)]["ci_pct"] is None
    assert answer["next_repetition"] == {
        **{f"lmcache-redis/{c}": 3 for c in LEVELS},
        **{f"llm-d-valkey/{c}": 2 for c in LEVELS},
    }
    assert answer["bad_inputs"] == []


def test_adapt_respects_the_cap_and_the_target(two_repetitions: Path) -> None:
    capped = adapt(two_repetitions, "--target-ci-pct", "2", "--max-repetitions", "2")
    assert set(capped["next_repetition"]) == {f"llm-d-valkey/{c}" for c in LEVELS}
    loose = adapt(two_repetitions, "--target-ci-pct", "1000", "--max-repetitions", "5")
    assert set(loose["next_repetition"]) == {f"llm-d-valkey/{c}" for c in LEVELS}  # no interval at n = 1


def test_adapt_as_the_sweep_calls_it(two_repetitions: Path) -> None:
    """`python -m kvbench adapt` in a process of its own, as the harness runs it."""
    answer = adapt(
        two_repetitions,
        "--target-ci-pct",
        "2",
        "--max-repetitions",
        "5",
        "--metric",
        "output_tokens_per_s",
        kvbench=Caller(subprocess_run=True),
    )
    assert len(answer["wider"]) == 6


def test_adapt_refuses_an_unknown_metric(two_repetitions: Path) -> None:
    result = IN_PROCESS(
        [
            "adapt",
            "--run-dir",
            str(two_repetitions),
            "--target-ci-pct",
            "2",
            "--max-repetitions",
            "5",
            "--metric",
            "goodput",
        ]
    )
    assert result.exit_code == 2
    assert "'goodput' is not a metric of the table" in result.stderr
