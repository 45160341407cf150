"""report.html: report.md as one self-contained page (styles, script, data and figures inline; nothing is
fetched to open it), with interactive charts in place of the static ones and links from the numbers to the
point records they come from.

The page is made from report.md itself, so it has the same sections and tables: a small converter for the
Markdown kvbench writes (headings, paragraphs, lists, tables, images, **bold**, `code`, _notes_). Then:
- every number of a table row that names a model and a scenario links to the record (point.json) of the
  point it comes from, at the row's concurrency (or the column's `c=N`, or the scenario's peak level);
  with several repetitions the first links from the number and the others from small `r2 r3 ...` marks;
- the throughput-curve and heatmap figures become SVG charts (kvbench.report_charts) with tooltips, and
  the latency section gets TTFT and TPOT against concurrency; other figures are embedded as data: URIs;
- the charts' data is embedded as JSON (`<script id="kvbench-data">`).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from kvbench.analysis import Analysis
from kvbench.naming import Ordering
from kvbench.plots import HEATMAP_FIGURE, Style, run_tag
from kvbench.report_charts import heatmap_data, line_data, run_charts
from kvbench.table import ok_rows, runs_in

REPORT_HTML = "report.html"
DATA_ID = "kvbench-data"
_HEADING = re.compile(r"^(#{1,6}) (.*)$")
_IMAGE = re.compile(r"^!\[(.*)\]\((.+)\)$")
_LIST = re.compile(r"^(\s*)- (.*)$")
_RUN_HEADING = re.compile(r"^Run `(.*)`$")
_LEVEL = re.compile(r"^c=(\d+)$")
_NUMBER = re.compile(r"^(?=.*\d)[\s\d.,+\-%<>\[\]*—]*(tok/s)?\s*$")
_INT_LIST = re.compile(r"^\d+(, \d+)*$")
_PAIR = re.compile(r"\(`([^`]+)` vs `([^`]+)`")
_SCENARIO_HEADERS = ("Configuration", "Scenario", "Best strategy")
_CONCURRENCY_HEADERS = ("Optimal Concurrency", "Concurrency", "at Concurrency")
# Counts over a scenario's levels (validity's "Points"): no one point, so no link.
_COUNT_HEADERS = ("Points",)
_REPLACED_FIGURES = (
    re.compile(r"^throughput_curve_.*\.png$"),
    re.compile(rf"^{HEATMAP_FIGURE[:-4]}.*\.png$"),
)


class PointLinks:
    """(run, model, scenario, concurrency) -> hrefs of its points' records (point.json, else the result
    file read), relative to the report's folder, by repetition."""

    def __init__(self, frame: pd.DataFrame, out: Path) -> None:
        found: dict[tuple[str, str, str, int], list[tuple[int, str]]] = defaultdict(list)
        rows = ok_rows(frame) if not frame.empty else frame
        for row in rows.to_dict("records"):
            source = row.get("source_file")
            if not isinstance(source, str) or not source:
                continue
            record = Path(source).parent / "point.json"
            target = record if record.is_file() else Path(source)
            href = quote(Path(os.path.relpath(target.resolve(), out.resolve())).as_posix())
            repetition = int(row["repetition"]) if not pd.isna(row["repetition"]) else 0
            key = (str(row["run"]), str(row["model"]), str(row["scenario"]), int(row["concurrency"]))
            found[key].append((repetition, href))
        self.links = {key: [href for _, href in sorted(set(value))] for key, value in found.items()}

    def __call__(self, run: str, model: str, scenario: str, concurrency: int) -> list[str]:
        return self.links.get((run, model, scenario, concurrency), [])


def _inline(text: str) -> str:
    html = escape(text, quote=False)
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    if html.startswith("_") and html.endswith("_") and len(html) > 2:
        html = f'<span class="note">{html[1:-1]}</span>'
    return html


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def _plain(cell: str) -> str:
    return cell.replace("**", "").replace(" †", "").replace(" (baseline)", "").strip()


@dataclass
class _Context:
    result: Analysis
    links: PointLinks
    out: Path
    run: str
    runs: list[str]
    charts: dict[str, dict[str, str]]
    pair: tuple[str, str] | None = None
    used_charts: set[tuple[str, str]] = field(default_factory=set)

    def optimal(self, model: str, scenario: str) -> int | None:
        peaks = self.result.peaks
        match = peaks[
            (peaks["run"] == self.run) & (peaks["model"] == model) & (peaks["scenario"] == scenario)
        ]
        return None if match.empty else int(match["optimal_concurrency"].iloc[0])

    def only_model(self) -> str:
        """The run's model when it has one (a kvbench run always does), for tables without a Model column."""
        models = set(self.result.peaks.loc[self.result.peaks["run"] == self.run, "model"])
        return str(models.pop()) if len(models) == 1 else ""

    def chart(self, name: str) -> str:
        if (self.run, name) in self.used_charts:
            return ""
        self.used_charts.add((self.run, name))
        return self.charts.get(self.run, {}).get(name, "")


