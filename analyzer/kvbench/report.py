"""report.md: the evaluation's tables regenerated from the data, with the figures embedded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from kvbench import __version__
from kvbench.errors import BadInput
from kvbench.naming import order_models
from kvbench.plots import HEATMAP_FIGURE, LATENCY_FIGURE, PEAK_FIGURE, curve_figure_name

REDIS_VALKEY_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("LMCache remote backend", "lmcache-redis", "lmcache-valkey"),
    ("llm-d KV-block index", "llm-d-redis", "llm-d-valkey"),
)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str) -> str:
    """A Markdown table; `align` has one letter per column: l(eft) or r(ight)."""
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: float, bold: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:+.1f}%"
    return f"**{text}**" if bold else text


def _num(value: float, fmt: str = "{:,.1f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return fmt.format(value)


def _rows_per_model(peaks: pd.DataFrame, cells) -> list[list]:
    """Table rows grouped by model (its name bold on its first row), then scenario, then `cells(row)`."""
    rows = []
    for model in order_models(peaks["model"]):
        sub = peaks[peaks["model"] == model]
        for index, (_, row) in enumerate(sub.iterrows()):
            rows.append([f"**{model}**" if index == 0 else "", row["scenario"], *cells(row)])
    return rows


def peak_summary(peaks: pd.DataFrame, baseline: str) -> str:
    rows = _rows_per_model(
        peaks,
        lambda row: [
            _num(row["peak_output_tok_s"]),
            int(row["optimal_concurrency"]),
            "—" if row["scenario"] == baseline else _pct(row["delta_vs_baseline_pct"]),
        ],
    )
    headers = ["Model", "Configuration", "Peak Throughput (tok/s)", "Optimal Concurrency", "vs Baseline"]
    return md_table(headers, rows, "llrrr")


def redis_vs_valkey(peaks: pd.DataFrame) -> str:
    parts = []
    for title, redis, valkey in REDIS_VALKEY_PAIRS:
        rows = []
        for model in order_models(peaks["model"]):
            sub = peaks[peaks["model"] == model].set_index("scenario")
            if redis not in sub.index or valkey not in sub.index:
                continue
            r = float(sub.at[redis, "peak_output_tok_s"])
            v = float(sub.at[valkey, "peak_output_tok_s"])
            rows.append([model, f"{r:,.1f} tok/s", f"{v:,.1f} tok/s", _pct((v - r) / r * 100.0, bold=False)])
        if rows:
            parts.append(
                f"**{title}** (`{redis}` vs `{valkey}`; delta is Valkey against Redis)\n\n"
                + md_table(["Model", "Redis", "Valkey", "Delta"], rows, "lrrr")
            )
    return "\n\n".join(parts) if parts else "_No model has both a Redis and a Valkey scenario._"


def best_strategy(peaks: pd.DataFrame, baseline: str) -> str:
    rows = []
    for model in order_models(peaks["model"]):
        sub = peaks[peaks["model"] == model]
        best = sub.loc[sub["peak_output_tok_s"].idxmax()]
        base = sub[sub["scenario"] == baseline]
        base_peak = float(base["peak_output_tok_s"].iloc[0]) if not base.empty else math.nan
        name = best["scenario"] + (" (baseline)" if best["scenario"] == baseline else "")
        rows.append(
            [
                model,
                _num(base_peak),
                f"**{name}**",
                _num(best["peak_output_tok_s"]),
                int(best["optimal_concurrency"]),
                "—" if best["scenario"] == baseline else _pct(best["delta_vs_baseline_pct"], bold=False),
            ]
        )
    headers = [
        "Model",
        f"{baseline} peak (tok/s)",
        "Best strategy",
        "Peak (tok/s)",
        "at Concurrency",
        "vs Baseline",
    ]
    return md_table(headers, rows, "lrlrrr")


def latency_at_peak(peaks: pd.DataFrame) -> str:
    rows = _rows_per_model(
        peaks,
        lambda row: [
            int(row["optimal_concurrency"]),
            _num(row["ttft_ms_mean_at_peak"], "{:,.0f}"),
            _num(row["ttft_ms_p99_at_peak"], "{:,.0f}"),
            _num(row["tpot_ms_mean_at_peak"], "{:,.1f}"),
            _num(row["itl_ms_mean_at_peak"], "{:,.1f}"),
            _num(row["output_tok_s_total_at_peak"]),
        ],
    )
    headers = [
        "Model",
        "Configuration",
        "Concurrency",
        "TTFT mean (ms)",
        "TTFT p99 (ms)",
        "TPOT mean (ms)",
        "ITL mean (ms)",
        "Output tok/s (all requests)",
    ]
    return md_table(headers, rows, "llrrrrrr")


def _inputs_section(frame: pd.DataFrame, bad: Sequence[BadInput], files_read: int) -> str:
    counts = frame["status"].value_counts().to_dict() if not frame.empty else {}
    breakdown = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
    lines = [
        f"- Result files read: {files_read}; rows: {len(frame)}" + (f" ({breakdown})" if breakdown else "")
    ]
    versions = sorted({str(v) for v in frame["guidellm_version"].dropna()}) if not frame.empty else []
    if versions:
        lines.append(f"- GuideLLM versions: {', '.join(versions)}")
    not_ok = frame[frame["status"] != "ok"] if not frame.empty else frame
    if not not_ok.empty:
        lines.append("- Points not used for peaks:")
        for _, row in not_ok.iterrows():
            concurrency = "?" if pd.isna(row["concurrency"]) else int(row["concurrency"])
            lines.append(
                f"  - {row['model']} / {row['scenario']} / concurrency {concurrency}: "
                f"{row['status']} ({row['reason'] or 'no reason given'})"
            )
    if bad:
        lines.append("- Inputs that could not be read:")
        lines += [f"  - `{b.path}`: {b.reason}" for b in bad]
    return "\n".join(lines)


def write_report(
    out: Path,
    frame: pd.DataFrame,
    peaks: pd.DataFrame,
    baseline: str,
    figures: Sequence[Path],
    bad: Sequence[BadInput],
    files_read: int,
) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = {p.name for p in figures}
    sections = [
        "# KV-cache strategy evaluation: results",
        f"Generated by kvbench {__version__} on {stamp}. Throughput is GuideLLM's "
        "`output_tokens_per_second.successful.mean` (output tokens/s of successful requests); the peak is "
        "the highest value over the concurrency levels (mean over repetitions where a level ran more than "
        f"once). The baseline is `{baseline}`.",
        "## Inputs",
        _inputs_section(frame, bad, files_read),
    ]
    if peaks.empty:
        sections += ["## Peak Throughput Summary", "_No usable results: nothing to summarise._"]
    else:
        sections += [
            "## Peak Throughput Summary",
            peak_summary(peaks, baseline),
        ]
        if PEAK_FIGURE in names:
            sections.append(f"![Peak throughput, all scenarios]({PEAK_FIGURE})")
        sections += ["## Throughput vs Concurrency"]
        for model in order_models(peaks["model"]):
            name = curve_figure_name(model)
            if name in names:
                sections.append(f"![{model}: throughput vs concurrency]({name})")
        sections += ["## Latency at Peak Throughput", latency_at_peak(peaks)]
        if LATENCY_FIGURE in names:
            sections.append(f"![TTFT and TPOT at peak throughput]({LATENCY_FIGURE})")
        sections += ["## Performance Delta vs Baseline"]
        if HEATMAP_FIGURE in names:
            sections.append(f"![Performance delta heatmap]({HEATMAP_FIGURE})")
        sections += [
            "## Redis vs Valkey",
            redis_vs_valkey(peaks),
            "## Best Strategy per Model",
            best_strategy(peaks, baseline),
        ]
    path = out / "report.md"
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return path
