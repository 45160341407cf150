"""kvbench: offline analysis of KV-cache benchmark sweeps (GuideLLM results)."""

from __future__ import annotations

__version__ = "0.1.0"
