"""The report's evidence lines: what the /metrics series and PCP say about each scenario of a run, so that a
delta against the baseline comes with its reason (hit rates, offload traffic, KV pressure, preemptions,
CPU saturation, energy). Pure: reads the table's kvbench.metrics_summary columns; a column without data
gives no phrase.
"""

from __future__ import annotations

import math

import pandas as pd

from kvbench.naming import Ordering

# KV usage at or above this counts as full.
KV_FULL = 0.99


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _levels(rows: pd.DataFrame, column: str) -> pd.Series:
    """Mean of `column` per concurrency level over its repetitions, NaN levels dropped."""
    if column not in rows.columns:
        return pd.Series(dtype=float)
    values = pd.to_numeric(rows[column], errors="coerce")
    return values.groupby(rows["concurrency"]).mean().dropna().sort_index()


def _level(value: object) -> str:
    return f"c={float(value):g}"


def scenario_evidence(rows: pd.DataFrame) -> list[str]:
    """Phrases for one scenario's ok rows (all its levels)."""
    phrases: list[str] = []
    hit = _levels(rows, "prefix_cache_hit_rate")
    if not hit.empty:
        ends = [(hit.index[0], hit.iloc[0])] + ([(hit.index[-1], hit.iloc[-1])] if len(hit) > 1 else [])
        text = " → ".join(f"{_pct(v)} at {_level(c)}" for c, v in ends)
        phrases.append(f"GPU prefix-cache hit rate {text}")
    share = _levels(rows, "prompt_share_local_cache")
    external_share = _levels(rows, "prompt_share_external")
    if not share.empty:
        top = share.index[-1]
        extra = f", {_pct(external_share[top])} external" if top in external_share.index else ""
        phrases.append(f"{_pct(share[top])} of prompt tokens from the GPU cache{extra} at {_level(top)}")
    external = _levels(rows, "external_hit_rate")
    if not external.empty:
        top = external.index[-1]
        phrases.append(f"external hit rate {_pct(external[top])} at {_level(top)}")
    loaded = _levels(rows, "offload_load_bytes_per_s")
    stored = _levels(rows, "offload_store_bytes_per_s")
    if not loaded.empty or not stored.empty:
        top = (loaded if not loaded.empty else stored).index[-1]
        load = f"{loaded.get(top, math.nan) / 1e9:.2f} GB/s loaded" if top in loaded.index else None
        store = f"{stored.get(top, math.nan) / 1e9:.2f} GB/s stored" if top in stored.index else None
        phrases.append(", ".join(p for p in (load, store) if p) + f" at {_level(top)}")
    usage = _levels(rows, "kv_usage_max")
    if not usage.empty:
        full = usage[usage >= KV_FULL]
        if not full.empty:
            phrases.append(f"KV usage {_pct(full.iloc[0])} from {_level(full.index[0]).replace('=', '≥')}")
        else:
            phrases.append(f"KV usage at most {_pct(usage.max())}")
    preempted = pd.to_numeric(rows.get("preemptions"), errors="coerce") if "preemptions" in rows else None
    if preempted is not None and preempted.notna().any():
        phrases.append(f"preempted {preempted.sum():,.0f} times over {int(preempted.notna().sum())} point(s)")
    waiting = _levels(rows, "waiting_max")
    if not waiting.empty and waiting.max() > 0:
        phrases.append(f"up to {waiting.max():,.0f} requests waiting")
    busy, saturated, cpus = (_levels(rows, c) for c in ("cpu_busy_mean", "cpu_saturated_mean", "cpu_count"))
    if not busy.empty:
        top = busy.index[-1]
        text = f"CPU {_pct(busy[top])} busy"
        if top in saturated.index:
            of = f" of {cpus[top]:.0f}" if top in cpus.index else ""
            text += f", {saturated[top]:.1f}{of} CPUs saturated"
        phrases.append(f"{text} at {_level(top)}")
    energy = _levels(rows, "joules_per_output_token")
    if not energy.empty:
        top = energy.index[-1]
        phrases.append(f"{energy[top]:.3g} J per output token at {_level(top)}")
    ops = _levels(rows, "store_ops_per_s")
    if not ops.empty:
        top = ops.index[-1]
        phrases.append(f"store {ops[top]:,.0f} ops/s at {_level(top)}")
    return phrases


def evidence_section(frame: pd.DataFrame, ordering: Ordering) -> str:
    """One line per scenario of one run's rows (status ok); a note when no point has evidence columns."""
    rows = frame[frame["status"] == "ok"] if "status" in frame.columns else frame
    lines = []
    for scenario in ordering.scenarios_of(list(dict.fromkeys(rows["scenario"]))):
        phrases = scenario_evidence(rows[rows["scenario"] == scenario])
        if phrases:
            lines.append(f"- **{scenario}**: " + "; ".join(phrases) + ".")
    if not lines:
        return "_No /metrics series, snapshots or PCP archives with samples in the points' windows._"
    sources = rows["metrics_source"].dropna().unique() if "metrics_source" in rows.columns else []
    note = (
        "Counter rates are deltas inside each point's measured window "
        f"(from {', '.join(sorted(map(str, sources))) or 'no'} /metrics data); columns in "
        "`complete_metrics.csv`, time series from `kvbench metrics RUN --out DIR`."
    )
    return "\n".join([*lines, "", note])


def evidence_figures(tag: str) -> list[tuple[str, str]]:
    """(caption, file name) of the evidence figures for one run of the analysis (tag as plots.run_tag)."""
    from kvbench.metrics_plots import CPU_FIGURE, ENERGY_FIGURE, HIT_RATE_FIGURE

    named = (
        ("Hit rates vs concurrency", HIT_RATE_FIGURE),
        ("Per-CPU saturation vs concurrency", CPU_FIGURE),
        ("Energy per output token vs concurrency", ENERGY_FIGURE),
    )
    return [(caption, name.removesuffix(".png") + f"{tag}.png") for caption, name in named]
