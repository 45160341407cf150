#!/usr/bin/env python3
"""Time `kvbench analyze` on a results tree of the evaluation's size against the decode-and-parse floor.

The tree has the original evaluation's layout: models x scenarios x concurrency levels (4 x 7 x 8 = 224
point directories by default), each holding a `guidellm-results.json.zst` in GuideLLM 0.5.3's format with
per-request samples, and a `benchmark-config.txt`.

File sizes follow what GuideLLM writes for a 120 s level: one per-request record per successful request
(output tok/s x 120 s / 128 output tokens, at the level's throughput from a sweep shaped like the
published one) plus one per request still running at the end (= concurrency), each record the size that
a 10,000-token shared prefix gives (about 60 KB). At full scale that is several GB of JSON; `--scale`
keeps that fraction of the records and `--max-mb-per-file` caps a file, so the run fits a small machine.
The numbers used are printed.

Measured (each command in a fresh process; best of `--repeat` runs):
- floor: a Python process that, for every file, decompresses it (zstandard) and parses it (orjson);
- analyze: `kvbench analyze TREE --out DIR` (reading, tables, figures, report) with `-j 1` (one process)
  and with its default number of worker processes;
- memory: peak RSS of each command's whole process tree (sampled from /proc every 50 ms), and of
  `kvbench analyze -j 1` on the largest file alone: memory must follow the largest file, not the tree.
Prints timings only; never asserts.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import zstandard

from kvbench.naming import SCENARIO_ORDER

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "analyzer" / "data" / "guidellm-0.5.3-concurrent-1-4-16.json.zst"
MODELS = {"Qwen3-0.6B": 602.0, "Qwen3-8B": 113.0, "Qwen3-14B": 58.7, "Qwen3-32B-AWQ": 49.2}
# The evaluation's seven scenarios (the report order without the llm-d-inmem control).
SCENARIOS = SCENARIO_ORDER[:7]
LEVELS = (1, 50, 100, 150, 300, 400, 500, 650)
OUTPUT_TOKENS = 128
SECONDS = 120
WORDS = tuple(
    [
        "cache",
        "block",
        "prefix",
        "token",
        "model",
        "server",
        "request",
        "stream",
        "memory",
        "offload",
        "valkey",
        "redis",
        "index",
        "route",
        "layer",
        "head",
        "tensor",
        "batch",
        "queue",
        "latency",
        "throughput",
        "result",
        "sample",
        "value",
        "score",
        "measure",
        "level",
        "point",
    ]
)

MEASURE_FLOOR = r"""
import sys, time
from pathlib import Path
import orjson, zstandard
files = [Path(p) for p in Path(sys.argv[1]).read_text().split("\n") if p]
start = time.perf_counter()
dctx = zstandard.ZstdDecompressor()
for path in files:
    doc = orjson.loads(dctx.decompress(path.read_bytes()))
    del doc
elapsed = time.perf_counter() - start
print(f"LOOP {elapsed:.3f}")
"""


def level_throughput(peak: float, level: int) -> float:
    """A sweep shaped like the published ones: peak at 50, lower at 1 and slowly falling past it."""
    if level == 1:
        return peak * 0.08
    if level == 50:
        return peak
    return peak * max(0.5, 1.0 - 0.0008 * (level - 50))


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


class Writer:
    """Builds GuideLLM 0.5.3 reports by splicing per-request records into the real sample's JSON."""

    def __init__(self, record_kb: float, prefix_count: int, seed: int) -> None:
        self.rng = random.Random(seed)
        sample = orjson.loads(zstandard.ZstdDecompressor().stream_reader(SAMPLE.open("rb")).read())
        record = dict(sample["benchmarks"][0]["requests"]["successful"][0])
        bench = {k: v for k, v in sample["benchmarks"][0].items() if k != "requests"}
        self.skeleton = orjson.dumps({**sample, "benchmarks": [bench]})
        overhead = len(orjson.dumps(record)) - len(record["request_args"]) - len(record.get("output") or "")
        prompt_chars = 600  # a 128-token prompt
        prefix_chars = max(1000, int(record_kb * 1024) - overhead - prompt_chars - 700)
        self.prefixes = [_text(self.rng, prefix_chars) for _ in range(prefix_count)]
        self.template = record
        self.record_bytes = len(self._record(0, "x" * 600, self.prefixes[0]))

    def _record(self, index: int, prompt: str, prefix: str) -> bytes:
        record = dict(self.template)
        record["request_id"] = f"req-{index:08d}-{self.rng.getrandbits(48):012x}"
        body = {
            "model": "Qwen/Qwen3",
            "stream": True,
            "max_completion_tokens": OUTPUT_TOKENS,
            "messages": [{"role": "system", "content": prefix}, {"role": "user", "content": prompt}],
        }
        record["request_args"] = str({"method": None, "stream": True, "body": body})
        record["output"] = prompt[:700]
        return orjson.dumps(record)

    def report(self, model: str, concurrency: int, tok_s: float, successful: int, incomplete: int) -> bytes:
        doc = orjson.loads(self.skeleton)
        bench = doc["benchmarks"][0]
        bench["config"]["strategy"].update(streams=concurrency, max_concurrency=concurrency)
        bench["config"]["backend"]["model"] = f"Qwen/{model}"
        bench["metrics"]["output_tokens_per_second"]["successful"]["mean"] = tok_s
        bench["metrics"]["output_tokens_per_second"]["total"]["mean"] = tok_s * 1.05
        bench["metrics"]["request_totals"] = {
            "successful": successful,
            "errored": 0,
            "incomplete": incomplete,
            "total": successful + incomplete,
        }
        doc["args"]["model"] = f"Qwen/{model}"
        doc["args"]["rate"] = [float(concurrency)]
        doc["benchmarks"] = [bench]
        marker = {"successful": "@@S@@", "incomplete": "@@I@@"}
        bench["requests"] = {
            "successful": marker["successful"],
            "errored": [],
            "incomplete": marker["incomplete"],
        }
        bench["requests"]["total"] = None
        skeleton = orjson.dumps(doc)
        parts = {}
        for status, count in (("successful", successful), ("incomplete", incomplete)):
            records = [
                self._record(i, _text(self.rng, 600), self.prefixes[i % len(self.prefixes)])
                for i in range(count)
            ]
            parts[status] = b"[" + b",".join(records) + b"]"
        for status, token in marker.items():
            skeleton = skeleton.replace(f'"{token}"'.encode(), parts[status], 1)
        return skeleton


def build_tree(root: Path, args: argparse.Namespace) -> tuple[list[Path], int, int]:
    writer = Writer(args.record_kb, args.prefix_count, args.seed)
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True, threads=-1)
    files: list[Path] = []
    raw_total = 0
    largest = 0
    cap = int(args.max_mb_per_file * 1e6 / writer.record_bytes) if args.max_mb_per_file else None
    print(f"per-request record: {writer.record_bytes / 1024:.1f} KiB ({args.prefix_count} shared prefixes)")
    for model in list(MODELS)[: args.models]:
        for scenario in SCENARIOS[: args.scenarios]:
            for level in LEVELS[: args.levels]:
                tok_s = level_throughput(MODELS[model], level)
                successful = round(tok_s * SECONDS / OUTPUT_TOKENS * args.scale)
                incomplete = round(level * args.scale)
                if cap is not None and successful + incomplete > cap:
                    share = cap / (successful + incomplete)
                    successful, incomplete = int(successful * share), int(incomplete * share)
                data = writer.report(model, level, tok_s, max(successful, 1), incomplete)
                name = f"1x2xL40S_upstream-llm-d-0.4.0_{model}_{scenario}_replica1_rate{level}"
                point = root / name
                point.mkdir(parents=True)
                path = point / "guidellm-results.json.zst"
                path.write_bytes(compressor.compress(data))
                config = {"Rate (Concurrency)": level, "Model": f"Qwen/{model}", "Model Name": model}
                config["Parameters"] = scenario
                (point / "benchmark-config.txt").write_text("".join(f"{k}: {v}\n" for k, v in config.items()))
                files.append(path)
                raw_total += len(data)
                largest = max(largest, len(data))
    return files, raw_total, largest


