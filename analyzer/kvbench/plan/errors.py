"""The one error type of planning: a request or catalog that cannot become a plan."""

from __future__ import annotations


class PlanError(ValueError):
    """A bad request or catalog entry. The message names the bad value and, where known, the valid ones."""
