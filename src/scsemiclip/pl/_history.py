"""Training curves of a trained model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from scsemiclip.model import SemiClipped


def training_history(model: SemiClipped, *, keys: Sequence[str] | None = None, ax: Axes | None = None) -> Axes:
    """Plot the per-epoch training curves of a trained model (losses by default).

    Parameters
    ----------
    model
        A trained :class:`scsemiclip.model.SemiClipped` (its :attr:`~scsemiclip.model.SemiClipped.history`).
    keys
        History entry, or entries, to draw; default: every entry whose name contains ``"loss"``.
    ax
        Axes to draw into; a new figure when ``None``.

    Returns
    -------
    The Axes, one line per entry (labelled with its name), epochs on the x axis.
    """
    history: dict[str, pd.DataFrame] = getattr(model, "history", None) or {}
    if not history:
        raise ValueError("The model has no training history; train it first (`model.train()`).")
    names = [k for k in history if "loss" in k] if keys is None else [keys] if isinstance(keys, str) else list(keys)
    missing = [k for k in names if k not in history]
    if missing or not names:
        raise KeyError(f"No history entry {missing or 'with a loss'}; available: {sorted(history)}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for name in names:
        series = history[name].iloc[:, 0].astype(float)
        ax.plot(series.index.to_numpy(), series.to_numpy(), marker="." if len(series) < 30 else None, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" if keys is None else "value")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return ax