def _tree_rss_kib(root_pid: int) -> int:
    """Summed RSS of a process and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def _cpu_pressure() -> str:
    """The machine's CPU pressure (share of time some task waited for a CPU), when Linux reports it."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "n/a"
    return line.split()[2].replace("avg60=", "") + " %"


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str, str, float, float]:
    """Run a command: wall s, stdout, stderr, peak RSS of its process tree (MiB), CPU s of the tree."""
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss_kib(proc.pid))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = proc.communicate()
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
    if proc.returncode != 0:
        sys.stderr.write(err)
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(argv[:4])} ...")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, out, err, peak / 1024, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=4, help="models (1-4)")
    parser.add_argument("--scenarios", type=int, default=7, help="scenarios (1-7)")
    parser.add_argument("--levels", type=int, default=8, help="concurrency levels (1-8)")
    parser.add_argument("--record-kb", type=float, default=60.0, help="size of one per-request record (KB)")
    parser.add_argument("--prefix-count", type=int, default=2, help="shared prefixes (the evaluation: 2)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the per-request records kept")
    parser.add_argument(
        "--max-mb-per-file", type=float, default=0.0, help="cap one file's JSON size (0: none)"
    )
    parser.add_argument("--seed", type=int, default=889, help="seed of the generated text")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement; the best counts")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to build the tree (default: a temp dir)"
    )
    parser.add_argument(
        "--jobs", type=int, default=0, help="kvbench -j to time besides -j 1 (0: its default)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the tree")
    parser.add_argument("--no-figures", action="store_true", help="time analyze without drawing figures")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kvbench-bench-", dir=args.workdir))
    env = {**os.environ, "PYTHONPATH": str(REPO / "analyzer")}
    try:
        tree = work / "results"
        t0 = time.perf_counter()
        files, raw_total, largest = build_tree(tree, args)
        compressed = sum(f.stat().st_size for f in files)
        print(
            f"tree: {len(files)} files ({args.models} models x {args.scenarios} scenarios x "
            f"{args.levels} levels), {raw_total / 1e6:,.0f} MB JSON, {compressed / 1e6:,.0f} MB zstd, "
            f"largest file {largest / 1e6:,.1f} MB JSON; scale {args.scale}, "
            f"cap {args.max_mb_per_file or 'none'} MB/file; built in {time.perf_counter() - t0:.0f} s"
        )
        listing = work / "files.txt"
        listing.write_text("\n".join(map(str, files)))
        largest_file = max(files, key=lambda f: f.stat().st_size)

        extra = ["--no-figures"] if args.no_figures else []
        jobs = [1, args.jobs] if args.jobs != 1 else [1]
        walls: dict[str, list[float]] = {"floor": [], **{f"analyze -j {j}": [] for j in jobs}}
        cpus: dict[str, list[float]] = {key: [] for key in walls}
        rss: dict[str, float] = dict.fromkeys(walls, 0.0)
        loop: list[float] = []
        for i in range(args.repeat):
            wall, out, _, peak, cpu = _run([sys.executable, "-c", MEASURE_FLOOR, str(listing)], env)
            walls["floor"].append(wall)
            cpus["floor"].append(cpu)
            rss["floor"] = max(rss["floor"], peak)
            loop.append(float(out.split()[1]))
            for j in jobs:
                argv = [
                    sys.executable,
                    "-m",
                    "kvbench",
                    "analyze",
                    str(tree),
                    "--out",
                    str(work / f"o{i}{j}"),
                ]
                wall, _, err, peak, cpu = _run([*argv, "-j", str(j), *extra], env)
                walls[f"analyze -j {j}"].append(wall)
                cpus[f"analyze -j {j}"].append(cpu)
                rss[f"analyze -j {j}"] = max(rss[f"analyze -j {j}"], peak)
                summary = [line for line in err.splitlines() if line.startswith("kvbench: read")]
                if summary:
                    print(f"  run {i + 1}, -j {j}: {summary[0].split(';', 2)[-1].strip()}")
        argv = [
            sys.executable,
            "-m",
            "kvbench",
            "analyze",
            str(largest_file.parent),
            "--out",
            str(work / "one"),
        ]
        _, _, _, single_rss, _ = _run([*argv, "-j", "1", *extra], env)

        floor, floor_cpu = min(walls["floor"]), min(cpus["floor"])
        print(
            f"CPU pressure on this machine (avg60, share of time tasks waited for a CPU): {_cpu_pressure()}"
        )
        print(
            f"floor (one process: zstd decompress + orjson.loads of every file): {floor:.2f} s wall, "
            f"{floor_cpu:.2f} s CPU ({min(loop):.2f} s in its loop), peak RSS {rss['floor']:,.0f} MiB"
        )
        for j in jobs:
            key = f"analyze -j {j}"
            best, cpu = min(walls[key]), min(cpus[key])
            print(
                f"kvbench {key}{' --no-figures' if args.no_figures else ''}: {best:.2f} s wall "
                f"(ratio to floor {best / floor:.2f}), {cpu:.2f} s CPU (ratio {cpu / floor_cpu:.2f}), "
                f"peak RSS (process tree) {rss[key]:,.0f} MiB"
            )
        print(
            f"kvbench analyze -j 1 of the largest file alone: peak RSS {single_rss:,.0f} MiB "
            f"(largest file {largest / 2**20:,.1f} MiB JSON; whole tree {raw_total / 2**20:,.0f} MiB JSON)"
        )
        print("all runs, wall s: " + "; ".join(f"{k}: {[round(x, 2) for x in v]}" for k, v in walls.items()))
        print("all runs, CPU s: " + "; ".join(f"{k}: {[round(x, 2) for x in v]}" for k, v in cpus.items()))
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
