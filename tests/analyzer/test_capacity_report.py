"""The report's KV-capacity section, from run directories written by the one record path
(tests/records/builders) with canned vLLM start-up lines and a canned GPU probe in the manifest."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import zstandard

from kvbench.ingest.capacity import kv_cache_size
from tests.records.builders import (
    SweepOptions,
    analyze,
    checked,
    finished_run,
    make_request,
    record,
)

SCENARIOS = ("no-offload", "native-offload", "lmcache-local")
# vLLM's start-up lines as 0.14 (GPU) and 0.32 (device named, with the concurrency) write them.
LINE_0_14 = (
    "(EngineCore_DP0 pid=211) INFO 03-01 10:00:01 [kv_cache_utils.py:1087] GPU KV cache size: 7,168 tokens"
)
LINE_0_32 = (
    "(EngineCore pid=3111) INFO 11-29 14:23:48 [kv_cache_utils.py:2327] CPU KV cache size: 1,048,576 tokens, "
    "Maximum concurrency for 16,384 tokens per request: 64.00x"
)
# The H200 figures of issue 9 (pinned), and a pageable path that is slower.
BANDWIDTH = {"offload_block": 52.0, "layer_piece": 5.5, "lmcache_chunk": 38.0, "one_gib": 55.0}
PIECE_BYTES = {
    "offload_block": 1_179_648,
    "layer_piece": 16_384,
    "lmcache_chunk": 18_874_368,
    "one_gib": 1 << 30,
}


def gpu_probe(status: str = "ok") -> dict[str, Any]:
    """A probe record shaped as roles/gpu_probe/files/gpu_probe.py prints it."""
    bandwidth = [
        {"piece": piece, "bytes": PIECE_BYTES[piece], "direction": direction, "memory": memory,
         "gb_s": gb_s if memory == "pinned" else gb_s / 4, "gb_s_max": gb_s, "trials": 5, "iterations": 10}
        for piece, gb_s in BANDWIDTH.items()
        for direction in ("h2d", "d2h")
        for memory in ("pinned", "pageable")
    ]  # fmt: skip
    gpu = {"index": 0, "name": "NVIDIA H200", "bus_id": "00000000:19:00.0", "driver": "580.159.04",
           "memory_mib": 143771,
           "pcie": {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16},
           "numa_node": 0, "cpu_affinity": "0-47"}  # fmt: skip
    if status != "ok":
        return {
            "status": status,
            "reason": "torch 2.13.0+cpu sees no CUDA device",
            "gpus": [],
            "bandwidth": [],
        }
    return {"status": "ok", "reason": None, "torch": "2.11.0+cu130", "cuda_driver": "13.0", "device": 0,
            "device_name": "NVIDIA H200", "gpus": [gpu], "bandwidth": bandwidth}  # fmt: skip


def gpu_request(pressure: float | None = 0.5) -> dict[str, Any]:
    request = make_request(
        model="Qwen3-8B", target="nodes", platform="cuda", preset="llm-d-v0.5.0", scenarios=SCENARIOS
    )
    if pressure is not None:
        request["memory_pressure"] = pressure
    return request


def write_server_logs(run_dir: Path, line: str) -> None:
    """Each scenario's whole server log as the nodes target fetches it: server/<host>.log(.zst)."""
    for number, scenario in enumerate(SCENARIOS):
        folder = run_dir / scenario / "server"
        folder.mkdir(parents=True, exist_ok=True)
        text = f"INFO starting\n{line}\nINFO Application startup complete.\n"
        if number % 2:
            (folder / "server-1.log").write_text(text)
        else:
            (folder / "server-1.log.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode()))


def add_probe(run_dir: Path, probe: dict[str, Any]) -> None:
    outcome = {
        "status": "complete",
        "harness": {"commit": "0" * 40, "dirty": False},
        "hosts": {"server-1": {"cpu_model": "Xeon", "memory_gib": 2015.6, "gpus": [], "gpu_probe": probe}},
    }
    checked(record("manifest", run_dir, [], outcome))


@pytest.fixture(scope="module")
def pressured_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("capacity") / "results"
    run_dir = finished_run(results, gpu_request(), SweepOptions(throughput_scale={"native-offload": 1.2}))
    write_server_logs(run_dir, LINE_0_14)
    add_probe(run_dir, gpu_probe())
    return run_dir


def section(report: str) -> str:
    return report.split("## KV capacity", 1)[1].split("\n## ", 1)[0]


def test_kv_cache_size_reads_the_start_up_line_of_each_vllm_release(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(f"INFO x\n{LINE_0_14}\n")
    assert kv_cache_size(log) == (7_168, "GPU")
    log.write_text(f"INFO x\n{LINE_0_32}\n{LINE_0_14}\n")
    assert kv_cache_size(log) == (1_048_576, "CPU")  # the first start-up line
    log.write_text("INFO Maximum concurrency for 4,096 tokens per request: 2.00x\n")
    assert kv_cache_size(log) is None


def test_the_capacity_table_has_the_model_the_logs_the_tiers_and_the_reload_time(
    pressured_run: Path, tmp_path: Path
) -> None:
    result = analyze(pressured_run, out=tmp_path / "out", figures=True)
    assert result.exit_code == 0, result.stderr
    text = section((result.out / "report.md").read_text())
    assert "### Qwen3-8B" in text
    assert "KV per token: 147,456 B (2 x 36 layers x 8 KV heads x 128 x 2 B)" in text
    assert "per block of 16 tokens: 2,359,296 B (2.25 MiB)" in text
    # memory_pressure 0.5 of the working set at c=16 (16 x 512 + 16 x 2 x 192 = 14,336 tokens) -> 448 blocks.
    assert "memory_pressure 0.5: vLLM's GPU cache set to 448 blocks = 7,168 tokens" in text
    assert "| no-offload | 7,168 (GPU) | none |" in text
    # native offload: cpu_bytes_to_use = kv_offload_gib (2 GiB) -> 14,563 tokens of 147,456 B.
    # Reload of one 512-token prefix: 512 x 147,456 / 2 ranks = 37,748,736 B per GPU at 52 GB/s = 0.7 ms.
    assert (
        "| native-offload | 7,168 (GPU) | cpu: 2.00 GiB | 14,563 | 0.7 ms (offload_block @ 52.0 GB/s) |"
        in text
    )
    # LMCache: 1 GiB per rank x 2 ranks; its reload runs at the chunk's bandwidth.
    assert (
        "| lmcache-local | 7,168 (GPU) | cpu: 2.00 GiB | 14,563 | 1.0 ms (lmcache_chunk @ 38.0 GB/s) |"
        in text
    )
    assert "NVIDIA H200, driver 580.159.04, CUDA 13.0, PCIe gen 5/5 x16/16 (current/max), NUMA node 0" in text
    assert "| layer_piece | 16 KiB | 5.5 | 5.5 | 1.4 | 1.4 |" in text
    # Levels 1 and 4 fit in the 7,168-token GPU cache, 16 does not: offload cannot help at 1 and 4.
    assert "At concurrency 1, 4 the working set fits in the GPU KV cache (7,168 tokens" in text
    assert "**offload cannot help there**" in text
    assert "| 16 | 16 | 14,336 | 1.97 GiB | 2x | no | +20.0% |" in text
    assert "![Qwen3-8B: KV working set against capacity](kv_capacity_Qwen3-8B.png)" in text
    assert (result.out / "kv_capacity_Qwen3-8B.png").stat().st_size > 10_000
    levels = pd.read_csv(result.out / "kv_capacity.csv")
    assert list(levels["tokens"]) == [896, 3_584, 14_336]
    assert list(levels["fits_on_gpu"]) == [True, True, False]
    assert list(levels["delta_pct:native-offload"].round(1)) == [20.0, 20.0, 20.0]


def test_a_working_set_that_fits_everywhere_says_offload_cannot_help(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", gpu_request(pressure=None))
    write_server_logs(run_dir, LINE_0_32.replace("CPU", "GPU"))
    add_probe(run_dir, gpu_probe("no_gpu"))
    result = analyze(run_dir, out=tmp_path / "out")
    text = section((result.out / "report.md").read_text())
    assert "memory_pressure" not in text
    assert "The working set fits in the GPU KV cache (1,048,576 tokens" in text
    assert "offload cannot help in this run" in text
    assert "GPU probe on `server-1`: no_gpu (torch 2.13.0+cpu sees no CUDA device)" in text
    assert (
        "0.0 ms" not in text and "| native-offload | 1,048,576 (GPU) | cpu: 2.00 GiB | 14,563 | — |" in text
    )


def test_without_a_server_log_the_planned_cache_is_used_and_named(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", gpu_request(pressure=0.5))
    result = analyze(run_dir, out=tmp_path / "out")
    text = section((result.out / "report.md").read_text())
    assert "(7,168 tokens, memory_pressure (planned, no server log read))" in text
    assert "GPU probe: none in the manifest" in text


def test_a_probe_that_breaks_its_schema_is_kept_as_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path / "results", gpu_request())
    bad = copy.deepcopy(gpu_probe())
    bad["bandwidth"][0]["direction"] = "sideways"
    outcome = {"status": "complete", "hosts": {"server-1": {"cpu_model": "Xeon", "gpu_probe": bad}}}
    checked(record("manifest", run_dir, [], outcome))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    kept = manifest["hosts"]["server-1"]
    assert kept["cpu_model"] == "Xeon"
    assert kept["gpu_probe"]["status"] == "failed" and kept["gpu_probe"]["bandwidth"] == []
    assert "bandwidth/0/direction: 'sideways' is not one of" in kept["gpu_probe"]["reason"]
