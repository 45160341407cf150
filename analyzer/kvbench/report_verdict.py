"""The verdict report.md opens with, and its validity section. Pure: returns Markdown.

The verdict says, per run: what is significantly better or worse than the baseline (with intervals), what
is indistinguishable from it, what could not be tested, what was invalid and why, and whether the load
generator was saturated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from kvbench.deltas import is_true
from kvbench.markdown import md_table
from kvbench.stats import CORRECTIONS, StatsOptions
from kvbench.validity import CHECKS, CLIENT_CHECKS, INVALID, NA, WARN

MAX_LISTED_POINTS = 40


def fmt_pct(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:+.1f} %"


def fmt_interval(low: float, high: float) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "—"
    return f"[{low:+.1f} %, {high:+.1f} %]"


def fmt_p(value: float) -> str:
    if value is None or pd.isna(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def correction_name(options: StatsOptions) -> str:
    return "Holm" if options.correction == "holm" else "BH"


def method_text(
    options: StatsOptions, reference: str = "the baseline", family: str = "within each run"
) -> str:
    """How the deltas were tested, in one paragraph."""
    return (
        f"Intervals are {options.confidence:.0%} intervals of each comparison on its own (not widened for "
        "the number of comparisons; the significance is). Per concurrency level a scenario is compared "
        f"with {reference} by Welch's t-test on log throughput (the interval is that of the ratio); at the "
        f"peak by a bootstrap over repetitions ({options.resamples} resamples, seed {options.seed}) that "
        "recomputes both peaks, with Student's t on the bootstrap's bias-corrected estimate and standard "
        "error. "
        f"p-values are adjusted with {CORRECTIONS[options.correction]}, {family} separately for the "
        f"peaks and for the levels; significant means adjusted p < {options.alpha:g}, a difference of at "
        "least the measurement resolution (one request's output tokens over the measured window), and no "
        "invalid point involved."
    )


def _levels_note(levels: pd.DataFrame) -> str:
    hits = levels[levels["significant"].map(is_true)]
    if hits.empty:
        return ""
    items = ", ".join(f"{int(r['concurrency'])} ({fmt_pct(r['delta_pct'])})" for _, r in hits.iterrows())
    return f"; significant at concurrency {items}"


def _peak_line(row: pd.Series, levels: pd.DataFrame, options: StatsOptions) -> str:
    tested = ""
    if not pd.isna(row["p_adjusted"]):
        interval = fmt_interval(row["ci_low_pct"], row["ci_high_pct"])
        tested = f" {interval}, p({correction_name(options)}) {fmt_p(row['p_adjusted'])}"
    text = (
        f"`{row['scenario']}`: peak {fmt_pct(row['delta_pct'])}{tested}, "
        f"at concurrency {int(row['optimal_concurrency'])} vs {int(row['baseline_optimal_concurrency'])}, "
        f"n {int(row['n'])} vs {int(row['n_baseline'])}"
    )
    text += _levels_note(levels)
    if not is_true(row.get("comparable", True)):
        text += f" — ⚠ GuideLLM versions differ ({row['guidellm_versions']}): throughput is not defined alike"
    if isinstance(row.get("note"), str) and row["note"]:
        text += f" ({row['note']})"
    return text


def invalid_lines(validity: pd.DataFrame) -> list[str]:
    """One line per scenario with points judged invalid: how many, and the distinct reasons."""
    measured = validity[validity["status"] == "ok"]
    lines = []
    for scenario, group in measured.groupby("scenario", sort=False):
        bad = group[group["verdict"] == INVALID]
        if bad.empty:
            continue
        reasons: dict[str, None] = {}
        for _, row in bad.iterrows():
            for name in CHECKS:
                if row[name] == INVALID:
                    reasons.setdefault(_generic(row[f"{name}_evidence"]), None)
        whole = "all" if len(bad) == len(group) else f"{len(bad)} of {len(group)}"
        lines.append(f"`{scenario}`: {whole} points invalid, left out — {'; '.join(reasons)}")
    return lines


def health_lines(frame: pd.DataFrame) -> list[str]:
    """One line per scenario whose server crashed or stalled, with every crash's exception line from the
    server log: such a scenario's numbers cover only the points that survived. Markdown list lines."""
    needed = ("scenario", "server_crashed", "server_crash_line", "watchdog_stalled")
    if frame.empty or any(column not in frame.columns for column in needed):
        return []
    lines = []
    for scenario, group in frame.groupby("scenario", sort=False):
        crashed = group[group["server_crashed"].map(is_true)]
        # A server that died is a crash, even where the watchdog saw its /metrics go silent first.
        stalled = group[group["watchdog_stalled"].map(is_true) & ~group["server_crashed"].map(is_true)]
        if crashed.empty and stalled.empty:
            continue
        parts = [f"{len(crashed)} server crash{'es' if len(crashed) != 1 else ''}"] if len(crashed) else []
        parts += [f"{len(stalled)} watchdog stop{'s' if len(stalled) != 1 else ''}"] if len(stalled) else []
        lines.append(f"- `{scenario}`: {', '.join(parts)}; its numbers cover only the points that survived")
        for _, row in crashed.iterrows():
            where = f"c{row['concurrency']} r{row['repetition']}"
            text = row["server_crash_line"]
            line = text if isinstance(text, str) and text else "no exception line in the server log"
            lines.append(f"  - {where}: `{line}`")
    return lines


