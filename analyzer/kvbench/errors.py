"""Input problems, collected per file instead of aborting the analysis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class InputError(Exception):
    """One input cannot be used; the message is the reason shown to the user."""


@dataclass(frozen=True)
class BadInput:
    """A file or directory that could not be read, and why."""

    path: Path
    reason: str

    def line(self) -> str:
        return f"kvbench: {self.path}: {self.reason}"
