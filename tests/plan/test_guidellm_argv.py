"""kvbench.plan.guidellm: the GuideLLM argv of every dialect, its warnings, and the seed of real reports.

The last tests hand each argv to the real GuideLLM CLI (its click command and pydantic models, with the
benchmark itself replaced) in every GuideLLM venv they find: .work/state/venvs/guidellm-* and the venvs
listed in $KVBENCH_GUIDELLM_VENVS (os.pathsep-separated): the e2e group, after `make test` made the venvs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import zstandard

from kvbench.plan.guidellm import (
    SUPPORTED,
    GuideLLMError,
    PointArgs,
    build_argv,
    dialect,
    report_seed,
    turns_sent,
    warnings,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "analyzer" / "data"

POINT = PointArgs(
    executable="/opt/venv/bin/guidellm",
    target_url="http://127.0.0.1:8000/v1/",
    model="qwen",
    tokenizer="/srv/tokenizer",
    concurrency=4,
    duration_s=30,
    prompt_tokens=128,
    output_tokens=64,
    prefix_tokens=512,
    prefix_count=8,
    turns=2,
    seed=4889,
    output_path="/results/c0004-r1/guidellm.json",
)


def point(**changes: Any) -> PointArgs:
    return dataclasses.replace(POINT, **changes)


def options(argv: list[str], start: int) -> dict[str, list[str]]:
    """{option: [values...]} of argv[start:]; a flag maps to [""], `--x=y` to its value."""
    found: dict[str, list[str]] = {}
    rest = argv[start:]
    index = 0
    while index < len(rest):
        token = rest[index]
        assert token.startswith("--"), f"stray argument {token!r} in {rest}"
        if "=" in token:
            name, value = token.split("=", 1)
            index += 1
        elif index + 1 < len(rest) and not rest[index + 1].startswith("--"):
            name, value = token, rest[index + 1]
            index += 2
        else:
            name, value = token, ""
            index += 1
        found.setdefault(name, []).append(value)
    return found


# ---------------------------------------------------------------------------------------------------------
# dialect


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.5.0", "0.5"),
        ("0.5.3", "0.5"),
        ("0.5.4", "0.5"),
        ("0.6.0", "0.6"),
        ("0.6.1", "0.6"),
        ("0.7.0", "0.7"),
        ("0.7.4", "0.7"),
        ("0.8.0", "0.7"),
        ("0.8.1", "0.7"),
        (" 0.8.1 ", "0.7"),
        ("v0.8.1", "0.7"),
        ("0.8.2.dev7+g1234abc", "0.7"),
        ("0.8.1rc1", "0.7"),
        ("0.6", "0.6"),
    ],
)
def test_dialect(version, expected):
    assert dialect(version) == expected


@pytest.mark.parametrize("version", ["0.4.0", "0.9.0", "0.9.0rc1", "1.0.0", "", "latest", "0.8.x", "8"])
def test_unsupported_versions_name_the_valid_ranges(version):
    with pytest.raises(GuideLLMError) as caught:
        dialect(version)
    message = str(caught.value)
    assert repr(version) in message or version in message
    for supported in SUPPORTED:
        assert supported in message
    with pytest.raises(GuideLLMError):
        build_argv(version, POINT)


def test_supported_ranges_cover_the_dialects():
    assert SUPPORTED == (">=0.5,<0.6", ">=0.6,<0.7", ">=0.7,<0.9")


# ---------------------------------------------------------------------------------------------------------
# dialect 0.7 (0.7.x, 0.8.x): what roles/guidellm/tasks/run_point.yml builds for 0.8, prefix as a bucket


def test_run_dialect_argv_exact():
    argv = build_argv("0.8.1", point(warmup=0.1, cooldown=5, labels=(("run", "a=b"), ("scenario", "-x"))))
    assert all(isinstance(token, str) for token in argv)
    assert argv[:2] == ["/opt/venv/bin/guidellm", "run"]
    # the option order of the role's command line
    names = [token.split("=", 1)[0] for token in argv[2:] if token.startswith("--")]
    assert names == [
        "--backend",
        "--profile",
        "--constraint",
        "--data",
        "--tokenizer",
        "--seed",
        "--output",
        "--output",
        "--metrics",
        "--disable-console-interactive",
        "--label",
        "--label",
    ]
    found = options(argv, 2)
    flags = ("--label", "--disable-console-interactive")
    payload = {name: [json.loads(v) for v in values] for name, values in found.items() if name not in flags}
    assert payload["--backend"] == [
        {"kind": "openai_http", "target": "http://127.0.0.1:8000", "model": "qwen", "timeout": 600.0}
    ]
    assert payload["--profile"] == [{"kind": "concurrent", "streams": [4], "warmup": 0.1, "cooldown": 5}]
    assert payload["--constraint"] == [{"kind": "max_duration", "seconds": 30}]
    assert payload["--data"] == [
        {
            "kind": "synthetic_text",
            "prompt_tokens": 128,
            "output_tokens": 64,
            "turns": 2,
            "prefix_buckets": [{"bucket_weight": 100, "prefix_count": 8, "prefix_tokens": 512}],
        }
    ]
    assert payload["--tokenizer"] == [{"kind": "huggingface_auto", "model": "/srv/tokenizer"}]
    assert payload["--seed"] == [{"kind": "static", "value": 4889}]
    assert payload["--output"] == [
        {"kind": "json", "path": "/results/c0004-r1/guidellm.json"},
        {"kind": "console"},
    ]
    assert payload["--metrics"] == [{"kind": "generative", "sample_size": 0}]
    assert found["--disable-console-interactive"] == [""]
    # one token per label, so a value starting with '-' is not taken for an option
    assert argv[-2:] == ["--label=run=a=b", "--label=scenario=-x"]


def test_run_dialect_is_the_same_for_07_and_08():
    assert build_argv("0.7.0", POINT) == build_argv("0.8.1", POINT)


def test_run_dialect_leaves_out_what_was_not_asked():
    argv = build_argv("0.8.1", point(prefix_tokens=0, turns=1))
    found = options(argv, 2)
    assert json.loads(found["--data"][0]) == {
        "kind": "synthetic_text",
        "prompt_tokens": 128,
        "output_tokens": 64,
        "turns": 1,
    }
    assert json.loads(found["--profile"][0]) == {"kind": "concurrent", "streams": [4]}
    assert "--label" not in found


@pytest.mark.parametrize(("samples", "size"), [(-1, None), (0, 0), (20, 20)])
def test_run_dialect_request_samples(samples, size):
    found = options(build_argv("0.8.1", point(request_samples=samples)), 2)
    assert json.loads(found["--metrics"][0]) == {"kind": "generative", "sample_size": size}
    assert warnings("0.8.1", point(request_samples=samples)) == []


# ---------------------------------------------------------------------------------------------------------
# dialects 0.5 and 0.6: guidellm benchmark run


def test_benchmark_run_dialect_argv_exact():
    argv = build_argv("0.6.1", point(warmup=0.1, cooldown=5.0))
    assert all(isinstance(token, str) for token in argv)
    assert argv[:3] == ["/opt/venv/bin/guidellm", "benchmark", "run"]
    assert options(argv, 3) == {
        "--target": ["http://127.0.0.1:8000"],
        "--model": ["qwen"],
        "--backend": ["openai_http"],
        "--backend-kwargs": ['{"timeout":600.0}'],
        "--profile": ["concurrent"],
        "--rate": ["4"],
        "--data": ['{"prompt_tokens":128,"output_tokens":64,"turns":2,"prefix_tokens":512,"prefix_count":8}'],
        "--processor": ["/srv/tokenizer"],
        "--random-seed": ["4889"],
        "--max-seconds": ["30"],
        "--output-dir": ["/results/c0004-r1"],
        "--outputs": ["guidellm.json"],
        "--disable-console-interactive": [""],
        "--warmup": ["0.1"],
        "--cooldown": ["5.0"],
        "--sample-requests": ["0"],
    }


def test_05_data_has_no_turns_and_06_has():
    data_05 = json.loads(options(build_argv("0.5.4", POINT), 3)["--data"][0])
    data_06 = json.loads(options(build_argv("0.6.0", POINT), 3)["--data"][0])
    assert "turns" not in data_05
    assert data_06["turns"] == 2
    assert {k: v for k, v in data_06.items() if k != "turns"} == data_05


def test_benchmark_run_dialect_leaves_out_what_was_not_asked():
    found = options(build_argv("0.6.1", point(prefix_tokens=0, request_samples=-1)), 3)
    assert json.loads(found["--data"][0]) == {"prompt_tokens": 128, "output_tokens": 64, "turns": 2}
    for absent in ("--warmup", "--cooldown", "--sample-requests", "--label"):
        assert absent not in found


@pytest.mark.parametrize(
    ("version", "samples", "flag"),
    [
        ("0.6.1", -1, None),
        ("0.6.1", 0, "0"),
        ("0.6.1", 7, "7"),
        ("0.5.4", 0, "0"),
        # 0.5.0-0.5.3 never apply it: the flag is left out
        ("0.5.3", 0, None),
        ("0.5.0", 7, None),
    ],
)
def test_benchmark_run_dialect_sample_requests(version, samples, flag):
    found = options(build_argv(version, point(request_samples=samples)), 3)
    assert found.get("--sample-requests") == (None if flag is None else [flag])


@pytest.mark.parametrize("version", ["0.5.4", "0.6.1", "0.8.1"])
@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:8000", "http://10.0.0.1:8000/", "http://10.0.0.1:8000/v1", "http://10.0.0.1:8000/v1/"],
)
def test_target_url_loses_trailing_slash_and_v1(version, url):
    argv = build_argv(version, point(target_url=url))
    if dialect(version) == "0.7":
        target = json.loads(options(argv, 2)["--backend"][0])["target"]
    else:
        target = options(argv, 3)["--target"][0]
    assert target == "http://10.0.0.1:8000"


def test_target_url_keeps_a_path_prefix():
    argv = build_argv("0.8.1", point(target_url="https://gw.example/ns/vllm/v1"))
    assert json.loads(options(argv, 2)["--backend"][0])["target"] == "https://gw.example/ns/vllm"


# ---------------------------------------------------------------------------------------------------------
# warnings, turns_sent


def test_warnings_of_05_before_054():
    found = warnings("0.5.3", point(labels=(("run", "x"),), request_samples=0))
    assert len(found) == 3
    assert "ignores turns=2" in found[0]
    assert "ignores --sample-requests" in found[1]
    assert "--label" in found[2]
    assert all(sentence.startswith("GuideLLM 0.5.3 ") for sentence in found)


def test_warnings_of_054_and_06():
    assert warnings("0.5.4", point(turns=1, request_samples=0)) == []
    assert warnings("0.6.1", point(request_samples=-1)) == []
    sampled = warnings("0.6.1", point(request_samples=5))
    assert len(sampled) == 1 and "keeps only 5 requests" in sampled[0]
    assert len(warnings("0.6.0", point(labels=(("a", "b"),)))) == 1
    # 0.5.3 stores every request whatever is asked; -1 asks exactly that
    assert warnings("0.5.3", point(turns=1, request_samples=-1)) == []


def test_warnings_of_run_dialect_are_empty():
    assert warnings("0.7.0", point(labels=(("a", "b"),), request_samples=3, turns=4)) == []


@pytest.mark.parametrize(("version", "sent"), [("0.5.4", 1), ("0.6.0", 3), ("0.7.4", 3), ("0.8.1", 3)])
def test_turns_sent(version, sent):
    assert turns_sent(version, 3) == sent
    assert turns_sent(version, 1) == 1


def test_turns_sent_refuses_bad_input():
    with pytest.raises(GuideLLMError):
        turns_sent("0.8.1", 0)
    with pytest.raises(GuideLLMError):
        turns_sent("0.9.0", 1)


# ---------------------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"duration_s": 1.5}, "duration_s"),
        ({"prefix_count": 0}, "prefix_count"),
        ({"prefix_tokens": -1}, "prefix_tokens"),
        ({"turns": 0}, "turns"),
        ({"seed": -1}, "seed"),
        ({"request_samples": -2}, "request_samples"),
        ({"target_url": "127.0.0.1:8000"}, "target_url"),
        ({"target_url": ""}, "target_url"),
        ({"model": " "}, "model"),
        ({"tokenizer": ""}, "tokenizer"),
        ({"output_path": "/results/guidellm.yaml"}, "output_path"),
        ({"request_timeout_s": 0}, "request_timeout_s"),
        ({"warmup": -0.5}, "warmup"),
        ({"cooldown": "5"}, "cooldown"),
        ({"labels": (("a=b", "c"),)}, "a=b"),
        ({"labels": (("", "c"),)}, "label"),
        ({"labels": (("a", "1"), ("a", "2"))}, "twice"),
        ({"labels": (("a", 1),)}, "label"),
    ],
)
@pytest.mark.parametrize("version", ["0.5.3", "0.6.1", "0.8.1"])
def test_bad_arguments_raise_naming_the_value(version, change, named):
    with pytest.raises(GuideLLMError, match=named):
        build_argv(version, point(**change))


def test_error_is_a_value_error():
    assert issubclass(GuideLLMError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# report_seed on the real sample reports


def _report(name: str) -> dict[str, Any]:
    with (DATA / name).open("rb") as handle:
        return json.loads(zstandard.ZstdDecompressor().stream_reader(handle).read())


@pytest.mark.parametrize(
    "name", ["guidellm-0.5.3-concurrent-1-4-16.json.zst", "guidellm-0.8.1-concurrent-1-4-16.json.zst"]
)
def test_report_seed_of_real_reports(name):
    report = _report(name)
    assert report_seed(report) == 889


def test_report_seed_layouts():
    assert report_seed({}) is None
    assert report_seed({"config": {"spec": {"seed": {"kind": "static", "value": 7}}}}) == 7
    assert report_seed({"config": {"spec": {"seed": {"kind": "static", "value": True}}}}) is None
    assert report_seed({"config": {"spec": {"seed": {"kind": "static"}}}}) is None
    assert report_seed({"args": {"random_seed": 42}}) == 42
    assert report_seed({"args": None, "benchmarks": [{"config": {"requests": {"random_seed": 5}}}]}) == 5
    assert report_seed({"benchmarks": []}) is None
    assert report_seed({"args": {"random_seed": "42"}}) is None


def test_report_seed_follows_the_real_0_5_layout():
    report = _report("guidellm-0.5.3-concurrent-1-4-16.json.zst")
    report["args"]["random_seed"] = 17
    assert report_seed(report) == 17
    del report["args"]
    assert report_seed(report) == 889  # each benchmark's config.requests.random_seed


# ---------------------------------------------------------------------------------------------------------
# the real GuideLLM CLI, where a venv holds one

HARNESS = r"""
import importlib, json, sys