def _generic(evidence: str) -> str:
    """Evidence without the per-point numbers that would make every line distinct."""
    return evidence.split(" (", 1)[0]


def client_line(validity: pd.DataFrame) -> str:
    """Whether the load generator kept up, with its evidence."""
    measured = validity[validity["status"] == "ok"]
    if measured.empty:
        return "no measured point"
    flagged = measured[(measured[list(CLIENT_CHECKS)] == WARN).any(axis=1)]
    known = measured[(measured[list(CLIENT_CHECKS)] != NA).any(axis=1)]
    if known.empty:
        return "not recorded for these points (no client evidence in the records)"
    if flagged.empty:
        return f"kept up at all {len(known)} points with client evidence"
    examples = "; ".join(
        dict.fromkeys(
            str(row[f"{name}_evidence"])
            for _, row in flagged.head(3).iterrows()
            for name in CLIENT_CHECKS
            if row[name] == WARN
        )
    )
    return (
        f"**saturated or short of its target concurrency at {len(flagged)} of {len(measured)} points** "
        f"(e.g. {examples}); at those points the numbers may measure the client, not the server"
    )


def verdict_section(
    deltas: pd.DataFrame,
    validity: pd.DataFrame,
    baseline: str,
    options: StatsOptions,
    max_n: int,
) -> str:
    """The verdict of one run (its delta rows and its validity rows)."""
    lines: list[str] = []
    if max_n < 2:
        lines.append(
            "**Every point ran once: no difference can be called significant.** The deltas below are single "
            "measurements with no interval; run the sweep with `-e repetitions=N` (N >= 3) to test them."
        )
        lines.append("")
    peaks = deltas[deltas["concurrency"].astype(str) == "peak"] if not deltas.empty else deltas
    groups: dict[str, list[str]] = {"better": [], "worse": [], "same": [], "untested": []}
    for _, row in peaks.iterrows():
        levels = deltas[
            (deltas["scenario"] == row["scenario"]) & (deltas["concurrency"].astype(str) != "peak")
        ]
        line = _peak_line(row, levels, options)
        if pd.isna(row["p_adjusted"]):
            groups["untested"].append(line)
        elif is_true(row["significant"]):
            groups["better" if row["delta_pct"] > 0 else "worse"].append(line)
        else:
            groups["same"].append(line)
    titles = {
        "better": f"Significantly better than `{baseline}`",
        "worse": f"Significantly worse than `{baseline}`",
        "same": f"Indistinguishable from `{baseline}`",
        "untested": "Not testable (no interval)",
    }
    for key, title in titles.items():
        if groups[key]:
            lines.append(f"- **{title}:**")
            lines += [f"  - {item}" for item in groups[key]]
    if peaks.empty:
        lines.append(f"- No scenario could be compared with `{baseline}`.")
    invalid = invalid_lines(validity)
    if invalid:
        lines.append("- **Invalid, never counted as a result:**")
        lines += [f"  - {item}" for item in invalid]
    lines.append(f"- **Load generator:** {client_line(validity)}.")
    return "\n".join(lines)


def _levels_text(values: pd.Series) -> str:
    levels = sorted({int(v) for v in values.dropna()})
    return ", ".join(map(str, levels)) or "?"


def validity_table(validity: pd.DataFrame, multi_run: bool) -> str:
    """The measured points that are not plainly valid, grouped by scenario, verdict and reasons (every
    point, check and evidence is in validity.csv)."""
    measured = validity[validity["status"] == "ok"]
    counts = measured["verdict"].value_counts().to_dict()
    summary = ", ".join(f"{name}: {counts.get(name, 0)}" for name in ("valid", "warn", "invalid"))
    flagged = measured[measured["verdict"] != "valid"]
    if flagged.empty:
        return f"Every measured point is valid ({summary}). Each check and its evidence: `validity.csv`."
    keys = [*(["run"] if multi_run else []), "model", "scenario", "verdict"]
    generic = flagged.assign(why=[_why(row) for _, row in flagged.iterrows()])
    rows: list[Sequence[object]] = []
    for key, group in generic.groupby([*keys, "why"], sort=False):
        rows.append([*key[:-1], len(group), _levels_text(group["concurrency"]), key[-1]])
    headers = [
        *(["Run"] if multi_run else []),
        "Model",
        "Scenario",
        "Verdict",
        "Points",
        "Concurrency",
        "Why",
    ]
    more = len(rows) - MAX_LISTED_POINTS
    tail = f"\n\n_{more} more groups in `validity.csv`._" if more > 0 else ""
    text = f"Measured points: {summary}. Every check and its evidence, per point: `validity.csv`.\n\n"
    align = "l" * (len(keys)) + "rll"
    return text + md_table(headers, rows[:MAX_LISTED_POINTS], align) + tail


def _why(row: pd.Series) -> str:
    """The checks of a point that did not pass, with their evidence stripped of per-point numbers."""
    found = [
        f"{row[name]}: {_generic(str(row[f'{name}_evidence']))}"
        for name in CHECKS
        if row[name] in (WARN, INVALID)
    ]
    return "; ".join(found)


def max_repetitions(cells: pd.DataFrame) -> int:
    return int(cells["n"].max()) if not cells.empty and not math.isnan(float(cells["n"].max())) else 0
