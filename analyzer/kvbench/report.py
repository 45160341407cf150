"""report.md: the verdict first, then the evaluation's tables regenerated from the data with their
intervals, the figures embedded, one part per run.

Pure: `report_text` returns the Markdown; kvbench.outputs writes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from kvbench import __version__
from kvbench.analysis import Analysis
from kvbench.deltas import is_true
from kvbench.errors import BadInput
from kvbench.markdown import md_table
from kvbench.metrics_report import evidence_figures, evidence_section
from kvbench.naming import Ordering
from kvbench.plots import HEATMAP_FIGURE, LATENCY_FIGURE, PEAK_FIGURE, curve_figure_name, run_tag, tagged
from kvbench.report_verdict import (
    correction_name,
    fmt_interval,
    fmt_p,
    health_lines,
    method_text,
    validity_table,
    verdict_section,
)
from kvbench.table import runs_in

REDIS_VALKEY_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("LMCache remote backend", "lmcache-redis", "lmcache-valkey"),
    ("llm-d KV-block index", "llm-d-redis", "llm-d-valkey"),
)
# Configuration shown per run in the inputs section: column -> label.
RUN_FACTS: tuple[tuple[str, str], ...] = (
    ("target", "target"),
    ("platform", "platform"),
    ("preset", "preset"),
    ("vllm_version", "vLLM"),
    ("lmcache_version", "LMCache"),
    ("guidellm_version", "GuideLLM"),
)


def _pct(value: float, bold: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:+.1f}%"
    return f"**{text}**" if bold else text


def _num(value: float, fmt: str = "{:,.1f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return fmt.format(value)


Cells = Callable[[pd.Series], list[object]]


def _rows_per_model(
    peaks: pd.DataFrame, ordering: Ordering, cells: Cells, mark_invalid: bool = False
) -> list[list[object]]:
    """Table rows grouped by model (its name bold on its first row), then scenario, then `cells(row)`.
    With `mark_invalid`, a scenario whose numbers include invalid points is marked †."""
    rows: list[list[object]] = []
    for model in ordering.models(peaks["model"]):
        sub = peaks[peaks["model"] == model]
        for index, (_, row) in enumerate(sub.iterrows()):
            name = row["scenario"]
            if mark_invalid and row.get("invalid_points", 0):
                name += " †"
            rows.append([f"**{model}**" if index == 0 else "", name, *cells(row)])
    return rows


def _n(value: object) -> object:
    return "—" if value is None or pd.isna(value) else int(value)  # type: ignore[call-overload]


def peak_summary(
    peaks: pd.DataFrame,
    baseline: str,
    ordering: Ordering,
    correction: str = "Holm",
    mark_invalid: bool = False,
) -> str:
    """The evaluation's peak table; the change is bold only where it is significant, with its interval,
    its adjusted p-value and the repetitions at the peak."""

    def cells(row: pd.Series) -> list[object]:
        is_baseline = row["scenario"] == baseline
        delta = _pct(row["delta_vs_baseline_pct"], bold=is_true(row.get("significant")))
        return [
            _num(row["peak_output_tok_s"]),
            int(row["optimal_concurrency"]),
            "—" if is_baseline else delta,
            "—" if is_baseline else fmt_interval(row.get("delta_ci_low_pct"), row.get("delta_ci_high_pct")),
            "—" if is_baseline else fmt_p(row.get("p_adjusted")),
            _n(row.get("n_repetitions", row.get("repetitions_at_peak"))),
        ]

    rows = _rows_per_model(peaks, ordering, cells, mark_invalid)
    headers = [
        "Model",
        "Configuration",
        "Peak Throughput (tok/s)",
        "Optimal Concurrency",
        "vs Baseline",
        "95 % CI",
        f"p ({correction})",
        "n",
    ]
    return md_table(headers, rows, "llrrrrrr")


def redis_vs_valkey(peaks: pd.DataFrame, ordering: Ordering) -> str:
    parts = []
    for title, redis, valkey in REDIS_VALKEY_PAIRS:
        rows = []
        for model in ordering.models(peaks["model"]):
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
    if parts:
        parts.append(
            "_These deltas are plain ratios of the two peaks, not tested against each other; each peak's "
            "test against the baseline is in the summary above._"
        )
    return "\n\n".join(parts) if parts else "_No model has both a Redis and a Valkey scenario._"


def best_strategy(peaks: pd.DataFrame, baseline: str, ordering: Ordering) -> str:
    rows = []
    for model in ordering.models(peaks["model"]):
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


def latency_at_peak(peaks: pd.DataFrame, ordering: Ordering) -> str:
    rows = _rows_per_model(
        peaks,
        ordering,
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


def _run_facts(frame: pd.DataFrame, run: str) -> str:
    """`target nodes, preset cpu-local, vLLM 0.32.0, ...`: the values a run's rows agree on."""
    rows = frame[frame["run"] == run]
    facts = []
    for column, label in RUN_FACTS:
        values = sorted({str(v) for v in rows[column].dropna()})
        if values:
            facts.append(f"{label} {'/'.join(values)}")
    models = sorted({str(m) for m in rows["model"].dropna()})
    return ", ".join([f"model {'/'.join(models)}", *facts])


