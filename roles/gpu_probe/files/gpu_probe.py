#!/usr/bin/env python3
"""Describe this node's GPUs and measure host<->device copy bandwidth with the node's own PyTorch.

Prints one JSON object on its last stdout line; always exits 0 unless its arguments are wrong, so a node
without a GPU (or without torch) is recorded as such instead of failing the setup:
  status   ok | no_gpu | failed
  reason   why not ok (null when ok)
  gpus     per GPU: name, bus id, driver, memory, PCIe generation/width (current and max, from nvidia-smi and
           sysfs), NUMA node and the CPUs local to it
  bandwidth  per piece size x direction (h2d, d2h) x host memory (pinned, pageable): GB/s (10^9 bytes/s) as
           the median over trials, each trial timed with CUDA events around `iterations` back-to-back copies
It stops measuring when its time budget is spent and says which measurements it skipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SMI_FIELDS = (
    "index",
    "name",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
)
# GT/s per lane -> PCIe generation (sysfs current_link_speed reads e.g. "32.0 GT/s PCIe").
GTS_TO_GEN = {"2.5": 1, "5.0": 2, "8.0": 3, "16.0": 4, "32.0": 5, "64.0": 6, "128.0": 7}
# Bytes a trial aims to move: enough copies of a small piece that launch jitter averages out.
TRIAL_BYTES = 256 << 20
MAX_ITERATIONS = 2000


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _gen(speed: str | None) -> int | None:
    if not speed:
        return None
    return GTS_TO_GEN.get(speed.split()[0])


def sysfs_pci(bus_id: str) -> dict[str, Any]:
    """NUMA node, local CPUs and PCIe link of a PCI device from /sys/bus/pci/devices."""
    # nvidia-smi writes an 8-digit domain (00000000:19:00.0); sysfs uses 4 (0000:19:00.0).
    domain, _, rest = bus_id.lower().partition(":")
    device = Path("/sys/bus/pci/devices") / f"{domain[-4:]}:{rest}"
    numa = _int_or_none(_read(device / "numa_node"))
    return {
        "sysfs_path": str(device) if device.exists() else None,
        "numa_node": numa if numa is None or numa >= 0 else None,
        "cpu_affinity": _read(device / "local_cpulist"),
        "link_gen_current": _gen(_read(device / "current_link_speed")),
        "link_gen_max": _gen(_read(device / "max_link_speed")),
        "link_width_current": _int_or_none(_read(device / "current_link_width")),
        "link_width_max": _int_or_none(_read(device / "max_link_width")),
    }


def smi_gpus(nvidia_smi: str, timeout_s: float) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """(GPUs as nvidia-smi lists them, the CUDA version the driver supports, why not when none)."""
    binary = shutil.which(nvidia_smi)
    if binary is None:
        return [], None, f"{nvidia_smi} not found"
    try:
        query = subprocess.run(
            [binary, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        header = subprocess.run([binary], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], None, f"{nvidia_smi} failed: {exc}"
    if query.returncode != 0:
        return (
            [],
            None,
            f"{nvidia_smi} exited {query.returncode}: {(query.stderr or query.stdout).strip()[:300]}",
        )
    cuda = None
    for line in header.stdout.splitlines():
        if "CUDA Version:" in line:
            cuda = line.split("CUDA Version:")[1].split()[0].strip(" |")
    gpus = []
    for line in query.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(SMI_FIELDS):
            continue
        values = dict(zip(SMI_FIELDS, fields, strict=True))
        gpu = {
            "index": _int_or_none(values["index"]),
            "name": values["name"],
            "bus_id": values["pci.bus_id"],
            "driver": values["driver_version"],
            "memory_mib": _int_or_none(values["memory.total"]),
            "pcie": {
                "gen_current": _int_or_none(values["pcie.link.gen.current"]),
                "gen_max": _int_or_none(values["pcie.link.gen.max"]),
                "width_current": _int_or_none(values["pcie.link.width.current"]),
                "width_max": _int_or_none(values["pcie.link.width.max"]),
            },
        }
        gpu.update(sysfs_pci(gpu["bus_id"]))
        gpus.append(gpu)
    return gpus, cuda, None if gpus else "nvidia-smi lists no GPU"


def _iterations(size: int) -> int:
    return max(3, min(MAX_ITERATIONS, TRIAL_BYTES // max(1, size)))


def measure(
    torch: Any, device: int, pieces: list[dict[str, Any]], trials: int, deadline: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Bandwidth of every piece, direction and host memory kind; what did not fit in the time budget."""
    cuda = torch.device("cuda", device)
    largest = max(int(p["bytes"]) for p in pieces)
    gpu_buffer = torch.empty(largest, dtype=torch.uint8, device=cuda)
    hosts = {
        "pinned": torch.empty(largest, dtype=torch.uint8, pin_memory=True),
        "pageable": torch.empty(largest, dtype=torch.uint8),
    }
    for buffer in (*hosts.values(), gpu_buffer):
        buffer.fill_(1)  # touch every page before timing
    stream = torch.cuda.current_stream(cuda)
    results, skipped = [], []
    for piece in sorted(pieces, key=lambda p: int(p["bytes"])):
        size = int(piece["bytes"])
        iterations = _iterations(size)
        for memory, host_buffer in hosts.items():
            for direction in ("h2d", "d2h"):
                label = f"{piece['name']} {direction} {memory}"
                if time.monotonic() > deadline:
                    skipped.append(label)
                    continue
                src = host_buffer[:size] if direction == "h2d" else gpu_buffer[:size]
                dst = gpu_buffer[:size] if direction == "h2d" else host_buffer[:size]
                non_blocking = memory == "pinned"
                for _ in range(2):  # warm-up: first-touch and driver paths
                    dst.copy_(src, non_blocking=non_blocking)
                torch.cuda.synchronize(cuda)
                rates = []
                for _ in range(trials):
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    start.record(stream)
                    for _ in range(iterations):
                        dst.copy_(src, non_blocking=non_blocking)
                    end.record(stream)
                    end.synchronize()
                    elapsed_s = start.elapsed_time(end) / 1000.0
                    if elapsed_s > 0:
                        rates.append(size * iterations / elapsed_s / 1e9)
                    if time.monotonic() > deadline:
                        break
                if not rates:
                    skipped.append(label)
                    continue
                results.append(
                    {
                        "piece": piece["name"],
                        "bytes": size,
                        "direction": direction,
                        "memory": memory,
                        "gb_s": round(statistics.median(rates), 3),
                        "gb_s_max": round(max(rates), 3),
                        "trials": len(rates),
                        "iterations": iterations,
                    }
                )
    del gpu_buffer, hosts
    torch.cuda.empty_cache()
    return results, skipped