argv = json.loads(sys.stdin.read())
seen = []


async def fake(*_args, args=None, **_kwargs):
    seen.append(args)


# The click command builds and validates every model, then calls benchmark_generative_text: replace it.
for name in ("guidellm.__main__", "guidellm.cli.run", "guidellm.entrypoints"):
    try:
        module = importlib.import_module(name)
    except ImportError:
        continue
    if hasattr(module, "benchmark_generative_text"):
        module.benchmark_generative_text = fake
main = importlib.import_module("guidellm.__main__")
main.cli.main(args=argv[1:], prog_name="guidellm", standalone_mode=False)
assert len(seen) == 1, seen
args = seen[0]
out = {"args": args.model_dump(mode="json")}
if hasattr(args, "random_seed"):
    # 0.5/0.6 keep --data, the backend and --outputs raw: build them as their entrypoint does.
    from guidellm.backends import Backend
    from guidellm.benchmark.outputs import GenerativeBenchmarkerOutput
    from guidellm.data.schemas import SyntheticTextDatasetConfig

    check = SyntheticTextDatasetConfig.model_validate
    out["data"] = [check(json.loads(item)).model_dump(mode="json") for item in args.data]
    kwargs = dict(args.backend_kwargs or {})
    if "target" in type(args).model_fields:
        kwargs.update(target=args.target, model=args.model)
    backend = Backend.create(args.backend, **kwargs)
    out["backend"] = {"target": backend.target, "model": backend.model, "timeout": backend.timeout}
    resolved = GenerativeBenchmarkerOutput.resolve(outputs=args.outputs, output_dir=args.output_dir)
    out["outputs"] = {key: str(getattr(value, "output_path", "")) for key, value in resolved.items()}