def _inputs_section(frame: pd.DataFrame, bad: Sequence[BadInput], files_read: int, ordering: Ordering) -> str:
    counts = frame["status"].value_counts().to_dict() if not frame.empty else {}
    breakdown = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
    lines = [
        f"- Result files read: {files_read}; rows: {len(frame)}" + (f" ({breakdown})" if breakdown else "")
    ]
    runs = [r for r in runs_in(frame) if r]
    if runs:
        lines.append(f"- Runs ({len(runs)}; each reported on its own, never averaged together):")
        lines += [f"  - `{run}`: {_run_facts(frame, run)}" for run in runs]
    versions = sorted({str(v) for v in frame["guidellm_version"].dropna()}) if not frame.empty else []
    if versions:
        lines.append(f"- GuideLLM versions: {', '.join(versions)}")
    not_ok = frame[frame["status"] != "ok"] if not frame.empty else frame
    if not not_ok.empty:
        lines.append("- Points not used for peaks:")
        for _, row in not_ok.iterrows():
            concurrency = "?" if pd.isna(row["concurrency"]) else int(row["concurrency"])
            where = f"{row['run']}: " if len(runs) > 1 and row["run"] else ""
            lines.append(
                f"  - {where}{row['model']} / {row['scenario']} / concurrency {concurrency}: "
                f"{row['status']} ({row['reason'] or 'no reason given'})"
            )
    if bad:
        lines.append("- Inputs that could not be read:")
        lines += [f"  - `{b.path}`: {b.reason}" for b in bad]
    return "\n".join(lines)


def level_matrix(deltas: pd.DataFrame) -> str:
    """Change against the baseline per scenario (rows) and level (columns); * marks a significant one."""
    levels = deltas[deltas["concurrency"].astype(str) != "peak"]
    if levels.empty:
        return "_No level has both the scenario and the baseline._"
    concurrencies = sorted({int(c) for c in levels["concurrency"]})
    rows = []
    for scenario, group in levels.groupby("scenario", sort=False):
        by_level = {int(r["concurrency"]): r for _, r in group.iterrows()}
        cells: list[object] = [scenario]
        for concurrency in concurrencies:
            row = by_level.get(concurrency)
            if row is None or pd.isna(row["delta_pct"]):
                cells.append("—")
                continue
            mark = "*" if is_true(row["significant"]) else ""
            cells.append(f"{row['delta_pct']:+.1f}%{mark}")
        rows.append(cells)
    headers = ["Configuration", *(f"c={c}" for c in concurrencies)]
    return md_table(headers, rows, "l" + "r" * len(concurrencies))


