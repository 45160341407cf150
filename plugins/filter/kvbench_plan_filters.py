"""Thin Ansible filters over kvbench.plan (the Python package owns every decision; these only expose it).

`kvbench_csv_list` accepts `-e scenarios=a,b` as a string or a list; `kvbench_capacity` and
`kvbench_kv_bytes_per_token` size offload tiers the way the plan does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from kvbench import plan
except ImportError as exc:  # the collection's Python requirement (meta/requirements.txt) is missing
    plan = None
    MISSING = str(exc)


def _from_plan(name: str) -> Callable[..., Any]:
    """The kvbench.plan function `name`, or a filter that fails naming the missing requirement."""
    if plan is not None:
        return getattr(plan, name)

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise AnsibleFilterError(
            f"kvbench.harness filters need the kvbench Python package on the controller "
            f"(the collection's meta/requirements.txt): {MISSING}"
        )

    return missing


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kvbench_csv_list": _from_plan("csv_list"),
            "kvbench_capacity": _from_plan("capacity"),
            "kvbench_kv_bytes_per_token": _from_plan("kv_bytes_per_token"),
        }
