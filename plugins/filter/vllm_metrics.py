"""Filters the vllm role uses: `vllm_parse_metrics` (/metrics text -> the counters kvbench records, parsed by
the one Prometheus parser in kvbench.plan.prometheus) and `vllm_process_tree`.
"""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from kvbench.plan.prometheus import vllm_counters
except ImportError as exc:  # the collection's Python requirement (meta/requirements.txt) is missing
    vllm_counters = None
    MISSING = str(exc)


def vllm_parse_metrics(text: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Return {key: summed value or None} for every counter kvbench records (kvbench.plan.prometheus)."""
    if vllm_counters is None:
        raise AnsibleFilterError(
            "kvbench.harness.vllm_parse_metrics needs the kvbench Python package on the controller "
            f"(the collection's meta/requirements.txt): {MISSING}"
        )
    return vllm_counters(text, names)


def vllm_process_tree(ps_text: str, pattern: str) -> list[str]:
    """From `ps -eo pid=,ppid=,args=` output: pids whose args match `pattern`, plus all their descendants."""
    regex = re.compile(pattern)
    parent: dict[str, str] = {}
    roots: list[str] = []
    for line in str(ps_text).splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        pid, ppid = parts[0], parts[1]
        parent[pid] = ppid
        if len(parts) == 3 and regex.search(parts[2]):
            roots.append(pid)
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found, key=int)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"vllm_parse_metrics": vllm_parse_metrics, "vllm_process_tree": vllm_process_tree}