def probe(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + args.budget_s
    result: dict[str, Any] = {
        "status": "no_gpu",
        "reason": None,
        "hostname": platform.node(),
        "python": sys.executable,
        "torch": None,
        "torch_cuda": None,
        "cuda_driver": None,
        "gpus": [],
        "device": None,
        "device_name": None,
        "bandwidth": [],
        "skipped": [],
        "pcie_after": None,
        "budget_s": args.budget_s,
    }
    gpus, cuda_driver, smi_reason = smi_gpus(args.nvidia_smi, min(15.0, args.budget_s / 3))
    result["gpus"], result["cuda_driver"] = gpus, cuda_driver
    try:
        import torch  # the node's own PyTorch: the one vLLM runs on
    except Exception as exc:  # a missing or broken torch is a fact about the node, not an error
        result["reason"] = f"no usable torch in {sys.executable} ({type(exc).__name__}: {exc})"
        return result
    result["torch"] = torch.__version__
    result["torch_cuda"] = torch.version.cuda
    if not torch.cuda.is_available():
        why = f"torch {torch.__version__} sees no CUDA device"
        result["reason"] = f"{why}; {smi_reason}" if smi_reason else why
        return result
    if args.device >= torch.cuda.device_count():
        result["status"] = "failed"
        result["reason"] = f"device {args.device} requested, torch sees {torch.cuda.device_count()}"
        return result
    result["device"] = args.device
    result["device_name"] = torch.cuda.get_device_name(args.device)
    pieces = [p for p in args.pieces if isinstance(p, dict) and int(p.get("bytes", 0)) > 0]
    if not pieces:
        result["status"] = "failed"
        result["reason"] = f"no piece size to measure in {args.pieces!r}"
        return result
    try:
        with torch.cuda.device(args.device):  # copies run on this device's current stream
            result["bandwidth"], result["skipped"] = measure(
                torch, args.device, pieces, args.trials, deadline
            )
    except Exception as exc:  # out of memory, a driver error: recorded, the sweep goes on
        result["status"] = "failed"
        result["reason"] = f"bandwidth measurement failed ({type(exc).__name__}: {exc})"
        return result
    # The link may train down at idle: read it again right after the copies kept it busy.
    for gpu in gpus:
        if gpu.get("index") == args.device and gpu.get("bus_id"):
            result["pcie_after"] = {
                k: v for k, v in sysfs_pci(gpu["bus_id"]).items() if k.startswith("link_")
            }
    result["status"] = "ok"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=json.loads, default=[{"name": "one_gib", "bytes": 1 << 30}],
                        help='JSON list of {"name": ..., "bytes": N}')  # fmt: skip
    parser.add_argument("--device", type=int, default=0, help="CUDA device measured")
    parser.add_argument("--trials", type=int, default=5, help="timed trials per measurement")
    parser.add_argument("--budget-s", type=float, default=40.0, help="stop measuring after this many seconds")
    parser.add_argument("--nvidia-smi", default="nvidia-smi")
    args = parser.parse_args(argv)
    if not isinstance(args.pieces, list) or args.trials < 1 or args.budget_s <= 0:
        parser.error("--pieces must be a JSON list, --trials >= 1, --budget-s > 0")
    started = time.monotonic()
    try:
        result = probe(args)
    except Exception as exc:  # never a traceback instead of a record
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "gpus": [], "bandwidth": []}
    result["duration_s"] = round(time.monotonic() - started, 3)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
