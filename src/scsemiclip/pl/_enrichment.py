"""Dot plot of the gene sets enriched among retrieved relationships (:func:`scsemiclip.tl.relationship_enrichment`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_NEEDED = ("gene_set", "overlap", "set_size", "q_value")


def relationship_enrichment(
    adata: AnnData | pd.DataFrame,
    *,
    key: str = "relationship_enrichment",
    top: int = 20,
    ax: Axes | None = None,
) -> Axes:
    """Dot plot of the most enriched gene sets: ``-log10 q`` on the x axis, dot area by overlap.

    Parameters
    ----------
    adata
        An AnnData with the result of :func:`scsemiclip.tl.relationship_enrichment` in ``uns[key]``, or the table
        it returned.
    key
        Key of the result in ``adata.uns``.
    top
        Number of sets drawn: those with the smallest q-values (then p-values), the most enriched at the top.
    ax
        Axes to draw into; a new figure by default.

    Returns
    -------
    The Axes: one dot per gene set at ``x = -log10(q_value)``, its area proportional to the overlap and its
    colour the share of the set's genes in the query; a dashed line marks ``q = 0.05``. The legend (dot sizes and
    that line) sits below the axes.
    """
    if isinstance(adata, AnnData):
        if key not in adata.uns or "table" not in adata.uns[key]:
            raise KeyError(f"adata.uns has no {key!r} result; run `scsemiclip.tl.relationship_enrichment` first.")
        table = adata.uns[key]["table"]
    elif isinstance(adata, pd.DataFrame):
        table = adata
    else:
        raise TypeError(f"Expected an AnnData or an enrichment table, got {type(adata).__name__}.")
    if missing := [c for c in _NEEDED if c not in table.columns]:
        raise KeyError(f"An enrichment table needs columns {list(_NEEDED)}; missing {missing}.")
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"`top` must be a positive integer, got {top!r}.")
    sort = ["q_value", "p_value"] if "p_value" in table.columns else ["q_value"]
    shown = table.sort_values(sort, kind="stable").head(top).iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 1.6 + 0.3 * max(len(shown), 1)), layout="constrained")
    y = np.arange(len(shown))
    if len(shown):
        x = -np.log10(np.clip(shown["q_value"].to_numpy(dtype=float), np.finfo(float).tiny, 1.0))
        overlap = shown["overlap"].to_numpy(dtype=float)
        dots = ax.scatter(
            x,
            y,
            s=30 + 170 * overlap / overlap.max(),
            c=overlap / shown["set_size"].to_numpy(dtype=float),
            cmap="viridis",
            edgecolors="0.2",
            linewidths=0.5,
        )
        ax.figure.colorbar(dots, ax=ax, label="share of the set's genes in the query", shrink=0.8)
        for size in sorted({int(overlap.min()), int(np.median(overlap)), int(overlap.max())}):
            ax.scatter([], [], s=30 + 170 * size / overlap.max(), color="0.6", label=f"{size} query genes")
    else:
        ax.text(0.5, 0.5, "no gene set tested", ha="center", va="center", transform=ax.transAxes)
    ax.axvline(-np.log10(0.05), color="0.4", linestyle="--", linewidth=1, label="q = 0.05")
    if len(shown):  # below the axes, off the dots and the pathway names: dot sizes and the significance line
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=4, fontsize=9, frameon=False)
    ax.set_yticks(y, [str(name)[:60] for name in shown["gene_set"]], fontsize=9)
    ax.set_xlabel("-log10 q (Benjamini-Hochberg)")
    ax.set_xlim(0, 1.12 * max(ax.get_xlim()[1], -np.log10(0.05)))  # room for the largest dots
    ax.set_title("Gene sets enriched among retrieved relationships", fontsize=11)
    return ax
