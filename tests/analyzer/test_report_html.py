"""report.html opened in headless Chromium (Debian's package, through the DevTools protocol): it loads with
no console error and nothing fetched, every section renders (a screenshot each), the charts' embedded data
equals what the CSVs say, hovering a marker shows its numbers and verdicts, and the numbers link to the
point records.

The run has 3 repetitions whose throughput varies (tests/analyzer/noisy_runs.py, records written by the
record path) so the charts have intervals; `native-offload` is skipped on the CPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pytest
from chromium_cdp import Browser, chromium
from noisy_runs import Noise, noisy_run
from PIL import Image
from scipy import stats

from tests.records.builders import analyze, nodes_cpu_request

SCENARIOS = ["no-offload", "native-offload", "llm-d-redis", "llm-d-valkey"]
SECTIONS = (
    "verdict",
    "inputs",
    "validity",
    "peak-throughput-summary",
    "throughput-vs-concurrency",
    "latency-at-peak-throughput",
    "performance-delta-vs-baseline",
    "redis-vs-valkey",
    "best-strategy-per-model",
)
REDIS_COLOUR = (0xCC, 0x79, 0xA7)  # llm-d-redis in kvbench.plots.KNOWN_COLOURS


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("html") / "results"
    request = nodes_cpu_request(scenarios=SCENARIOS, repetitions=3)
    run_dir = noisy_run(results, request, Noise(seed=11, cv=0.05, effects={"llm-d-redis": 1.25}))
    result = analyze(run_dir, out=run_dir / "analysis", figures=True)
    assert result.exit_code == 0, result.stderr
    return result.out


@pytest.fixture(scope="module")
def page(analysis: Path) -> Iterator[Browser]:
    browser = Browser(chromium())
    try:
        browser.open((analysis / "report.html").as_uri())
        yield browser
    finally:
        browser.close()


def _data(page: Browser) -> dict:
    return page.evaluate("JSON.parse(document.getElementById('kvbench-data').textContent)")


def _path_of(url: str) -> Path:
    parts = urlsplit(url)
    assert parts.scheme == "file", url
    return Path(unquote(parts.path))


def test_report_html_is_beside_report_md_and_self_contained(analysis: Path, page: Browser) -> None:
    html = (analysis / "report.html").read_text()
    assert (analysis / "report.md").is_file()
    assert "<script src" not in html and "<link" not in html
    assert 'src="http' not in html and "url(http" not in html
    requested = page.requested_urls()
    assert requested, "the page load was not seen"
    assert all(url.startswith(("file:", "data:")) for url in requested), requested


def test_opens_without_console_errors(page: Browser) -> None:
    assert page.evaluate("document.readyState") == "complete"
    assert page.errors() == []


def test_a_screenshot_of_every_section(page: Browser, analysis: Path) -> None:
    boxes = page.evaluate(
        "Array.from(document.querySelectorAll('section.report-section')).map(s => {"
        " const r = s.getBoundingClientRect();"
        " return {id: s.id, x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })"
    )
    ids = [box["id"] for box in boxes]
    assert set(SECTIONS) <= set(ids), ids
    folder = analysis / "screenshots"  # beside the report in pytest's temporary folder, to look at
    folder.mkdir(exist_ok=True)
    for box in boxes:
        assert box["width"] > 0 and box["height"] > 0, box
        clip = {k: box[k] for k in ("x", "y", "width", "height")}
        shot = page.screenshot(folder / f"{box['id']}.png", clip)
        with Image.open(shot) as image:
            assert image.size[0] >= int(box["width"]) - 1
            colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
            assert colours is not None and len(colours) > 20, f"{box['id']} looks blank"
    # The throughput chart was drawn: llm-d-redis's colour is in the section's picture.
    with Image.open(folder / "throughput-vs-concurrency.png") as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert (np.abs(pixels.astype(int) - REDIS_COLOUR).sum(axis=1) < 30).sum() > 200


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    if len(values) < 2:
        return math.nan, math.nan
    if np.std(values) == 0:  # the sample reports' latencies do not vary between repetitions
        return float(values[0]), float(values[0])
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    return float(low), float(high)


def test_chart_data_equals_the_csvs(page: Browser, analysis: Path) -> None:
    data = _data(page)
    metrics = pd.read_csv(analysis / "complete_metrics.csv")
    used = metrics[(metrics["status"] == "ok") & (metrics["verdict"] != "invalid")]
    for key, column in (("throughput", "output_tok_s_successful"), ("ttft", "ttft_ms_mean")):
        records = data[key]
        groups = used.groupby(["scenario", "concurrency"])[column]
        assert len(records) == groups.ngroups
        for record in records:
            values = groups.get_group((record["scenario"], record["concurrency"])).to_numpy(dtype=float)
            assert record["n"] == len(values) == 3
            assert record["mean"] == pytest.approx(values.mean())
            low, high = _t_interval(values)
            if math.isnan(low):
                assert record["ci_low"] is None
            else:
                assert (record["ci_low"], record["ci_high"]) == pytest.approx((low, high))
    assert {r["scenario"] for r in data["throughput"]} == {"no-offload", "llm-d-redis", "llm-d-valkey"}
    peaks = pd.read_csv(analysis / "peak_throughput_all.csv").set_index("scenario")
    heat = {r["scenario"]: r for r in data["heatmap"]}
    assert set(heat) == {"llm-d-redis", "llm-d-valkey"}
    for scenario, cell in heat.items():
        assert cell["delta_pct"] == pytest.approx(peaks.at[scenario, "delta_vs_baseline_pct"])
        assert cell["ci_low_pct"] == pytest.approx(peaks.at[scenario, "delta_ci_low_pct"])
        assert cell["significant"] == bool(peaks.at[scenario, "significant"])
        assert cell["optimal_concurrency"] == peaks.at[scenario, "optimal_concurrency"]
    # What is drawn is that data: a marker per cell, a whisker per interval, a heatmap cell per scenario.
    markers = page.evaluate("document.querySelectorAll('[id^=chart-throughput] circle.marker').length")
    assert markers == len(data["throughput"])
    whiskers = page.evaluate("document.querySelectorAll('[id^=chart-throughput] path.whisker').length")
    assert whiskers == sum(r["ci_low"] is not None for r in data["throughput"])
    assert page.evaluate("document.querySelectorAll('[id^=chart-heatmap] .heat-cell').length") == len(heat)


def test_hovering_a_marker_shows_its_numbers_and_verdicts(page: Browser, analysis: Path) -> None:
    # Opened afresh: after a screenshot beyond the viewport, headless Chromium hit-tests a stale layout.
    page.open((analysis / "report.html").as_uri())
    data = _data(page)
    record = max(
        (r for r in data["throughput"] if r["scenario"] == "llm-d-redis"), key=lambda r: r["concurrency"]
    )
    box = page.evaluate(
        "(() => { const c = Array.from(document.querySelectorAll("
        "'[id^=chart-throughput] g.series[data-scenario=\"llm-d-redis\"] circle.marker')).pop();"
        " c.scrollIntoView({block: 'center'}); const r = c.getBoundingClientRect();"
        " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
    )
    page.hover(box["x"], box["y"])
    tip = page.evaluate(
        "(() => { const t = document.getElementById('kvbench-tip');"
        " return {shown: getComputedStyle(t).display, text: t.textContent}; })()"
    )
    assert tip["shown"] == "block"
    assert f"llm-d-redis at concurrency {record['concurrency']}" in tip["text"]
    assert f"mean {record['mean']:,.1f} over 3 repetition(s)" in tip["text"]
    assert "verdicts: " + ", ".join(f"{k}: {v}" for k, v in record["verdicts"].items()) in tip["text"]
    page.hover(2, 2)
    assert page.evaluate("getComputedStyle(document.getElementById('kvbench-tip')).display") == "none"


def test_numbers_link_to_their_point_records(page: Browser, analysis: Path) -> None:
    links = page.evaluate(
        "Array.from(document.querySelectorAll('a.rec, sup.reps a, svg a')).map(a =>"
        " ({href: a.href && a.href.baseVal !== undefined ? a.href.baseVal : a.href, text: a.textContent,"
        " section: a.closest('section').id}))"
    )
    assert len(links) > 50
    base = (analysis / "report.html").as_uri()
    for link in links:
        url = (
            link["href"] if link["href"].startswith("file:") else base.rsplit("/", 1)[0] + "/" + link["href"]
        )
        target = _path_of(url).resolve()
        assert target.name == "point.json" and target.is_file(), link
        record = json.loads(target.read_text())
        assert record["kind"] == "kvbench.point" and record["status"] == "ok"
    by_section = {link["section"] for link in links}
    assert {
        "validity",
        "peak-throughput-summary",
        "throughput-vs-concurrency",
        "latency-at-peak-throughput",
        "performance-delta-vs-baseline",
        "redis-vs-valkey",
        "best-strategy-per-model",
    } <= by_section
    # The peak of llm-d-redis links to the records of its optimal level, one per repetition.
    peaks = pd.read_csv(analysis / "peak_throughput_all.csv").set_index("scenario")
    optimal = int(peaks.at["llm-d-redis", "optimal_concurrency"])
    cell = page.evaluate(
        "(() => { const row = Array.from(document.querySelectorAll('#peak-throughput-summary tr'))"
        ".find(r => r.cells[1] && r.cells[1].textContent.trim() === 'llm-d-redis');"
        " return Array.from(row.cells[2].querySelectorAll('a')).map(a => a.href); })()"
    )
    assert [_path_of(url).parent.name for url in cell] == [f"c{optimal:04d}-r{r}" for r in (1, 2, 3)]
