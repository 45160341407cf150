"""The GuideLLM command line of one load point, for every GuideLLM release kvbench supports.

Pure functions, no I/O: `build_argv` gives the complete argv of one point, `warnings` what the release
leaves out of the request, `turns_sent` how many user turns it really sends, and `report_seed` the seed
GuideLLM itself wrote into its JSON report. The API key never travels on the command line (the guidellm
role hands it over in a private scenario file), so nothing here handles it.

Dialects are named after the first release that speaks them, and every flag below was checked against
that release's own source (vllm-project/guidellm, git tags v0.5.0 to v0.7.3, wheels 0.7.4, 0.8.0, 0.8.1):

* "0.5" (0.5.x): `guidellm benchmark run` with flat options; the synthetic data has no turns.
* "0.6" (0.6.x): the same flat `benchmark run` (0.6.x has no top-level `guidellm run`), and the
  synthetic data takes `turns`.
* "0.7" (0.7.x and 0.8.x): `guidellm run`, one JSON object per option (`--backend`, `--profile`,
  `--constraint`, `--data`, `--tokenizer`, `--seed`, `--output`, `--metrics`) and `--label k=v`. The shared
  prefix is given as `prefix_buckets`, because 0.7.x rejects the prefix_tokens/prefix_count shorthand.

Shared prefixes and seeds (GuideLLM 0.8.1, guidellm/data/deserializers/synthetic.py): two runs with the
same seed and the same prefix_tokens but different prefix_count DO share their first prefixes. The
examples iterable seeds one Faker with the seed (`faker.seed_instance(iter_random_seed)`, where
iter_random_seed = seed + epoch, 0 for the single benchmark of a kvbench point) and builds the prefix pool
lazily at the first `next(prefix_iter)`, before any prompt text is drawn from that Faker:
`bucket_prefixes = [self._create_prompt(bucket.prefix_tokens, faker) for _ in range(bucket.prefix_count)]`.
Prefix i is therefore the i-th text of the same Faker stream whatever prefix_count is, so a level with
prefix_count=8 reuses the 4 prefixes of a level with prefix_count=4 and adds 4 new ones. What differs is
which prefix each conversation gets (`rand.choice(prefixes)` with `Random(seed + 3)` over a longer list)
and every user prompt after the prefixes (the Faker stream has advanced further). GuideLLM 0.5.x builds
its prefixes the same way. Checked by running 0.8.1's SyntheticTextDataset (seed 889, prefix_tokens 32):
prefix_count 4 and 8 share all 4 prefixes, seeds 889 and 890 share none. So warm-cache runs (one seed
for every level) replay prefixes across levels, and only distinct seeds per level (kvbench's default)
keep levels from hitting each other's prefixes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "SUPPORTED",
    "GuideLLMError",
    "PointArgs",
    "build_argv",
    "dialect",
    "report_seed",
    "turns_sent",
    "warnings",
]


class GuideLLMError(ValueError):
    """A GuideLLM release or load-point argument kvbench cannot turn into a command line.

    The message names the bad value and the valid ones.
    """


SUPPORTED: tuple[str, ...] = (">=0.5,<0.6", ">=0.6,<0.7", ">=0.7,<0.9")
"""GuideLLM releases with a verified dialect, as version ranges (see the module docstring)."""

# (major, minor) -> dialect; 0.8 speaks the dialect 0.7.0 introduced.
_DIALECTS: dict[tuple[int, int], str] = {(0, 5): "0.5", (0, 6): "0.6", (0, 7): "0.7", (0, 8): "0.7"}

# PEP 440 release with the suffixes GuideLLM's own builds carry (rc, .dev, +local).
_VERSION = re.compile(
    r"^v?(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<micro>\d+))?(?:\.\d+)*"
    r"(?:[-_.]?(?:a|b|rc)\d*)?(?:[-_.]?post\d*)?(?:[-_.]?dev\d*)?(?:\+[A-Za-z0-9.]+)?$"
)


@dataclass(frozen=True)
class PointArgs:
    """Everything one load point asks of GuideLLM."""

    executable: str  # path of the `guidellm` console script, e.g. /opt/venv/bin/guidellm or "guidellm"
    target_url: str  # base URL of the OpenAI server; a trailing / or /v1 is stripped
    model: str  # served model name
    tokenizer: str  # local directory or Hugging Face id
    concurrency: int
    duration_s: int
    prompt_tokens: int
    output_tokens: int
    prefix_tokens: int  # 0 = no shared prefix
    prefix_count: int
    turns: int
    seed: int
    output_path: str  # the JSON report GuideLLM must write (guidellm.json)
    request_timeout_s: float = 600.0
    warmup: float | None = None  # GuideLLM's notation: < 1 a fraction of the duration, >= 1 seconds
    cooldown: float | None = None
    request_samples: int = 0  # -1 = keep every request's text (GuideLLM default), N >= 0 = sample size
    labels: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------------------------------------
# Versions


def _release(version: str) -> tuple[int, int, int]:
    match = _VERSION.match(str(version).strip())
    if match is None:
        raise GuideLLMError(
            f"GuideLLM version {version!r} is not a release number; supported: {', '.join(SUPPORTED)}"
        )
    return int(match["major"]), int(match["minor"]), int(match["micro"] or 0)


def dialect(version: str) -> str:
    """The command-line dialect of a GuideLLM release: "0.5", "0.6" or "0.7" (0.7.x and 0.8.x)."""
    major, minor, _ = _release(version)
    try:
        return _DIALECTS[(major, minor)]
    except KeyError:
        raise GuideLLMError(
            f"GuideLLM {version} has no verified command line; supported: {', '.join(SUPPORTED)}"
        ) from None


def _keeps_every_request(version: str) -> bool:
    # 0.5.0-0.5.3 accept --sample-requests but never hand it to the request accumulators
    # (benchmark/schemas/generative/accumulator.py builds them with sample_requests=None); 0.5.4 added
    # GenerativeBenchmarkAccumulator.model_post_init, which propagates it.
    return _release(version) < (0, 5, 4)


# ---------------------------------------------------------------------------------------------------------
# Checks


def _int_at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GuideLLMError(f"{name}={value!r} must be an integer >= {low}")


def _text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise GuideLLMError(f"{name}={value!r} must be a non-empty string")


def _phase(name: str, value: Any) -> None:
    # GuideLLM reads a number < 1 as a fraction of the duration and >= 1 as seconds.
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise GuideLLMError(f"{name}={value!r} must be null or a number >= 0 (< 1: fraction, >= 1: seconds)")


def _labels(labels: Any) -> None:
    keys: set[str] = set()
    for pair in labels:
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise GuideLLMError(f"label {pair!r} must be a (key, value) pair of strings")
        key = pair[0]
        # GuideLLM splits `--label key=value` at the first '=' and builds a dict (utils/cli.py parse_kv_str).
        if not key or "=" in key:
            raise GuideLLMError(f"label key {key!r} must be non-empty and hold no '='")
        if key in keys:
            raise GuideLLMError(f"label key {key!r} is given twice; GuideLLM would keep only the last")
        keys.add(key)


def _check(args: PointArgs) -> None:
    for name in ("executable", "target_url", "model", "tokenizer", "output_path"):
        _text(name, getattr(args, name))
    for name, low in (
        ("concurrency", 1),
        ("duration_s", 1),
        ("prompt_tokens", 1),
        ("output_tokens", 1),
        ("prefix_tokens", 0),
        ("prefix_count", 1),
        ("turns", 1),
        ("seed", 0),  # numpy and torch seed generators refuse negative seeds
        ("request_samples", -1),
    ):
        _int_at_least(name, getattr(args, name), low)
    url = urlsplit(args.target_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise GuideLLMError(f"target_url={args.target_url!r} must be an http:// or https:// URL")
    timeout = args.request_timeout_s
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise GuideLLMError(f"request_timeout_s={timeout!r} must be a number > 0")
    _phase("warmup", args.warmup)
    _phase("cooldown", args.cooldown)
    # 0.5/0.6 pick the output format from the file extension (GenerativeBenchmarkerOutput.resolve).
    if not args.output_path.endswith(".json"):
        raise GuideLLMError(f"output_path={args.output_path!r} must name a .json file")
    _labels(args.labels)


# ---------------------------------------------------------------------------------------------------------
# Pieces shared by the dialects


def _base_url(url: str) -> str:
    # GuideLLM appends /v1/... itself (OpenAIHTTPBackend: target.rstrip("/").removesuffix("/v1")).
    return url.strip().rstrip("/").removesuffix("/v1").rstrip("/")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _number(value: float) -> float | int:
    return int(value) if isinstance(value, int) else float(value)


def _data(args: PointArgs, with_turns: bool, buckets: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"prompt_tokens": args.prompt_tokens, "output_tokens": args.output_tokens}
    if with_turns:
        data["turns"] = args.turns
    if args.prefix_tokens <= 0:
        return data  # no shared prefix
    if buckets:
        # The bucket the prefix_tokens/prefix_count shorthand stands for (check_prefix_options). 0.7.x
        # rejects the shorthand: its SyntheticTextDataArgs reads it from __pydantic_extra__ but the model
        # forbids extra keys (standard_model_config(extra="forbid")); 0.8 declares it and maps it here.
        bucket = {
            "bucket_weight": 100,
            "prefix_count": args.prefix_count,
            "prefix_tokens": args.prefix_tokens,
        }
        data["prefix_buckets"] = [bucket]
    else:
        # 0.5/0.6 SyntheticTextDatasetConfig allows extra keys and maps the shorthand to one bucket.
        data["prefix_tokens"] = args.prefix_tokens
        data["prefix_count"] = args.prefix_count
    return data


# ---------------------------------------------------------------------------------------------------------
# Dialect "0.7": GuideLLM 0.7.0-0.8.1, checked in v0.7.0/v0.7.3 src/guidellm/cli/run.py and
# benchmark/schemas/entrypoints.py (BenchmarkArgs), and in the 0.8.1 wheel's guidellm/cli/run.py,
# schemas/benchmark/entrypoints.py (GenerativeMetricsArgs.sample_size), schemas/backends/openai_http.py
# (target, model, timeout), schemas/benchmark/profiles/{profile,concurrent}.py (streams, warmup,
# cooldown), schemas/scheduler/constraints/request.py (max_duration seconds),
# schemas/data/deserializers/synthetic.py (turns, prefix shorthand), schemas/data/tokenizers/huggingface.py,
# schemas/benchmark/random.py (static value), schemas/benchmark/outputs/{serialized,console}.py (path).


def _argv_run(args: PointArgs) -> list[str]:
    profile: dict[str, Any] = {"kind": "concurrent", "streams": [args.concurrency]}
    if args.warmup is not None:
        profile["warmup"] = _number(args.warmup)
    if args.cooldown is not None:
        profile["cooldown"] = _number(args.cooldown)
    backend = {
        "kind": "openai_http",
        "target": _base_url(args.target_url),
        "model": args.model,
        "timeout": float(args.request_timeout_s),
    }
    # sample_size: None keeps every request's text, 0 strips it (statistics of every request stay).
    metrics = {
        "kind": "generative",
        "sample_size": None if args.request_samples < 0 else args.request_samples,
    }
    argv = [
        args.executable,
        "run",
        "--backend",
        _json(backend),
        "--profile",
        _json(profile),
        "--constraint",
        _json({"kind": "max_duration", "seconds": args.duration_s}),
        "--data",
        _json({"kind": "synthetic_text", **_data(args, with_turns=True, buckets=True)}),
        "--tokenizer",
        _json({"kind": "huggingface_auto", "model": args.tokenizer}),
        "--seed",
        _json({"kind": "static", "value": args.seed}),
        "--output",
        _json({"kind": "json", "path": args.output_path}),
        "--output",
        _json({"kind": "console"}),
        "--metrics",
        _json(metrics),
        "--disable-console-interactive",
    ]
    # One token per label so a value starting with '-' cannot be taken for an option.
    return argv + [f"--label={key}={value}" for key, value in args.labels]


# ---------------------------------------------------------------------------------------------------------
# Dialects "0.5" and "0.6": GuideLLM 0.5.0-0.6.1, checked in v0.5.0, v0.5.3, v0.5.4, v0.6.0 and v0.6.1
# src/guidellm/__main__.py (benchmark run options), benchmark/schemas/generative/entrypoints.py
# (BenchmarkGenerativeTextArgs), data/schemas.py (turns from 0.6.0 on), backends/openai.py and
# backends/openai/http.py (timeout kwarg) and benchmark/outputs/output.py (--outputs by extension).


def _sample_requests(version: str, request_samples: int) -> list[str]:
    # 0.5.4+: None (flag left out) keeps every request with its text, 0 keeps every request's statistics
    # without text, N > 0 keeps only N requests per status group (get_sampled) and drops the others.
    if request_samples < 0 or _keeps_every_request(version):
        return []
    return ["--sample-requests", str(request_samples)]


def _argv_benchmark_run(version: str, args: PointArgs, with_turns: bool) -> list[str]:
    output = PurePosixPath(args.output_path)
    argv = [
        args.executable,
        "benchmark",
        "run",
        "--target",
        _base_url(args.target_url),
        "--model",
        args.model,
        "--backend",
        "openai_http",
        # Always explicit: the 0.5 backend's default read timeout (60 s) is too short under load.
        "--backend-kwargs",
        _json({"timeout": float(args.request_timeout_s)}),
        "--profile",
        "concurrent",
        "--rate",
        str(args.concurrency),
        "--data",
        _json(_data(args, with_turns=with_turns, buckets=False)),
        "--processor",
        args.tokenizer,
        "--random-seed",
        str(args.seed),
        "--max-seconds",
        str(args.duration_s),
        "--output-dir",
        str(output.parent),
        "--outputs",
        output.name,
        "--disable-console-interactive",
    ]
    if args.warmup is not None:
        argv += ["--warmup", _json(_number(args.warmup))]
    if args.cooldown is not None:
        argv += ["--cooldown", _json(_number(args.cooldown))]
    return argv + _sample_requests(version, args.request_samples)


# ---------------------------------------------------------------------------------------------------------
# Public API


def build_argv(version: str, args: PointArgs) -> list[str]:
    """The complete argv (all strings) that runs one load point on GuideLLM `version`."""
    spoken = dialect(version)
    _check(args)
    if spoken == "0.7":
        return _argv_run(args)
    return _argv_benchmark_run(version, args, with_turns=spoken == "0.6")


def turns_sent(version: str, turns: int) -> int:
    """User turns per conversation GuideLLM `version` really sends when `turns` are asked for."""
    _int_at_least("turns", turns, 1)
    # 0.5.x synthetic data has no turns field and ignores the key: every conversation is single-turn.
    return 1 if dialect(version) == "0.5" else turns


def warnings(version: str, args: PointArgs) -> list[str]:
    """What GuideLLM `version` leaves out of this request, one plain sentence each (empty: nothing)."""
    spoken = dialect(version)
    found: list[str] = []
    if spoken == "0.5" and args.turns > 1:
        found.append(
            f"GuideLLM {version} ignores turns={args.turns}: multi-turn arrived in 0.6.0, so this point "
            "sent single-turn requests only (the multi-turn workload was never sent)."
        )
    if _keeps_every_request(version) and args.request_samples != -1:
        found.append(
            f"GuideLLM {version} ignores --sample-requests: every request is stored with its prompt text "
            f"(request_samples={args.request_samples} not applied; fixed in 0.5.4)."
        )
    elif spoken in ("0.5", "0.6") and args.request_samples > 0:
        found.append(
            f"GuideLLM {version} keeps only {args.request_samples} requests per status group in its report "
            "and drops the other requests' records (0.7+ keeps the statistics of every request); "
            "the aggregate metrics still cover every request."
        )
    if spoken in ("0.5", "0.6") and args.labels:
        found.append(f"GuideLLM {version} has no --label (it arrived in 0.7.0): the labels were not written.")
    return found


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def report_seed(report: dict) -> int | None:
    """The seed GuideLLM recorded in its own JSON report; None when the report holds none.

    0.7+ (report version 2): config.spec.seed = {"kind": "static", "value": N}
    (benchmark/schemas/report.py, GenerativeBenchmarksReport.config is the BenchmarkScenario).
    0.5/0.6 (report version 1): args.random_seed (GenerativeBenchmarksReport.args is
    BenchmarkGenerativeTextArgs); each benchmark repeats it in config.requests.random_seed.
    """
    seed = _get(report, "config", "spec", "seed")
    if isinstance(seed, Mapping):
        return _int_or_none(seed.get("value"))
    found = _int_or_none(_get(report, "args", "random_seed"))
    if found is not None:
        return found
    benchmarks = _get(report, "benchmarks")
    if isinstance(benchmarks, list) and benchmarks:
        return _int_or_none(_get(benchmarks[0], "config", "requests", "random_seed"))
    return None