def _run_sections(
    result: Analysis, run: str, figures: set[str], tag: str, ordering: Ordering, level: str
) -> list[str]:
    """The evaluation's tables and figures for the peaks of one run; `level` is the heading's #s."""
    peaks = result.peaks[result.peaks["run"] == run]
    deltas = result.deltas[result.deltas["run"] == run]
    baseline = result.baseline
    correction = correction_name(result.options)
    sections = [
        f"{level} Peak Throughput Summary",
        peak_summary(peaks, baseline, ordering, correction, result.include_invalid),
    ]
    if tagged(PEAK_FIGURE, tag) in figures:
        sections.append(f"![Peak throughput, all scenarios]({tagged(PEAK_FIGURE, tag)})")
    sections.append(f"{level} Throughput vs Concurrency")
    for model in ordering.models(peaks["model"]):
        name = curve_figure_name(model, tag)
        if name in figures:
            sections.append(f"![{model}: throughput vs concurrency]({name})")
    sections += [f"{level} Latency at Peak Throughput", latency_at_peak(peaks, ordering)]
    if tagged(LATENCY_FIGURE, tag) in figures:
        sections.append(f"![TTFT and TPOT at peak throughput]({tagged(LATENCY_FIGURE, tag)})")
    sections.append(f"{level} Performance Delta vs Baseline")
    if tagged(HEATMAP_FIGURE, tag) in figures:
        sections.append(f"![Performance delta heatmap]({tagged(HEATMAP_FIGURE, tag)})")
    sections += [
        "Per level (`delta_vs_baseline.csv` has the intervals and p-values; * significant):",
        level_matrix(deltas),
        f"{level} Redis vs Valkey",
        redis_vs_valkey(peaks, ordering),
        f"{level} Best Strategy per Model",
        best_strategy(peaks, baseline, ordering),
        # Why each scenario moved: the /metrics and PCP evidence of its points (kvbench.metrics_report).
        f"{level} Evidence per Scenario",
        evidence_section(result.frame[result.frame["run"] == run], ordering),
    ]
    sections += [f"![{caption}]({name})" for caption, name in evidence_figures(tag) if name in figures]
    return sections


def _verdicts(result: Analysis, runs: list[str]) -> list[str]:
    sections = ["## Verdict"]
    for run in runs:
        if len(runs) > 1:
            sections.append(f"### Verdict for run `{run or '(unnamed)'}`")
        deltas = result.deltas[result.deltas["run"] == run]
        validity = result.validity[result.validity["run"] == run]
        sections.append(
            verdict_section(deltas, validity, result.baseline, result.options, result.run_max_n(run))
        )
        crashes = health_lines(result.frame[result.frame["run"] == run])
        if crashes:
            sections.append("- **Server crashed or stalled (never averaged over silently):**")
            sections.append("\n".join(f"  {line}" for line in crashes))
    if result.include_invalid:
        sections.append(
            "_--include-invalid: points judged invalid are in the numbers below, their configurations "
            "marked †; nothing that includes one is called significant._"
        )
    sections.append(method_text(result.options))
    return sections


def report_text(
    result: Analysis,
    figures: Mapping[str, Sequence[Path]],
    bad: Sequence[BadInput],
    files_read: int,
    ordering: Ordering,
    timing: str | None = None,
    capacity: str | None = None,
) -> str:
    """The whole report.md: the verdict first. With several runs each run has its own part; runs are never
    compared here (`kvbench compare` does that)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    frame, peaks, baseline = result.frame, result.peaks, result.baseline
    sections = [
        "# KV-cache strategy evaluation: results",
        f"Generated by kvbench {__version__} on {stamp}. Throughput is GuideLLM's "
        "`output_tokens_per_second.successful.mean` (output tokens/s of successful requests); the peak is "
        "the highest value over the concurrency levels (mean over repetitions where a level ran more than "
        f"once). The baseline is `{baseline}`, taken from the same run.",
    ]
    runs = runs_in(frame)
    if runs:
        sections += _verdicts(result, runs)
    sections += [
        "## Inputs",
        _inputs_section(frame, bad, files_read, ordering),
        "## Validity",
        validity_table(result.validity, len([r for r in runs if r]) > 1),
    ]
    if timing:
        sections += ["## Sweep timing", timing]
    if capacity:
        sections += ["## KV capacity", capacity]
    if peaks.empty:
        sections += ["## Peak Throughput Summary", "_No usable results: nothing to summarise._"]
        return "\n\n".join(sections) + "\n"
    peak_runs = runs_in(peaks)
    for run in peak_runs:
        names = {p.name for p in figures.get(run, [])}
        if len(peak_runs) == 1:
            sections += _run_sections(result, run, names, "", ordering, "##")
        else:
            sections.append(f"## Run `{run or '(unnamed)'}`")
            sections += _run_sections(result, run, names, run_tag(run, peak_runs), ordering, "###")
    return "\n\n".join(sections) + "\n"
