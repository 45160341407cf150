"""The KV-capacity figure of one run: the working set over concurrency against the GPU KV cache and each
scenario's tier behind it (left), and each scenario's change against the baseline at the same levels (right).
Levels where the working set fits on the GPU are shaded in both panels: offload cannot help there.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from kvbench.capacity_report import tier_of
from kvbench.ingest.capacity import RunCapacity
from kvbench.naming import Ordering, safe_filename
from kvbench.plan.capacity import bytes_per_token
from kvbench.plots import Style, save_png

FIGURE_PREFIX = "kv_capacity"


def figure_name(model: str, tag: str = "") -> str:
    return f"{FIGURE_PREFIX}_{safe_filename(model)}{tag}.png"


def capacity_figure(
    run: RunCapacity, levels: pd.DataFrame, baseline: str, ordering: Ordering, out: Path, tag: str = ""
) -> Path:
    plan = run.plan
    per_token = bytes_per_token(plan["model"])
    scenarios = [s for s in plan.get("scenarios") or [] if s.get("supported", True)]
    style = Style([s["name"] for s in plan.get("scenarios") or []], ordering)
    positions = list(range(len(levels)))
    labels = [str(int(c)) for c in levels["concurrency"]]
    gpu = levels["gpu_kv_tokens"].iloc[0] if len(levels) else None
    device = str(levels["kv_cache_device"].iloc[0]) if len(levels) else "GPU"
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    fits = [i for i, f in zip(positions, levels["fits_on_gpu"], strict=True) if f is True]
    for ax in (left, right):
        for i in fits:
            ax.axvspan(i - 0.5, i + 0.5, color="#dddddd", zorder=0)
        ax.set_xticks(positions, labels)
        ax.set_xlabel("Concurrency (streams)")
        ax.grid(axis="y", alpha=0.3)
    left.plot(positions, levels["tokens"], color="black", marker="o", linewidth=2, label="working set")
    if gpu and not pd.isna(gpu):
        left.axhline(float(gpu), color="#4d4d4d", linestyle="-", linewidth=1.5, label=f"{device} KV cache")
        for scenario in scenarios:
            tier = tier_of(scenario)
            if tier and tier.kind != "remote":
                left.axhline(
                    float(gpu) + tier.bytes / per_token,
                    color=style.colours[scenario["name"]],
                    linestyle="--",
                    linewidth=1.2,
                    label=f"{device} + {scenario['name']} {tier.kind} tier",
                )
    left.set_yscale("log")
    left.set_ylabel("KV tokens")
    left.set_title(f"Working set against capacity (grey: fits in the {device} KV cache)")
    left.legend(fontsize=8, loc="best")
    right.axhline(0.0, color="black", linewidth=0.8)
    drawn = 0
    for scenario in scenarios:
        column = f"delta_pct:{scenario['name']}"
        if scenario["name"] == baseline or column not in levels:
            continue
        right.plot(
            positions,
            levels[column].astype(float),
            color=style.colours[scenario["name"]],
            marker=style.markers[scenario["name"]],
            linewidth=1.5,
            label=scenario["name"],
        )
        drawn += 1
    right.set_ylabel(f"Output throughput vs {baseline} (%)")
    right.set_title("Each scenario's change at that level")
    if drawn:
        right.legend(fontsize=8, loc="best")
    else:
        right.text(0.5, 0.5, "no deltas against the baseline", ha="center", transform=right.transAxes)
    fig.suptitle(f"{plan['model']['name']}: KV working set, capacity and effect")
    return save_png(fig, out / figure_name(plan["model"]["name"], tag))
