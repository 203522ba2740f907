"""Plot of :func:`scsemiclip.tl.evaluate_map`: one bar panel per metric, one bar per representation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_COLUMNS = {"representation", "metric", "value"}
#: Interpretability preservation of a prediction constant within batches (a dotted line).
_INTERPRETABILITY_CHANCE = 25.0


def _table(adata_or_table: AnnData | pd.DataFrame, key: str) -> pd.DataFrame:
    if isinstance(adata_or_table, AnnData):
        result = adata_or_table.uns.get(key)
        if result is None:
            raise KeyError(
                f"adata.uns has no {key!r} result; run `scsemiclip.tl.evaluate_map(adata, use_reps=...)` first."
            )
        if not isinstance(result, dict) or "table" not in result:
            raise KeyError(f"adata.uns[{key!r}] is not a result of `scsemiclip.tl.evaluate_map`; run it first.")
        table = result["table"]
    else:
        table = adata_or_table
    if not isinstance(table, pd.DataFrame) or not _COLUMNS <= set(table.columns):
        raise KeyError(
            f"An evaluation table needs the columns {sorted(_COLUMNS)} (the table of `scsemiclip.tl.evaluate_map`)."
        )
    return table


def _draw(table: pd.DataFrame, metric: str, reps: list[str], ax: Axes, chance: float | None) -> None:
    values = table[table["metric"] == metric].set_index("representation")["value"].reindex(reps)
    ax.bar(np.arange(len(reps)), values.to_numpy(dtype=float), color=[f"C{i % 10}" for i in range(len(reps))])
    if chance is not None:
        ax.axhline(chance, color="0.4", linestyle=":", linewidth=1)
    ax.set_xticks(np.arange(len(reps)), reps, rotation=30, ha="right")
    ax.set_title(metric, fontsize=10)


def evaluation_summary(
    adata_or_table: AnnData | pd.DataFrame,
    *,
    key: str = "evaluate_map",
    metrics: Sequence[str] | None = None,
    ncols: int = 4,
    ax: Axes | None = None,
) -> Axes | Figure:
    """Bars of every metric of :func:`scsemiclip.tl.evaluate_map`, one panel per metric, one bar per representation.

    A dotted line marks what a random map scores where it is known: 25 for ``interpretability`` and, for a
    result stored in ``adata`` (which records the recall's threshold), ``2 * threshold`` for ``recall`` and
    ``threshold`` for ``recall_right``.

    Parameters
    ----------
    adata_or_table
        AnnData with ``uns[key]`` written by :func:`scsemiclip.tl.evaluate_map`, or its table.
    key
        Key of the result in ``adata.uns``.
    metrics
        Metrics to draw, in this order (``None``: all of the table, in its order).
    ncols
        Panels per row of the figure.
    ax
        Axes to draw into (only with a single metric); a new figure by default.

    Returns
    -------
    The Axes for a single metric, otherwise the Figure with one panel per metric.
    """
    table = _table(adata_or_table, key)
    available = list(dict.fromkeys(table["metric"]))
    chosen = available if metrics is None else [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in chosen if m not in available]
    if unknown or not chosen:
        raise ValueError(f"`metrics` {unknown or chosen} not in the evaluation's metrics {available}.")
    if ax is not None and len(chosen) > 1:
        raise ValueError(f"`ax` takes one panel, but {len(chosen)} metrics are drawn; pass `metrics=` with one.")
    reps = list(dict.fromkeys(table["representation"]))
    threshold = None
    if isinstance(adata_or_table, AnnData):
        threshold = adata_or_table.uns[key].get("params", {}).get("threshold")
    chance = {"interpretability": _INTERPRETABILITY_CHANCE}
    if threshold is not None:  # known for a stored result only
        chance |= {"recall": 2 * threshold, "recall_right": threshold}
    width = 1.2 + 0.45 * len(reps)
    if ax is not None or len(chosen) == 1:
        if ax is None:
            _, ax = plt.subplots(figsize=(width, 3.2))
        _draw(table, chosen[0], reps, ax, chance.get(chosen[0]))
        return ax
    ncols = min(ncols, len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * width, nrows * 3.2), squeeze=False)
    for metric, panel in zip(chosen, axes.ravel(), strict=False):
        _draw(table, metric, reps, panel, chance.get(metric))
    for panel in axes.ravel()[len(chosen) :]:
        panel.set_visible(False)
    fig.tight_layout()
    return fig
