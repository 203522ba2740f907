"""One colour per method in every plot, table figure and tutorial, and one style for the random level.

The plots of :mod:`scsemiclip.pl` colour a representation by what it is, whatever it is called: Semi-Clipped is
always orange, the unimodal (student) embedding always blue, a random baseline always grey, whatever the figure.
Names are matched by their letters and digits alone, without case and without an ``X_`` prefix (``"X_semiclipped"``,
``"Semi-Clipped"`` and ``"semiclipped"`` are one method; ``"Semi-Clipped + PEA"`` is ``"semiclippedpea"``, Semi-Clipped
without PEA a lighter orange); other names take the remaining colours in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.container import BarContainer

#: Colour of each known method (matplotlib's tab10 colours), by normalised name (see :func:`method_colors`).
METHOD_COLORS = {
    "semiclipped": "#ff7f0e",
    "semiclippedpea": "#ff7f0e",
    "semiclippednopea": "#ffbb78",
    "semiclippedbase": "#ffbb78",
    "unimodal": "#1f77b4",
    "transcriptomics": "#1f77b4",
    "student": "#1f77b4",
    "emb": "#1f77b4",
    "teacher": "#2ca02c",
    "microscopy": "#2ca02c",
    "microscopyreference": "#2ca02c",
    "phenom": "#2ca02c",
    "random": "#9a9a9a",
    "randombaseline": "#9a9a9a",
}
#: Colours of other names, in the order they come (tab10 without the colours of the known methods).
OTHER_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f")
#: The line of what a map without information scores ("random level"), in every plot.
RANDOM_STYLE = {"color": "#333333", "linestyle": "--", "linewidth": 1.3}
#: Hatch of the bars of an average over groups (the "mean" of the databases).
MEAN_HATCH = "//"
#: Font size (points) of value labels, tick labels and legends at a plot's default size: legible on a slide.
FONT_SIZE = 10


def _normalised(name: str) -> str:
    key = re.sub(r"[^0-9a-z]+", "", str(name).lower())
    return key[1:] if key.startswith("x") and key[1:] in METHOD_COLORS else key


def method_colors(names: Sequence[str]) -> list[str]:
    """The colour of each of ``names``: the method's own colour, else the next of :data:`OTHER_COLORS`.

    Parameters
    ----------
    names
        Method or representation names, in the order they are drawn.

    Returns
    -------
    One colour (a hex string) per name.
    """
    others = iter(OTHER_COLORS * (len(names) // len(OTHER_COLORS) + 1))
    return [METHOD_COLORS.get(_normalised(name)) or next(others) for name in names]


def value_labels(ax: Axes, bars: BarContainer, level: float = np.nan, *, decimals: int = 1) -> None:
    """Write each bar's height above it, never across the random-level line at ``level``.

    A label whose text would straddle the line (a bar just below it) sits just above the line instead; hatches are
    inside the bars, so the labels above them are never crossed. Call it after the y-limits are set.

    Parameters
    ----------
    ax
        The Axes of the bars.
    bars
        The bars (``ax.bar``'s return value); a NaN height gets no label.
    level
        Height of the random-level line (NaN: none).
    decimals
        Decimals of the labels.
    """
    bottom, top = ax.get_ylim()
    # a label's height in data units at the Axes' size now (with room for a layout that shrinks the Axes)
    text = 1.6 * (1.3 * FONT_SIZE + 2) * ax.figure.dpi / 72 / max(ax.get_window_extent().height, 1) * (top - bottom)
    for bar in bars:
        height = bar.get_height()
        if np.isnan(height):
            continue
        y = level if height < level < height + text else height
        ax.annotate(
            f"{height:.{decimals}f}",
            (bar.get_x() + bar.get_width() / 2, y),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=FONT_SIZE,
            zorder=3,
        )
