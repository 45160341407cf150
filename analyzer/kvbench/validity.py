"""Validity verdicts: is a point's number a measurement of the treatment it names? Pure: the tidy table in,
one verdict per row out, with every check and the evidence it used.

Verdicts: `valid`, `warn` (usable, with a caveat the report shows) or `invalid` (never enters a peak or a
delta). A check answers `pass`, `warn`, `invalid` or `skip` (it does not apply, or the row has no evidence
for it). The point record's evidence columns come from kvbench.ingest.point_columns; GuideLLM's own signals
from kvbench.ingest.guidellm (SIGNAL_COLUMNS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from kvbench.settings import Thresholds

PASS, WARN, INVALID, NA = "pass", "warn", "invalid", "skip"
VALID = "valid"
VERDICTS = (VALID, WARN, INVALID)
_SEVERITY = {NA: 0, PASS: 0, WARN: 1, INVALID: 2}
KEY = ("run", "model", "scenario", "concurrency", "repetition")


Outcome = tuple[str, str]
Row = dict[str, Any]


def _num(value: Any) -> float:
    if value is None or value is pd.NA or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    return True if text == "true" else False if text == "false" else None


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value) if str(value).strip() else None


def _g(value: float) -> str:
    return f"{value:g}"


def check_status(row: Row, _t: Thresholds) -> Outcome:
    status = row.get("status")
    if status == "ok":
        return PASS, "point ok"
    return INVALID, f"point {status}: {row.get('reason') or 'no reason given'}"


def check_error_rate(row: Row, t: Thresholds) -> Outcome:
    errored, total = _num(row.get("requests_errored")), _num(row.get("requests_total"))
    if math.isnan(errored) or math.isnan(total) or total <= 0:
        return NA, "no request counts"
    rate = errored / total
    numbers = f"({errored:g} of {total:g} requests errored, {rate:.1%}; limit {t.max_error_rate:.1%})"
    if rate > t.max_error_rate:
        return INVALID, f"error rate above the limit {numbers}"
    return PASS, f"error rate within the limit {numbers}"


def check_successful(row: Row, _t: Thresholds) -> Outcome:
    successful = _num(row.get("requests_successful"))
    throughput = _num(row.get("output_tok_s_successful"))
    if successful == 0 or throughput == 0:
        return INVALID, f"no successful request ({_g(successful)} successful, {_g(throughput)} tok/s)"
    if math.isnan(successful):
        return NA, "no request counts"
    return PASS, f"successful requests ({successful:g})"


def check_completion(row: Row, t: Thresholds) -> Outcome:
    successful, total = _num(row.get("requests_successful")), _num(row.get("requests_total"))
    if math.isnan(successful) or math.isnan(total) or total <= 0:
        return NA, "no request counts"
    ratio = successful / total
    numbers = (
        f"({successful:g} of {total:g} requests sent, {ratio:.0%}; at least {t.min_completed_ratio:.0%})"
    )
    if ratio < t.min_completed_ratio:
        return INVALID, f"completed requests far below those sent {numbers}"
    return PASS, f"requests completed {numbers}"


def check_client_saturation(row: Row, _t: Thresholds) -> Outcome:
    suspect = _flag(row.get("client_saturated_suspect"))
    busy, cores = _num(row.get("client_cpu_busy_pct")), _num(row.get("client_cores"))
    detail = f"client CPU {busy:g} % busy" if not math.isnan(busy) else "client CPU not measured"
    if not math.isnan(cores):
        detail += f" on {cores:g} cores"
    if suspect is None:
        return NA, "no client evidence"
    if suspect:
        return WARN, f"load generator saturated ({detail})"
    return PASS, detail


def check_achieved_concurrency(row: Row, t: Thresholds) -> Outcome:
    achieved, target = _num(row.get("concurrency_achieved")), _num(row.get("concurrency"))
    if math.isnan(achieved) or math.isnan(target) or target <= 0:
        return NA, "GuideLLM reports no request concurrency"
    ratio = achieved / target
    numbers = f"({achieved:.2f} requests in flight on average for a target of {target:g}, {ratio:.0%})"
    if ratio < t.min_concurrency_ratio:
        return WARN, f"achieved concurrency below target {numbers}"
    return PASS, f"target concurrency reached {numbers}"


def check_guidellm_signals(row: Row, _t: Thresholds) -> Outcome:
    codes = _text(row.get("report_warnings"))
    over = _flag(row.get("over_saturated"))
    found = []
    if over:
        found.append("GuideLLM's over-saturation detector fired")
    if codes:
        found.append(f"GuideLLM warnings: {codes.replace(';', ', ')}")
    if found:
        return WARN, "; ".join(found)
    return PASS, "no GuideLLM warning" + (" (over-saturation detector quiet)" if over is False else "")


def check_measured_window(row: Row, t: Thresholds) -> Outcome:
    measured, requested = _num(row.get("duration_s")), _num(row.get("requested_duration_s"))
    if math.isnan(measured) or math.isnan(requested) or requested <= 0:
        return NA, "no requested duration to compare with"
    ratio = measured / requested
    numbers = f"({measured:g} s measured of the {requested:g} s asked for, {ratio:.0%})"
    if ratio < t.min_window_ratio:
        return WARN, f"measured window far shorter than asked {numbers}"
    return PASS, f"measured window {numbers}"


def check_offload_engaged(row: Row, _t: Thresholds) -> Outcome:
    connector = _text(row.get("connector"))
    if connector is None:
        return NA, "no KV connector"
    hits = _num(row.get("external_prefix_cache_hits_delta"))
    if math.isnan(hits):
        return WARN, f"{connector}: no external prefix-cache counter recorded, engagement not verified"
    if hits <= 0:
        return INVALID, f"{connector} never engaged (external_prefix_cache_hits_delta {hits:g})"
    return PASS, f"{connector}: {hits:g} external prefix-cache hits"


def check_disk_tier_engaged(row: Row, _t: Thresholds) -> Outcome:
    """A disk tier is a result only if the connector wrote it and read it back during the point.

    LMCache 0.3.x counts hits per request, not per tier (lmcache:local_storage_usage is occupancy only), so
    the evidence is the tier's own: chunk files the connector wrote under the tier's folder, and bytes read
    from the tier's block device while the point ran (with O_DIRECT every disk hit is a device read).
    """
    path = _text(row.get("disk_tier_path"))
    if path is None:
        return NA, "no disk tier"
    files, reads = _num(row.get("disk_tier_files_after")), _num(row.get("disk_tier_read_bytes_delta"))
    if math.isnan(files) and math.isnan(reads):
        return INVALID, f"no disk-tier evidence recorded for {path}: disk-tier hits not proven"
    if math.isnan(files) or files <= 0:
        return INVALID, f"the connector wrote no file under {path}: its disk tier never engaged"
    if math.isnan(reads) or reads <= 0:
        shown = "not recorded" if math.isnan(reads) else f"{reads:g} bytes"
        return INVALID, f"no reads from the disk tier during the point ({shown}): no disk-tier hits"
    return PASS, f"disk tier {path}: {files:g} files, {reads / (1 << 20):.1f} MiB read during the point"


def check_index_engaged(row: Row, _t: Thresholds) -> Outcome:
    store = _text(row.get("index_store"))
    if store is None:
        return NA, "no KV-block index"
    keys = _num(row.get("index_keys_after"))
    if math.isnan(keys) or keys <= 0:
        shown = "absent" if math.isnan(keys) else f"{keys:g}"
        return INVALID, f"the {store} index stayed empty (index_keys_after {shown})"
    return PASS, f"{store} index holds {keys:g} keys after the point"


def check_prefix_cache_off(row: Row, _t: Thresholds) -> Outcome:
    if _flag(row.get("prefix_caching")) is not False:
        return NA, "prefix caching on"
    hits = _num(row.get("prefix_cache_hits_delta"))
    if math.isnan(hits):
        return WARN, "prefix caching off, but no prefix-cache counter recorded to prove it"
    if hits > 0:
        return INVALID, f"prefix caching was meant to be off, yet {hits:g} prefix-cache hits were counted"
    return PASS, "prefix caching off: 0 prefix-cache hits"


def check_archive(row: Row, _t: Thresholds) -> Outcome:
    result = _text(row.get("archive_check"))
    if result is None:
        return NA, "no PCP archive check recorded"
    reasons = _text(row.get("archive_check_reasons")) or "no reason given"
    if result == INVALID:
        return INVALID, f"PCP archive: {reasons}"
    if result == WARN:
        return WARN, f"PCP archive: {reasons}"
    return PASS, "PCP archive has every configured metric inside the window"


def check_metrics_series(row: Row, _t: Thresholds) -> Outcome:
    samples = _num(row.get("metrics_series_samples"))
    if math.isnan(samples):
        return NA, "no /metrics series recorded"
    if samples <= 0:
        return WARN, "the /metrics series has no answered scrape during the point"
    return PASS, f"/metrics sampled {samples:g} times during the point"


def check_multi_turn(row: Row, _t: Thresholds) -> Outcome:
    turns, sent = _num(row.get("turns")), _num(row.get("turns_sent"))
    if math.isnan(turns) or math.isnan(sent):
        return NA, "no workload record"
    if turns > 1 and sent <= 1:
        version = _text(row.get("guidellm_version")) or "this GuideLLM"
        return INVALID, f"multi-turn never sent ({turns:g} turns asked for, {version} sent single turns)"
    return PASS, f"{sent:g} of {turns:g} turns sent"


def check_cold_cache(row: Row, _t: Thresholds) -> Outcome:
    if _flag(row.get("warm_cache")):
        return NA, "warm cache asked for"
    if _flag(row.get("prefix_caching")) is False:
        return NA, "prefix caching off: no cache to find empty"
    verified = _flag(row.get("cache_reset_verified"))
    if verified is None:
        return NA, "cache reset not recorded"
    if not verified:
        return WARN, "the prefix cache was not verified empty at the start of a cold-cache point"
    return PASS, "prefix cache verified empty"


CHECKS: dict[str, Callable[[Row, Thresholds], Outcome]] = {
    "measured": check_status,
    "error_rate": check_error_rate,
    "successful": check_successful,
    "completion": check_completion,
    "client_saturation": check_client_saturation,
    "achieved_concurrency": check_achieved_concurrency,
    "guidellm_signals": check_guidellm_signals,
    "measured_window": check_measured_window,
    "offload_engaged": check_offload_engaged,
    "disk_tier_engaged": check_disk_tier_engaged,
    "index_engaged": check_index_engaged,
    "prefix_cache_off": check_prefix_cache_off,
    "archive": check_archive,
    "metrics_series": check_metrics_series,
    "multi_turn": check_multi_turn,
    "cold_cache": check_cold_cache,
}
# Checks that say the load generator, not the server, limited the point.
CLIENT_CHECKS = ("client_saturation", "achieved_concurrency")
VALIDITY_COLUMNS: tuple[str, ...] = (
    *KEY,
    "status",
    "verdict",
    "reasons",
    *(column for name in CHECKS for column in (name, f"{name}_evidence")),
)


def judge(row: Row, thresholds: Thresholds) -> dict[str, Any]:
    """Every check of one row, its verdict and the reasons (the evidence of what did not pass)."""
    outcomes = {"measured": check_status(row, thresholds)}
    if outcomes["measured"][0] == PASS:
        outcomes.update(
            {name: check(row, thresholds) for name, check in CHECKS.items() if name != "measured"}
        )
    else:
        outcomes.update({name: (NA, "point not measured") for name in CHECKS if name != "measured"})
    worst = max(_SEVERITY[result] for result, _ in outcomes.values())
    verdict = (VALID, WARN, INVALID)[worst]
    reasons = [f"{result}: {evidence}" for result, evidence in outcomes.values() if result in (WARN, INVALID)]
    judged: dict[str, Any] = {"verdict": verdict, "reasons": "; ".join(reasons) or None}
    for name, (result, evidence) in outcomes.items():
        judged[name] = result
        judged[f"{name}_evidence"] = evidence
    return judged


def evaluate(frame: pd.DataFrame, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """One row per row of `frame` (same index): VALIDITY_COLUMNS."""
    limits = thresholds or Thresholds()
    rows = []
    for record in frame.to_dict("records"):
        judged = judge(record, limits)
        rows.append({**{k: record.get(k) for k in (*KEY, "status")}, **judged})
    return pd.DataFrame(rows, columns=list(VALIDITY_COLUMNS), index=frame.index)


def with_verdicts(frame: pd.DataFrame, validity: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the verdict and its reasons as its last columns."""
    return frame.assign(verdict=validity["verdict"], verdict_reasons=validity["reasons"])
