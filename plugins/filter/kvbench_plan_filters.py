"""Thin Ansible filters over kvbench.plan (the Python package owns every decision; these only expose it).

`kvbench_csv_list` accepts `-e scenarios=a,b` as a string or a list; `kvbench_capacity` and
`kvbench_kv_bytes_per_token` size offload tiers the way the plan does.
"""

from __future__ import annotations

from typing import Any

from kvbench.plan import capacity, csv_list, kv_bytes_per_token


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kvbench_csv_list": csv_list,
            "kvbench_capacity": capacity,
            "kvbench_kv_bytes_per_token": kv_bytes_per_token,
        }