def _linked(text: str, hrefs: list[str]) -> str:
    if not hrefs:
        return _inline(text)
    more = " ".join(
        f'<a href="{href}" title="repetition {i}">r{i}</a>' for i, href in enumerate(hrefs[1:], start=2)
    )
    title = "the point's record" if len(hrefs) == 1 else f"the records of its {len(hrefs)} repetitions"
    sup = f'<sup class="reps">{more}</sup>' if more else ""
    return f'<a class="rec" href="{hrefs[0]}" title="{title}">{_inline(text)}</a>{sup}'


@dataclass
class _Row:
    """What a table row says about where its numbers come from."""

    headers: list[str]
    model: str
    scenario: str
    concurrency: int | None
    pair: dict[str, str]  # Redis/Valkey column -> scenario
    baseline_col: int | None
    concurrency_col: int | None


def _table(lines: list[str], ctx: _Context) -> str:
    headers = [_plain(h) for h in _cells(lines[0])]
    aligns = ["r" if mark.strip().endswith(":") else "l" for mark in _cells(lines[1])]
    aligns += ["l"] * (len(headers) - len(aligns))
    col = {h: i for i, h in enumerate(headers)}
    model_col = col.get("Model")
    scenario_col = next((col[h] for h in _SCENARIO_HEADERS if h in col), None)
    conc_col = next((col[h] for h in _CONCURRENCY_HEADERS if h in col), None)
    pair = dict(zip(("Redis", "Valkey"), ctx.pair, strict=True)) if ctx.pair and "Redis" in col else {}
    baseline_col = col.get(f"{ctx.result.baseline} peak (tok/s)")
    head = "".join(f'<th class="{aligns[i]}">{_inline(h)}</th>' for i, h in enumerate(headers))
    body = []
    model = "" if model_col is not None else ctx.only_model()
    for line in lines[2:]:
        cells = _cells(line)
        if model_col is not None and model_col < len(cells) and _plain(cells[model_col]):
            model = _plain(cells[model_col])
        scenario = (
            _plain(cells[scenario_col]) if scenario_col is not None and scenario_col < len(cells) else ""
        )
        level = _plain(cells[conc_col]) if conc_col is not None and conc_col < len(cells) else ""
        row = _Row(
            headers, model, scenario, int(level) if level.isdigit() else None, pair, baseline_col, conc_col
        )
        tds = [
            f'<td class="{aligns[i] if i < len(aligns) else "l"}">{_cell(cell, i, row, ctx)}</td>'
            for i, cell in enumerate(cells)
        ]
        body.append("<tr>" + "".join(tds) + "</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="table-wrap">{table}</div>'


def _cell(cell: str, index: int, row: _Row, ctx: _Context) -> str:
    """One table cell; a number linked to the record of the point it comes from, where the row says which."""
    text = _plain(cell)
    if not row.model or index == 0 or not re.search(r"\d", text):
        return _inline(cell)
    header = row.headers[index] if index < len(row.headers) else ""
    if header in _COUNT_HEADERS:
        return _inline(cell)
    target = row.scenario
    if header in row.pair:
        target = row.pair[header]
    elif index == row.baseline_col:
        target = ctx.result.baseline
    if not target:
        return _inline(cell)
    if index == row.concurrency_col and _INT_LIST.match(text):
        levels = [int(v) for v in text.split(", ")]
        return ", ".join(_linked(str(v), ctx.links(ctx.run, row.model, target, v)) for v in levels)
    if not _NUMBER.match(text) and not text.endswith("tok/s"):
        return _inline(cell)
    level = _LEVEL.match(header)
    if level:
        concurrency: int | None = int(level.group(1))
    elif target == row.scenario and row.concurrency is not None:
        concurrency = row.concurrency
    else:
        concurrency = ctx.optimal(row.model, target)
    if concurrency is None:
        return _inline(cell)
    return _linked(cell, ctx.links(ctx.run, row.model, target, concurrency))


def _image(alt: str, src: str, ctx: _Context) -> str:
    """A figure of report.md: left out where a chart replaces it, else embedded as a data: URI."""
    if any(pattern.match(src) for pattern in _REPLACED_FIGURES):
        return ""
    path = ctx.out / src
    if not path.is_file() or "/" in src or src.startswith(".."):
        return f'<p class="note">(figure {escape(src)} not available)</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    alt = escape(alt, quote=True)
    return f'<figure><img class="figure" alt="{alt}" src="data:image/png;base64,{data}"></figure>'


def _list(lines: list[str]) -> str:
    """Nested `- ` lists (deeper items indented further); other lines continue the item above."""
    items: list[list[Any]] = []
    for line in lines:
        match = _LIST.match(line)
        if match:
            items.append([len(match.group(1)), _inline(match.group(2))])
        elif items:
            items[-1][1] += " " + _inline(line.strip())
    html: list[str] = []
    stack: list[int] = []
    for indent, text in items:
        if not stack or indent > stack[-1]:
            html.append("<ul>")
            stack.append(indent)
        else:
            while len(stack) > 1 and indent < stack[-1]:
                html.append("</li></ul>")
                stack.pop()
            html.append("</li>")
        html.append(f"<li>{text}")
    html += ["</li></ul>"] * len(stack)
    return "".join(html)


def _blocks(markdown: str) -> list[tuple[str, list[str]]]:
    """(kind, lines) blocks: heading, table, list, image, paragraph."""
    blocks: list[tuple[str, list[str]]] = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        kind = (
            "blank"
            if not line.strip()
            else "heading"
            if _HEADING.match(line)
            else "table"
            if line.lstrip().startswith("|")
            else "list"
            if _LIST.match(line)
            else "image"
            if _IMAGE.match(line.strip())
            else "text"
        )
        if kind == "text" and blocks and blocks[-1][0] == "list" and raw.startswith("  "):
            kind = "list"  # continuation of a list item
        if kind in ("table", "list", "text") and blocks and blocks[-1][0] == kind:
            blocks[-1][1].append(line)
        elif kind != "blank":
            blocks.append((kind, [line]))
        elif blocks and blocks[-1][0] != "blank":
            blocks.append(("blank", []))
    return [b for b in blocks if b[0] != "blank"]


def _body(markdown: str, ctx: _Context) -> str:
    parts: list[str] = []
    section_open = False
    pending = ""  # the latency charts, placed at the end of their section
    for kind, lines in _blocks(markdown):
        if kind == "heading":
            level, title = _HEADING.match(lines[0]).groups()  # type: ignore[union-attr]
            parts.append(pending)
            pending = ""
            run = _RUN_HEADING.match(title.strip())
            if run and run.group(1) in ctx.runs:
                ctx.run = run.group(1)
            if len(level) <= 2:
                if section_open:
                    parts.append("</section>")
                tag = run_tag(ctx.run, ctx.runs) if run else ""
                parts.append(f'<section class="report-section" id="{_slug(title)}{tag}">')
                section_open = True
            parts.append(f"<h{len(level)}>{_inline(title)}</h{len(level)}>")
            if title.endswith("Throughput vs Concurrency"):
                parts.append(ctx.chart("throughput"))
            elif title.endswith("Performance Delta vs Baseline"):
                parts.append(ctx.chart("heatmap"))
            elif title.endswith("Latency at Peak Throughput"):
                pending = ctx.chart("latency")
        elif kind == "table":
            parts.append(_table(lines, ctx))
        elif kind == "list":
            parts.append(_list(lines))
        elif kind == "image":
            alt, src = _IMAGE.match(lines[0].strip()).groups()  # type: ignore[union-attr]
            parts.append(_image(alt, src, ctx))
        else:
            text = " ".join(line.strip() for line in lines)
            pair = _PAIR.search(text)
            ctx.pair = (pair.group(1), pair.group(2)) if pair else ctx.pair
            parts.append(f"<p>{_inline(text)}</p>")
    parts.append(pending)
    if section_open:
        parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _asset(name: str) -> str:
    return resources.files("kvbench").joinpath("report_assets", name).read_text(encoding="utf-8")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def chart_data(result: Analysis, links: PointLinks) -> dict[str, Any]:
    """What the charts show: the `throughput`, `ttft` and `tpot` cells and the `heatmap` peaks."""
    data: dict[str, Any] = {"baseline": result.baseline, "runs": runs_in(result.peaks)}
    data.update(line_data(result, links))
    data["heatmap"] = heatmap_data(result, links)
    return data


def report_html(result: Analysis, markdown: str, out: Path, ordering: Ordering) -> str:
    """The whole page for the analysis written into `out` (its report.md text is `markdown`)."""
    links = PointLinks(result.frame, out)
    data = chart_data(result, links)
    style = Style(list(result.peaks["scenario"]) + list(ok_rows(result.used)["scenario"]), ordering)
    runs = data["runs"]
    charts = {run: run_charts(data, run, result, ordering, style, run_tag(run, runs)) for run in runs}
    ctx = _Context(result, links, out, runs[0] if runs else "", runs, charts)
    title_match = re.search(r"^# (.*)$", markdown, flags=re.MULTILINE)
    title = title_match.group(1) if title_match else "kvbench report"
    payload = json.dumps(_json_safe(data), sort_keys=True).replace("</", "<\\/")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>\n{_asset('report.css')}</style>",
            "</head>",
            "<body>",
            _body(markdown, ctx),
            f'<script type="application/json" id="{DATA_ID}">{payload}</script>',
            f"<script>\n{_asset('report.js')}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )
