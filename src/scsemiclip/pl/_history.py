"""Training and validation curves of a trained model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from scsemiclip.model import SemiClipped

#: Readable legend labels of the history entries the model logs (others keep their own name).
LABELS = {
    "train_loss": "training",
    "validation_loss": "validation (held-out keys)",
    "validation_top1": "top-1 retrieval",
    "validation_top5": "top-5 retrieval",
    "validation_activity_map": "phenotypic-activity mAP",
}
#: Prefix of the entries computed on the held-out keys.
_VALIDATION = "validation_"


def _draw(history: dict[str, pd.DataFrame], names: Sequence[str], ax: Axes, *, title: str, ylabel: str) -> None:
    for name in names:
        series = history[name].iloc[:, 0].astype(float).dropna()
        ax.plot(
            series.index.to_numpy(),
            series.to_numpy(),
            marker="." if len(series) < 30 else None,
            label=LABELS.get(name, name),
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def training_history(model: SemiClipped, *, keys: Sequence[str] | None = None, ax: Axes | None = None) -> Axes | Figure:
    """Plot the per-epoch training and validation curves of a trained model.

    By default the losses (training, and validation on the held-out keys when the model was trained with a
    validation split) share one panel, and the held-out metrics the model logged (top-1 / top-5 retrieval of the
    held-out keys' teacher profiles, phenotypic-activity mAP; see
    :meth:`SemiClipped.train <scsemiclip.model.SemiClipped.train>`) a second one.

    Parameters
    ----------
    model
        A trained :class:`scsemiclip.model.SemiClipped` (its :attr:`~scsemiclip.model.SemiClipped.history`).
    keys
        History entry, or entries, to draw in one panel; default: the losses and, when logged, the held-out
        metrics (two panels).
    ax
        Axes to draw into (one panel only: with held-out metrics, pass ``keys``); a new figure when ``None``.

    Returns
    -------
    The Axes when one panel is drawn, otherwise the Figure with the loss panel and the held-out metric panel; one
    line per entry (labelled readably, e.g. ``"validation (held-out keys)"`` for ``validation_loss``), epochs on the
    x axis.
    """
    history: dict[str, pd.DataFrame] = getattr(model, "history", None) or {}
    if not history:
        raise ValueError("The model has no training history; train it first (`model.train()`).")
    if keys is not None:
        names = [keys] if isinstance(keys, str) else list(keys)
        missing = [k for k in names if k not in history]
        if missing or not names:
            raise KeyError(f"No history entry {missing or names}; available: {sorted(history)}.")
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        _draw(history, names, ax, title="Training history", ylabel="value")
        return ax
    losses = [k for k in history if "loss" in k]
    metrics = [k for k in history if k.startswith(_VALIDATION) and "loss" not in k]
    if not losses:
        raise KeyError(f"No history entry with a loss; available: {sorted(history)}.")
    if metrics and ax is not None:
        raise ValueError(
            f"`ax` takes one panel, but the model logged held-out metrics {metrics} as well as its losses; pass "
            "`keys=` (e.g. `keys=['train_loss', 'validation_loss']`) or `ax=None` for both panels."
        )
    if not metrics:
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        _draw(history, losses, ax, title="Loss", ylabel="loss")
        return ax
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    _draw(history, losses, left, title="Loss", ylabel="loss")
    _draw(history, metrics, right, title="Held-out keys", ylabel="score")
    fig.tight_layout()
    return fig
