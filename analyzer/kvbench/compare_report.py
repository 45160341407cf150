"""compare.md (and what `kvbench compare` prints): configuration differences first, then the verdict, the
per-cell deltas with their intervals and the cells present in one run only. Pure: returns Markdown."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from kvbench.compare import BOTH, RunComparison
from kvbench.deltas import is_true
from kvbench.markdown import md_table
from kvbench.report_verdict import (
    client_line,
    correction_name,
    fmt_interval,
    fmt_p,
    fmt_pct,
    invalid_lines,
    method_text,
)


def _num(value: float) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:,.1f}"


def _count(value: float) -> str:
    return "0" if value is None or pd.isna(value) else str(int(value))


def _where(row: pd.Series) -> str:
    return f"{row['model']} / {row['scenario']} / {_level(row)}"


def _level(row: pd.Series) -> str:
    if str(row["concurrency"]) == "peak":
        return f"peak (c={_count(row['optimal_concurrency_a'])} → c={_count(row['optimal_concurrency_b'])})"
    return f"c={int(row['concurrency'])}"


def _cell_line(row: pd.Series, correction: str) -> str:
    text = (
        f"{_where(row)}: {fmt_pct(row['delta_pct'])} {fmt_interval(row['ci_low_pct'], row['ci_high_pct'])}, "
        f"p({correction}) {fmt_p(row['p_adjusted'])}, n {_count(row['n_a'])} vs {_count(row['n_b'])}"
    )
    if not is_true(row["comparable"]):
        text += f" — ⚠ GuideLLM versions differ ({row['guidellm_versions']})"
    return text


def differences_section(result: RunComparison) -> list[str]:
    lines = ["## Configuration differences"]
    if not result.differences:
        lines.append("None in the recorded configuration (versions, workload, GuideLLM, scenario settings).")
    else:
        rows = [[what, in_a, in_b] for what, in_a, in_b in result.differences]
        lines.append(md_table(["What", "A", "B"], rows, "lll"))
    versions = result.deltas.loc[~result.deltas["comparable"].map(is_true), "guidellm_versions"].dropna()
    if not versions.empty:
        lines.append(
            f"**⚠ GuideLLM versions differ between the runs ({versions.iloc[0]}):** their throughput is not "
            "defined alike (0.8.1 clips token events to the measured window), so a difference may be the "
            "client's definition, not the server."
        )
    return lines


def verdict_section(result: RunComparison) -> list[str]:
    deltas, correction = result.deltas, correction_name(result.options)
    lines: list[str] = []
    if result.max_n() < 2:
        lines.append(
            "**A cell has at most one repetition in one of the runs: no difference can be called "
            "significant.** Run both sweeps with `-e repetitions=N` (N >= 3) to test them."
        )
        lines.append("")
    both = deltas[deltas["present_in"] == BOTH]
    tested = both[both["p_adjusted"].notna()]
    faster = tested[tested["significant"].map(is_true) & (tested["delta_pct"] > 0)]
    slower = tested[tested["significant"].map(is_true) & (tested["delta_pct"] < 0)]
    same = tested[~tested["significant"].map(is_true)]
    for title, rows in (("Significantly faster in B", faster), ("Significantly slower in B", slower)):
        if not rows.empty:
            lines.append(f"- **{title}:**")
            lines += [f"  - {_cell_line(row, correction)}" for _, row in rows.iterrows()]
    if not same.empty:
        cells = ", ".join(f"{r['scenario']} {_level(r)}" for _, r in same.iterrows())
        lines.append(f"- **Indistinguishable ({len(same)} cells):** {cells}")
    untested = both[both["p_adjusted"].isna()]
    if not untested.empty:
        lines.append(f"- **Not testable (no interval): {len(untested)} cells**")
    for name, table, validity in (("A", result.a, result.validity_a), ("B", result.b, result.validity_b)):
        invalid = invalid_lines(validity)
        if invalid:
            lines.append(f"- **Invalid in {name} (`{table.run}`), never counted:**")
            lines += [f"  - {item}" for item in invalid]
        lines.append(f"- **Load generator in {name}:** {client_line(validity)}.")
    return ["## Verdict", "\n".join(lines)]


def cells_table(result: RunComparison) -> str:
    rows = []
    correction = correction_name(result.options)
    for _, row in result.deltas[result.deltas["present_in"] == BOTH].iterrows():
        delta = fmt_pct(row["delta_pct"])
        rows.append(
            [
                row["model"],
                row["scenario"],
                _level(row),
                _num(row["mean_a"]),
                _num(row["mean_b"]),
                f"**{delta}**" if is_true(row["significant"]) else delta,
                fmt_interval(row["ci_low_pct"], row["ci_high_pct"]),
                fmt_p(row["p_adjusted"]),
                f"{_count(row['n_a'])}/{_count(row['n_b'])}",
            ]
        )
    headers = [
        "Model",
        "Scenario",
        "Cell",
        "A (tok/s)",
        "B (tok/s)",
        "B vs A",
        "95 % CI",
        f"p ({correction})",
        "n A/B",
    ]
    if not rows:
        return "_No cell has usable points in both runs._"
    return md_table(headers, rows, "lllrrrrrr")


def only_section(result: RunComparison) -> list[str]:
    one = result.deltas[result.deltas["present_in"] != BOTH]
    if one.empty:
        return ["## Cells in only one run", "None: both runs have every cell."]
    lines = [f"- {_where(row)}: {row['present_in']}" for _, row in one.iterrows()]
    return ["## Cells in only one run", "\n".join(lines)]


def compare_markdown(result: RunComparison, figures: Sequence[str] = ()) -> str:
    """The whole comparison; `figures` are heatmap file names beside compare.md."""
    sections = [
        f"# kvbench compare: `{result.b.run}` (B) against `{result.a.run}` (A)",
        f"- A: `{result.a.run}` ({result.a.path})\n- B: `{result.b.run}` ({result.b.path})\n"
        "- Change is B against A (B / A - 1): positive means B is faster. Bold: significant.",
        *differences_section(result),
        *verdict_section(result),
        "## Per-cell deltas",
        cells_table(result),
        *[f"![B vs A: per-cell change]({name})" for name in figures],
        *only_section(result),
        "## Method",
        method_text(result.options, "the same scenario of run A", "within this comparison"),
    ]
    return "\n\n".join(sections) + "\n"
