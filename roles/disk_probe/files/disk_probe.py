#!/usr/bin/env python3
"""Measure a disk tier where its connector writes: sequential and 4 KiB-random read/write, bandwidth and IOPS.

fio when the host has it (O_DIRECT, libaio), else Python with O_DIRECT (page-aligned mmap buffers, positional
I/O from several threads, which release the GIL while the kernel works). Each test runs for at most
--seconds-per-test; the scratch file is removed. Prints one JSON object on its last line.
Standard library only: it runs with the host's python3.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

MIB = 1 << 20
SEQ_BLOCK = MIB
RAND_BLOCK = 4096
TESTS = ("seq_write", "seq_read", "rand_write", "rand_read")


def block_device(path: Path) -> str | None:
    """The block device (sysfs name) holding `path`, e.g. nvme0n1p1; None for tmpfs or overlay."""
    dev = os.stat(path).st_dev
    link = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    return link.resolve().name if link.exists() else None


def _open(path: Path, flags: int) -> tuple[int, bool]:
    direct = getattr(os, "O_DIRECT", 0)
    if direct:
        try:
            return os.open(path, flags | direct, 0o600), True
        except OSError:
            pass  # tmpfs and some overlays refuse O_DIRECT: measure through the page cache, and say so
    return os.open(path, flags, 0o600), False


def _timed(work, threads: int, seconds: float) -> tuple[int, float]:
    """Run work(stop_at, counter_index) on `threads` threads; (operations, elapsed seconds)."""
    counts = [0] * threads
    start = time.perf_counter()
    stop_at = start + seconds
    workers = [threading.Thread(target=work, args=(stop_at, counts, i)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts), time.perf_counter() - start


def python_probe(path: Path, size_mib: int, seconds: float, threads: int) -> dict:
    scratch = path / f".kvbench-disk-probe-{os.getpid()}"
    size = size_mib * MIB
    results: dict = {}
    fd, direct = _open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        buf = mmap.mmap(-1, SEQ_BLOCK)
        buf.write(os.urandom(SEQ_BLOCK))
        # Sequential write: the whole file once (or until the time is up), made durable.
        written, start = 0, time.perf_counter()
        while written < size and time.perf_counter() - start < seconds:
            written += os.pwritev(fd, [buf], written)
        os.fdatasync(fd)
        elapsed = time.perf_counter() - start
        results["seq_write"] = {"bytes": written, "s": elapsed}
        extent_blocks = max(1, written // SEQ_BLOCK)
        if not direct:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

        def seq_read(stop_at: float, counts: list[int], i: int) -> None:
            local = mmap.mmap(-1, SEQ_BLOCK)
            block = i
            while time.perf_counter() < stop_at:
                os.preadv(fd, [local], (block % extent_blocks) * SEQ_BLOCK)
                counts[i] += 1
                block += threads

        ops, elapsed = _timed(seq_read, 1, seconds)
        results["seq_read"] = {"bytes": ops * SEQ_BLOCK, "s": elapsed}
        extent_pages = extent_blocks * SEQ_BLOCK // RAND_BLOCK

        def rand(write: bool):
            def work(stop_at: float, counts: list[int], i: int) -> None:
                local = mmap.mmap(-1, RAND_BLOCK)
                rng = random.Random(i)
                while time.perf_counter() < stop_at:
                    offset = rng.randrange(extent_pages) * RAND_BLOCK
                    (os.pwritev if write else os.preadv)(fd, [local], offset)
                    counts[i] += 1

            return work

        if not direct:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        start = time.perf_counter()
        ops, _ = _timed(rand(True), threads, seconds)
        os.fdatasync(fd)  # the writes count once durable
        results["rand_write"] = {"ops": ops, "bytes": ops * RAND_BLOCK, "s": time.perf_counter() - start}
        if not direct:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        ops, elapsed = _timed(rand(False), threads, seconds)
        results["rand_read"] = {"ops": ops, "bytes": ops * RAND_BLOCK, "s": elapsed}
    finally:
        os.close(fd)
        scratch.unlink(missing_ok=True)
    return {
        "tool": "python",
        "o_direct": direct,
        "queue_depth": threads,
        "size_mib": size_mib,
        **_figures(results),
    }


def fio_probe(fio: str, path: Path, size_mib: int, seconds: float, threads: int) -> dict:
    scratch = path / f".kvbench-disk-probe-{os.getpid()}"
    common = [
        f"--filename={scratch}",
        f"--size={size_mib}M",
        "--direct=1",
        "--ioengine=libaio",
        f"--runtime={seconds:g}",
        "--time_based",
        "--output-format=json",
        "--group_reporting",
    ]
    jobs = {
        "seq_write": ["--rw=write", "--bs=1M", "--iodepth=4"],
        "seq_read": ["--rw=read", "--bs=1M", "--iodepth=4"],
        "rand_write": ["--rw=randwrite", "--bs=4k", f"--iodepth={threads}"],
        "rand_read": ["--rw=randread", "--bs=4k", f"--iodepth={threads}"],
    }
    results: dict = {}
    try:
        for name, args in jobs.items():
            out = subprocess.run(
                [fio, f"--name={name}", *common, *args], capture_output=True, text=True, check=True
            )
            job = json.loads(out.stdout[out.stdout.index("{") :])["jobs"][0]
            side = job["write" if "write" in name else "read"]
            seconds_run = side["runtime"] / 1000 if side.get("runtime") else seconds
            results[name] = {
                "bytes": side["io_bytes"],
                "ops": side.get("total_ios", 0),
                "s": seconds_run,
            }
    finally:
        scratch.unlink(missing_ok=True)
    return {
        "tool": "fio",
        "o_direct": True,
        "queue_depth": threads,
        "size_mib": size_mib,
        **_figures(results),
    }


def _figures(results: dict) -> dict:
    out = {}
    for name in TESTS:
        r = results.get(name) or {}
        s = r.get("s") or 0.0
        out[f"{name}_mib_s"] = round(r["bytes"] / MIB / s, 1) if s > 0 else None
        if name.startswith("rand"):
            out[f"{name}_iops"] = round(r["ops"] / s) if s > 0 else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", required=True, type=Path)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--seconds-per-test", type=float, default=4.0)
    parser.add_argument("--queue-depth", type=int, default=8)
    parser.add_argument("--tool", choices=("auto", "fio", "python"), default="auto")
    args = parser.parse_args()
    args.path.mkdir(parents=True, exist_ok=True)
    fio = shutil.which("fio") if args.tool in ("auto", "fio") else None
    if args.tool == "fio" and fio is None:
        raise SystemExit("disk_probe: --tool fio, but fio is not installed")
    started = time.perf_counter()
    if fio:
        result = fio_probe(fio, args.path, args.size_mib, args.seconds_per_test, args.queue_depth)
    else:
        result = python_probe(args.path, args.size_mib, args.seconds_per_test, args.queue_depth)
    usage = shutil.disk_usage(args.path)
    result.update(
        status="ok",
        path=str(args.path),
        device=block_device(args.path),
        free_bytes=usage.free,
        seconds_per_test=args.seconds_per_test,
        wall_s=round(time.perf_counter() - started, 2),
    )
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
