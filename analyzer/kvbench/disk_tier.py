"""Disk tiers as the setup measured them (roles/disk_probe): which are far below their expected speed.

Pure: the manifest's hosts (each with its `disk_probe`: path -> figures, expectation, slow fraction) in, one
entry per probed tier out, flagged with the reasons when a figure falls below the fraction of its expectation
or the probe failed. The manifest keeps the list (`disk_tiers`); the report shows the flagged ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# figure -> unit, in the order reports list them
FIGURES: dict[str, str] = {
    "seq_read_mib_s": "MiB/s",
    "seq_write_mib_s": "MiB/s",
    "rand_read_iops": "IOPS",
    "rand_write_iops": "IOPS",
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def judge_probe(host: str, path: str, probe: Mapping[str, Any]) -> dict[str, Any]:
    """One tier: its figures, and whether (and why) it is flagged."""
    expected = probe.get("expected") if isinstance(probe.get("expected"), Mapping) else {}
    fraction = _number(probe.get("slow_fraction"))
    reasons: list[str] = []
    if probe.get("status") != "ok":
        reasons.append(
            f"probe {probe.get('status') or 'missing'}: {probe.get('reason') or 'no reason given'}"
        )
    else:
        for key, unit in FIGURES.items():
            found, wanted = _number(probe.get(key)), _number(expected.get(key))
            if found is None or wanted is None or fraction is None:
                continue
            if found < fraction * wanted:
                reasons.append(
                    f"{key} {found:g} {unit} is below {fraction:.0%} of the expected {wanted:g} {unit}"
                )
    notes = []
    if probe.get("status") == "ok" and probe.get("o_direct") is False:
        notes.append("measured through the page cache: the filesystem refused O_DIRECT")
    if probe.get("status") == "ok" and not probe.get("device"):
        notes.append(
            "no block device holds it (tmpfs or overlay): its reads, the disk-hit evidence, go uncounted"
        )
    return {
        "host": host,
        "path": path,
        "status": probe.get("status"),
        "device": probe.get("device"),
        "tool": probe.get("tool"),
        **{key: _number(probe.get(key)) for key in FIGURES},
        "flagged": bool(reasons),
        "reasons": reasons,
        "notes": notes,
    }


def disk_tiers(hosts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every probed tier of every host (hosts.<host>.disk_probe), in host and path order."""
    out = []
    for host in sorted(hosts):
        facts = hosts[host] if isinstance(hosts[host], Mapping) else {}
        probes = facts.get("disk_probe") if isinstance(facts.get("disk_probe"), Mapping) else {}
        for path in sorted(probes):
            probe = probes[path] if isinstance(probes[path], Mapping) else {}
            out.append(judge_probe(host, str(path), probe))
    return out


def flagged_lines(tiers: list[Mapping[str, Any]]) -> list[str]:
    """One line per flagged tier, for the report."""
    return [
        f"disk tier `{t['path']}` on {t['host']}"
        + (f" ({t['device']})" if t.get("device") else "")
        + ": "
        + "; ".join(t.get("reasons") or [])
        for t in tiers
        if t.get("flagged")
    ]
