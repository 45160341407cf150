"""kvbench.plan: every decision of a sweep, made once, in pure functions with no I/O.

What a load point *is* (its scenario settings, seed, directory, GuideLLM command line, store URLs) is decided
here; Ansible installs, starts, waits and copies, and reads the plan for everything else.
"""

from kvbench.plan.build import PLAN_SCHEMA_VERSION, build_plan, check_request
from kvbench.plan.errors import PlanError
from kvbench.plan.points import point_dir, point_seed, point_slug, schedule
from kvbench.plan.resolve import capacity, csv_list, kv_bytes_per_token, resolve_scenario, store_url

__all__ = [
    "PLAN_SCHEMA_VERSION",
    "PlanError",
    "build_plan",
    "capacity",
    "check_request",
    "csv_list",
    "kv_bytes_per_token",
    "point_dir",
    "point_seed",
    "point_slug",
    "resolve_scenario",
    "schedule",
    "store_url",
]
