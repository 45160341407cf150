"""A heatmap of % changes whose cells that are not significant are visibly marked: hatched and greyed, with
`n.s.` (tested, not significant) or `no CI` (no interval: one repetition) under the value. Used for the
peak deltas of `kvbench analyze` (models x scenarios) and the per-cell deltas of `kvbench compare`
(scenarios x levels). Written through kvbench.render.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from kvbench.render import write_atomically

DPI = 150
NO_DATA = "#d9d9d9"
HATCH = "///"


def _label(value: float, low: float, high: float, significant: object) -> str:
    if math.isnan(value):
        return "n/a"
    text = f"{value:+.1f}%"
    if not (math.isnan(low) or math.isnan(high)):
        text += f"\n[{low:+.1f}, {high:+.1f}]"
    if significant is None:
        text += "\nno CI"
    elif not significant:
        text += "\nn.s."
    return text


def delta_grid(
    values: np.ndarray,
    significant: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    path: Path,
    title: str,
    colour_label: str,
    axis_labels: tuple[str, str],
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> Path:
    """Draw `values` (% changes, NaN = no data) over rows x columns and write the PNG to `path`.

    `significant` holds True, False (tested, not significant) or None (untested); `low`/`high` the
    interval bounds in % (NaN where none).
    """
    low = np.full(values.shape, np.nan) if low is None else low
    high = np.full(values.shape, np.nan) if high is None else high
    finite = values[np.isfinite(values)]
    limit = max(5.0, float(np.ceil(np.abs(finite).max() / 5.0) * 5.0)) if finite.size else 5.0
    longest_row = max((len(r) for r in rows), default=6)
    longest_col = max((len(c) for c in columns), default=4)
    panel = (max(1.35 * len(columns), 4.0), max(0.8 * len(rows), 1.6))
    left, right, top, bottom = 0.6 + 0.08 * longest_row, 1.4, 0.55, 0.15 + 0.05 * longest_col + 0.95
    width, height = left + panel[0] + right, bottom + panel[1] + top
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height
    )
    ax = fig.subplots()
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad=NO_DATA)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            value, mark = float(values[i, j]), significant[i, j]
            if not math.isnan(value) and mark is not True:
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        facecolor=(1, 1, 1, 0.6),
                        hatch=HATCH,
                        edgecolor="#8c8c8c",
                        lw=0,
                    )
                )
            dark = mark is True and abs(value) > 0.6 * limit
            ax.text(
                j,
                i,
                _label(value, float(low[i, j]), float(high[i, j]), mark),
                ha="center",
                va="center",
                fontsize=8,
                fontweight="bold" if mark is True else "normal",
                color="white" if dark else ("black" if mark is True else "#404040"),
            )
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=11, fontweight="bold")
    box = fig.subplotpars
    colour_axes = fig.add_axes((1 - 1.1 / width, box.bottom, 0.18 / width, box.top - box.bottom))
    fig.colorbar(image, cax=colour_axes).set_label(colour_label)
    legend = [
        Patch(facecolor=cmap(0.9), label="significantly faster"),
        Patch(facecolor=cmap(0.1), label="significantly slower"),
        Patch(facecolor="white", edgecolor="#8c8c8c", hatch=HATCH, label="not significant / no interval"),
        Patch(facecolor=NO_DATA, label="no data"),
    ]
    fig.legend(
        handles=legend, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False, fontsize=8
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    write_atomically(path, buffer.getvalue())
    return path