print("KVBENCH-ARGS:" + json.dumps(out, default=str))
"""


def _venvs() -> list[Path]:
    found = sorted((REPO / ".work" / "state" / "venvs").glob("guidellm-*"))
    found += [Path(p) for p in os.environ.get("KVBENCH_GUIDELLM_VENVS", "").split(os.pathsep) if p]
    # A venv still being built has bin/python but no bin/guidellm yet.
    return [venv for venv in found if (venv / "bin" / "guidellm").exists()]


def _parse(venv: Path, argv: list[str]) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", HARNESS],
        input=json.dumps(argv),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, f"{venv} refused {argv}:\n{done.stderr[-4000:]}"
    line = next(line for line in done.stdout.splitlines() if line.startswith("KVBENCH-ARGS:"))
    return json.loads(line.removeprefix("KVBENCH-ARGS:"))


def _version_of(venv: Path) -> str:
    python = str(venv / "bin" / "python")
    probe = "import importlib.metadata as m; print(m.version('guidellm'))"
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


REAL = point(warmup=0.1, cooldown=5, request_samples=0, labels=(("run", "a=b"), ("scenario", "-x")))


@pytest.mark.e2e
@pytest.mark.parametrize("release", ["0.8.1", "0.5.3"])
def test_real_guidellm_cli_accepts_the_argv(release):
    # e2e: runs after `make test`, whose guidellm role tests make these venvs with the role itself.
    venv = next((v for v in _venvs() if _version_of(v) == release), None)
    assert venv is not None, f"no GuideLLM {release} venv in .work/state/venvs or $KVBENCH_GUIDELLM_VENVS"
    version = _version_of(venv)
    parsed = _parse(venv, build_argv(version, REAL))
    if dialect(version) == "0.7":
        _check_run_dialect(parsed)
    else:
        _check_benchmark_run_dialect(version, parsed)


def _check_run_dialect(parsed: dict[str, Any]) -> None:
    spec = parsed["args"]["spec"]
    assert parsed["args"]["metadata"]["labels"] == {"run": "a=b", "scenario": "-x"}
    assert spec["backend"]["kind"] == "openai_http"
    assert spec["backend"]["target"] == "http://127.0.0.1:8000"
    assert spec["backend"]["model"] == "qwen"
    assert spec["backend"]["timeout"] == 600.0
    assert spec["profile"]["kind"] == "concurrent"
    assert spec["profile"]["streams"] == [4]
    assert spec["profile"]["warmup"]["percent"] == 0.1
    assert spec["profile"]["cooldown"]["value"] == 5
    assert [(c["kind"], c["seconds"]) for c in spec["constraints"]] == [("max_duration", 30)]
    (data,) = spec["data"]
    assert (data["kind"], data["prompt_tokens"], data["output_tokens"], data["turns"]) == (
        "synthetic_text",
        128,
        64,
        2,
    )
    assert data["prefix_buckets"] == [{"bucket_weight": 100, "prefix_count": 8, "prefix_tokens": 512}]
    assert spec["tokenizer"]["model"] == "/srv/tokenizer"
    assert spec["seed"] == {"kind": "static", "value": 4889}
    assert spec["outputs"] == [
        {"kind": "json", "path": "/results/c0004-r1/guidellm.json"},
        {"kind": "console"},
    ]
    assert spec["metrics"]["sample_size"] == 0


def _check_benchmark_run_dialect(version: str, parsed: dict[str, Any]) -> None:
    args = parsed["args"]
    assert (args["profile"], args["rate"], args["backend"]) == ("concurrent", [4.0], "openai_http")
    assert args["random_seed"] == 4889
    assert args["max_seconds"] == 30
    assert args["processor"] == "/srv/tokenizer"
    assert (args["warmup"], args["cooldown"]) == (0.1, 5)
    assert parsed["backend"] == {"target": "http://127.0.0.1:8000", "model": "qwen", "timeout": 600.0}
    assert parsed["outputs"] == {"json": "/results/c0004-r1/guidellm.json"}
    (data,) = parsed["data"]
    assert (data["prompt_tokens"], data["output_tokens"]) == (128, 64)
    assert data["prefix_buckets"] == [{"bucket_weight": 100, "prefix_count": 8, "prefix_tokens": 512}]
    assert data.get("turns", 1) == turns_sent(version, 2)
    if dialect(version) == "0.6" or version == "0.5.4":
        assert args["sample_requests"] == 0
