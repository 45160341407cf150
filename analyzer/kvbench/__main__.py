"""`python -m kvbench` runs the CLI."""

from __future__ import annotations

from kvbench.cli import main

if __name__ == "__main__":
    main()
