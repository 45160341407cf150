#!/usr/bin/env python3
"""Watch the servers' /metrics while one load point runs: a time series, and a liveness watchdog.

Installed by the kvbench `guidellm` role beside the point runner and run with the GuideLLM venv's python
(standard library only). It starts the command given after `--` (the point runner), scrapes every --url
each --interval seconds into --series (gzip JSON lines, one per scrape:
{"t", "source": "vllm", "url", "ok", "error", "samples": {"<name>{<labels>}": value}}, every `vllm:` sample
except histogram buckets) and stops the command when the engine stalls:
- completions (vllm:request_success_total, vllm:generation_tokens_total) do not advance for --stall-timeout
  seconds while requests are outstanding, or
- a /metrics endpoint does not answer for --stall-timeout seconds.
Requests are outstanding while vllm:num_requests_running + vllm:num_requests_waiting > 0, and throughout the
load (--load-duration seconds from the first completion): a stalled engine stops publishing those gauges, so
they can stay at 0 while the load generator's requests wait. A server can answer /health while its engine is
deadlocked; these counters cannot.

It prints the command's JSON result (stdout) with a `monitor` object added, writes the same object to
--evidence, and exits with the command's status, or 125 when the watchdog stopped it.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

EXIT_STALLED = 125
PREFIX = "vllm:"
# Counters whose advance is progress, and gauges whose sum is the work outstanding.
PROGRESS_METRICS = ("vllm:request_success_total", "vllm:generation_tokens_total")
OUTSTANDING_METRICS = ("vllm:num_requests_running", "vllm:num_requests_waiting")
WATCHED = (*PROGRESS_METRICS, *OUTSTANDING_METRICS)
# Every this many scrapes the series is flushed, so that a killed monitor leaves a readable prefix.
FLUSH_EVERY = 10


def _series_end(line: str) -> int:
    """Index just past the series part (`name` or `name{labels}`) of an exposition line; -1 if malformed."""
    brace = line.find("{")
    space = min((i for i in (line.find(" "), line.find("\t")) if i >= 0), default=-1)
    if brace < 0 or (0 <= space < brace):
        return space
    quoted = escaped = False
    for index in range(brace + 1, len(line)):
        char = line[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return index + 1
    return -1


def parse_exposition(text: str, prefix: str = PREFIX) -> dict[str, float]:
    """The samples of a Prometheus text exposition named `prefix`*, histogram buckets left out.

    Keys are the series as the exposition writes them (`name{labels}`); values are finite floats (NaN and
    ±Inf samples are left out: they measure nothing, and strict JSON cannot hold them).
    """
    samples: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith(prefix):
            continue
        end = _series_end(line)
        if end <= 0:
            continue
        series = line[:end]
        name = series.split("{", 1)[0]
        if name.endswith("_bucket"):
            continue
        fields = line[end:].split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if math.isfinite(value):
            samples[series] = value
    return samples


def metric_sum(samples: dict[str, float], name: str) -> float | None:
    """Sum of every series of metric `name` (all label sets); None when the metric is absent."""
    values = [v for k, v in samples.items() if k.split("{", 1)[0] == name and not math.isnan(v)]
    return sum(values) if values else None


def scrape(url: str, timeout_s: float) -> tuple[bool, str | None, dict[str, float]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except Exception as err:  # any failure to answer is evidence, never a crash
        return False, f"{type(err).__name__}: {err}"[:300], {}
    return True, None, parse_exposition(text)


@dataclass
class Watchdog:
    """Decides, scrape by scrape, whether the servers still make progress. Pure: times are given to it."""

    stall_timeout_s: float
    started_t: float
    load_s: float | None = None
    first_progress_t: float | None = None
    last_progress_t: float | None = None
    busy_since_t: float | None = None
    load_active: bool = False
    progress: dict[str, tuple[float | None, ...]] = field(default_factory=dict)
    last_ok_t: dict[str, float] = field(default_factory=dict)
    outstanding: dict[str, float] = field(default_factory=dict)
    recent: deque = field(default_factory=lambda: deque(maxlen=5))

    def observe(self, t: float, url: str, ok: bool, samples: dict[str, float]) -> str | None:
        """Take one scrape; return why the servers are stalled, or None while they are alive."""
        watched = {name: metric_sum(samples, name) for name in WATCHED} if ok else {}
        self.recent.append({"t": t, "url": url, "ok": ok, **watched})
        if ok:
            self.last_ok_t[url] = t
            counters = tuple(watched[name] for name in PROGRESS_METRICS)
            if url in self.progress and counters != self.progress[url]:
                self.last_progress_t = t
                self.first_progress_t = self.first_progress_t or t
            self.progress[url] = counters
            self.outstanding[url] = sum(watched[name] or 0.0 for name in OUTSTANDING_METRICS)
        else:
            silent_s = t - self.last_ok_t.get(url, self.started_t)
            if silent_s >= self.stall_timeout_s:
                return f"{url} did not answer for {silent_s:.0f} s"
            return None
        waiting = sum(self.outstanding.values())
        loading = self.first_progress_t is not None and (
            self.load_s is None or t <= self.first_progress_t + self.load_s
        )
        self.load_active = loading
        if waiting <= 0 and not loading:
            self.busy_since_t = None
            return None
        if self.busy_since_t is None:
            self.busy_since_t = t
        since = max(self.busy_since_t, self.last_progress_t or self.busy_since_t)
        if t - since >= self.stall_timeout_s:
            return (
                f"no completion for {t - since:.0f} s while requests were outstanding "
                f"({' + '.join(OUTSTANDING_METRICS)} = {waiting:g}"
                + (", load generator sending)" if loading else ")")
            )
        return None

    def evidence(self) -> dict[str, Any]:
        return {
            "first_progress_t": self.first_progress_t,
            "last_progress_t": self.last_progress_t,
            "busy_since_t": self.busy_since_t,
            "outstanding_requests": sum(self.outstanding.values()) if self.outstanding else None,
            "outstanding_per_url": dict(self.outstanding),
            "load_active": self.load_active,
            "last_ok_t": dict(self.last_ok_t),
            "last_samples": list(self.recent),
        }


class SeriesWriter:
    """gzip JSON lines, flushed every FLUSH_EVERY lines and closed on exit."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: TextIO = gzip.open(path, "wt", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.lines = 0
        self.ok_lines = 0
        self.first_t: float | None = None
        self.last_t: float | None = None

    def write(self, t: float, url: str, ok: bool, error: str | None, samples: dict[str, float]) -> None:
        line = {"t": round(t, 3), "source": "vllm", "url": url, "ok": ok, "error": error, "samples": samples}
        self._file.write(json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n")
        self.lines += 1
        if ok:
            self.ok_lines += 1
            self.first_t = t if self.first_t is None else self.first_t
            self.last_t = t
        if self.lines % FLUSH_EVERY == 0:
            self._file.flush()
            with contextlib.suppress(AttributeError, ValueError):
                self._file.buffer.flush(zlib.Z_SYNC_FLUSH)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._file.close()


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the command (the point runner then stops GuideLLM's process group), SIGKILL after grace_s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def monitor(args: argparse.Namespace, command: list[str]) -> tuple[int, dict[str, Any]]:
    writer = SeriesWriter(Path(args.series))
    started = time.time()
    dog = Watchdog(stall_timeout_s=args.stall_timeout, started_t=started, load_s=args.load_duration)
    stall: dict[str, Any] | None = None
    output: list[bytes] = []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read() if proc.stdout else b""))
    reader.start()

    def forward(signum: int, _frame: Any) -> None:
        _stop(proc, grace_s=10.0)
        writer.close()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        while True:
            tick = time.monotonic()
            running = proc.poll() is None
            for url in args.url:
                t = time.time()
                ok, error, samples = scrape(url, args.scrape_timeout)
                writer.write(t, url, ok, error, samples)
                why = dog.observe(t, url, ok, samples) if running else None
                if why and stall is None:
                    stall = {"reason": why, "detected_t": t, **dog.evidence()}
            if not running:
                break  # the scrape after the command ended is the series' last
            if stall is not None:
                _stop(proc, grace_s=30.0)
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, args.interval - (time.monotonic() - tick)))
    finally:
        writer.close()
    reader.join(timeout=30)
    rc = proc.returncode
    text = b"".join(output).decode("utf-8", errors="replace").strip()
    try:
        result: dict[str, Any] = json.loads(text) if text.startswith("{") else {}
    except ValueError:
        result = {}
    if not result:
        result = {"rc": rc, "reason": f"the point runner exited {rc} without a result", "report": None}
    summary = {
        "series": str(writer.path),
        "urls": list(args.url),
        "interval_s": args.interval,
        "stall_timeout_s": args.stall_timeout,
        "load_duration_s": args.load_duration,
        "samples": writer.lines,
        "ok_samples": writer.ok_lines,
        "first_ok_t": writer.first_t,
        "last_ok_t": writer.last_t,
        "stalled": stall is not None,
        "stall": stall,
    }
    if stall is not None:
        rc = EXIT_STALLED
        result["rc"] = rc
        result["reason"] = f"watchdog stopped GuideLLM: {stall['reason']}"
    result["monitor"] = summary
    return rc, result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", action="append", required=True, help="a server's /metrics URL (repeatable)")
    parser.add_argument("--series", required=True, help="gzip JSON-lines file of the scrapes")
    parser.add_argument("--evidence", required=True, help="JSON file of the monitor's summary and stall")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two scrapes")
    parser.add_argument("--scrape-timeout", type=float, default=2.0, help="seconds a scrape may take")
    parser.add_argument(
        "--stall-timeout", type=float, default=30.0, help="seconds without progress that stop the point"
    )
    parser.add_argument(
        "--load-duration",
        type=float,
        help="seconds the command sends load: requests count as outstanding from the first completion on",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the point runner's command line")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    if args.interval <= 0 or args.stall_timeout <= 0:
        parser.error("--interval and --stall-timeout must be > 0")
    rc, result = monitor(args, command)
    evidence = Path(args.evidence)
    evidence.parent.mkdir(parents=True, exist_ok=True)
    temporary = evidence.with_name(evidence.name + ".tmp")
    temporary.write_text(json.dumps(result["monitor"], indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, evidence)
    print(json.dumps(result, sort_keys=True))
    return rc


if __name__ == "__main__":
    sys.exit(main())
