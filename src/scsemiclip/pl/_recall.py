"""Plots of known-relationship recall: bars per database, recall-threshold curves, Venn diagrams of retrieved pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.patches import Circle

from scsemiclip.datasets import SOURCES
from scsemiclip.tl import retrieved_relationships
from scsemiclip.tl._recall import DEFAULT_THRESHOLDS, SourcesLike, compute_ranks

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_RANDOM_STYLE = {"color": "0.4", "linestyle": "--", "linewidth": 1}


def _recall_table(data: AnnData | pd.DataFrame, key: str) -> tuple[pd.Series, float | None]:
    """The recall per source of one result (AnnData from tl.known_relationship_recall, or its table)."""
    if isinstance(data, AnnData):
        if key not in data.uns or "table" not in data.uns[key]:
            raise KeyError(f"adata.uns has no {key!r} result; run `scsemiclip.tl.known_relationship_recall` first.")
        return data.uns[key]["table"]["recall"], float(data.uns[key]["params"]["threshold"])
    if isinstance(data, pd.DataFrame):
        table = data.set_index("source") if "source" in data.columns else data
        if "recall" not in table.columns:
            raise KeyError("A recall table needs a 'recall' column (see `scsemiclip.tl.known_relationship_recall`).")
        return table["recall"], None
    raise TypeError(f"Expected an AnnData or a recall table, got {type(data).__name__}.")


def recall(
    adata_or_table: AnnData | pd.DataFrame | Mapping[str, AnnData | pd.DataFrame],
    *,
    key: str = "known_relationship_recall",
    threshold: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Bar chart of known-relationship recall per database (grouped bars to compare embeddings).

    Parameters
    ----------
    adata_or_table
        An AnnData with the result of :func:`scsemiclip.tl.known_relationship_recall` in ``uns[key]``, the table
        it returned, or a mapping from embedding name to either (one bar per embedding in each group).
    key
        Key of the result in ``adata.uns``.
    threshold
        Draws the random expectation ``2 * threshold`` as a dashed line; by default the threshold stored with an
        AnnData result (no line for bare tables).
    ax
        Axes to draw into; a new figure by default.

    Returns
    -------
    The Axes, with one bar per database (and ``"mean"``) and embedding, heights equal to the recall.
    """
    named = dict(adata_or_table) if isinstance(adata_or_table, Mapping) else {"": adata_or_table}
    results = {name: _recall_table(data, key) for name, data in named.items()}
    if threshold is None:
        threshold = next((t for _, t in results.values() if t is not None), None)
    series = {name: rec for name, (rec, _) in results.items()}
    sources = list(dict.fromkeys(s for rec in series.values() for s in rec.index if s != "mean"))
    sources += ["mean"] if any("mean" in rec.index for rec in series.values()) else []
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.9 * len(sources) * max(1, len(series) ** 0.5), 3.5))
    width = 0.8 / len(series)
    x = np.arange(len(sources))
    for k, (name, rec) in enumerate(series.items()):
        heights = rec.reindex(sources).to_numpy(dtype=float)
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=name or None, color=f"C{k}")
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
        if "mean" in sources:
            bars[-1].set_hatch("//")
    if threshold is not None:
        ax.axhline(2 * threshold, **_RANDOM_STYLE, label=f"random ({2 * threshold:g})")
    ax.set_xticks(x, sources)
    ax.set_ylabel("recall")
    ax.set_title("Known-relationship recall")
    ax.margins(y=0.15)
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    elif threshold is not None:
        ax.legend(fontsize=8, frameon=False)
    return ax


def _reps(use_reps: str | Sequence[str]) -> list[str]:
    reps = [use_reps] if isinstance(use_reps, str) else list(use_reps)
    if not reps:
        raise ValueError("`use_reps` is empty; give at least one `.obsm` key.")
    return reps


def recall_thresholds(
    adata: AnnData,
    *,
    use_reps: str | Sequence[str],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    source: str = "mean",
    perturbation_key: str | None = "perturbation",
    control_key: str | None = "is_control",
    sources: SourcesLike = SOURCES,
    labels: Sequence[str] | Mapping[str, str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Known-relationship recall against the threshold, one curve per embedding (``adata`` is not modified).

    Parameters
    ----------
    adata
        Annotated data (per sample or one row per gene), see :func:`scsemiclip.tl.known_relationship_recall`.
    use_reps
        Keys of the embeddings in ``adata.obsm`` (``"X"`` for ``adata.X``).
    thresholds
        Shares of the null in each tail.
    source
        Which curve: a database name (one of ``sources``) or ``"mean"``.
    perturbation_key, control_key, sources
        As in :func:`scsemiclip.tl.known_relationship_recall`.
    labels
        Legend names: one per key of ``use_reps`` (in order), or a mapping from key to name (keys it lacks keep
        their own name); the keys by default.
    ax
        Axes to draw into; a new figure by default.

    Returns
    -------
    The Axes, with one line per embedding (labelled by ``labels``) and the random expectation ``2 * threshold``.
    """
    reps = _reps(use_reps)
    if labels is None or isinstance(labels, Mapping):
        names = [(labels or {}).get(rep, rep) for rep in reps]
    elif isinstance(labels, str) or len(labels) != len(reps):
        raise ValueError(f"`labels` needs one name per key of `use_reps` ({len(reps)}), got {labels!r}.")
    else:
        names = list(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    thresholds = np.sort(np.atleast_1d(thresholds))
    for k, (rep, name) in enumerate(zip(reps, names, strict=True)):
        ranks = compute_ranks(
            adata, use_rep=rep, perturbation_key=perturbation_key, control_key=control_key, sources=sources
        )
        table = ranks.table(thresholds)
        if source not in set(table["source"]):
            raise ValueError(f"`source={source!r}` is not among the sources {list(ranks.sources)} or 'mean'.")
        curve = table[table["source"] == source]
        ax.plot(curve["threshold"], curve["recall"], marker="o", markersize=3, label=name, color=f"C{k}")
    ax.plot(thresholds, 2 * thresholds, **_RANDOM_STYLE, label="random")
    ax.set_xlabel("threshold (share of the null in each tail)")
    ax.set_ylabel("recall")
    ax.set_title(f"Known-relationship recall ({source})")
    ax.legend(fontsize=8, frameon=False)
    return ax


def _pair_set(retrieved: pd.DataFrame | Mapping[str, pd.DataFrame], source: str | None) -> set[tuple[str, str]]:
    """Gene pairs of a retrieved-relationships result (one table, or per source: one source or their union)."""
    if isinstance(retrieved, pd.DataFrame):
        tables = [retrieved]
    elif source is None:
        tables = list(retrieved.values())
    elif source in retrieved:
        tables = [retrieved[source]]
    else:
        raise ValueError(f"`source={source!r}` is not among the sources {list(retrieved)}.")
    return {pair for t in tables for pair in zip(t["entity1"], t["entity2"], strict=True)}


def relationship_venn(
    adata: AnnData | Mapping[str, pd.DataFrame | Mapping[str, pd.DataFrame]],
    *,
    use_reps: str | Sequence[str] | None = None,
    source: str | None = None,
    threshold: float = 0.05,
    perturbation_key: str | None = "perturbation",
    control_key: str | None = "is_control",
    sources: SourcesLike = SOURCES,
    ax: Axes | None = None,
) -> Axes:
    """Venn diagram of the known relationships retrieved by two or three embeddings (paper Fig. 4).

    Parameters
    ----------
    adata
        Annotated data with the embeddings ``use_reps``; or, for embeddings of different datasets, a mapping from
        name to the result of :func:`scsemiclip.tl.retrieved_relationships` (or one of its tables).
    use_reps
        Two or three keys of ``adata.obsm`` (not used with a mapping).
    source
        One source's relationships; ``None`` pools all sources (a gene pair counts once).
    threshold, perturbation_key, control_key, sources
        As in :func:`scsemiclip.tl.retrieved_relationships` (``adata`` is not modified).
    ax
        Axes to draw into; a new figure by default.

    Returns
    -------
    The Axes, with one circle per embedding (label: name and number of retrieved pairs) and the number of pairs
    in every region.
    """
    if isinstance(adata, AnnData) and use_reps is None:
        raise ValueError("`use_reps` is required with an AnnData: two or three keys of adata.obsm.")
    names = _reps(use_reps) if isinstance(adata, AnnData) else list(adata)
    if len(set(names)) != len(names) or len(names) not in (2, 3):
        raise ValueError(f"A Venn diagram needs 2 or 3 distinct embeddings, got {names}.")
    if isinstance(adata, AnnData):
        retrieved = {
            rep: retrieved_relationships(
                adata,
                use_rep=rep,
                perturbation_key=perturbation_key,
                control_key=control_key,
                sources=sources,
                threshold=threshold,
            )
            for rep in names
        }
    else:
        retrieved = dict(adata)
    sets = {name: _pair_set(res, source) for name, res in retrieved.items()}
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.6) if len(sets) == 3 else (4.5, 3.0))
    n = len(sets)
    angles = np.deg2rad([180.0, 0.0] if n == 2 else [150.0, 30.0, 270.0])
    centers = 0.6 * np.c_[np.cos(angles), np.sin(angles)]
    label_pos = centers * [1.5, 0] + [0, 1.25] if n == 2 else 3.1 * centers
    for k, (name, members) in enumerate(sets.items()):
        ax.add_patch(Circle(centers[k], 1.0, facecolor=f"C{k}", edgecolor=f"C{k}", alpha=0.3, linewidth=1.5))
        ax.text(*label_pos[k], f"{name}\n({len(members):,})", ha="center", va="center", fontsize=9, color=f"C{k}")
    membership: dict[tuple[str, str], int] = {}
    for k, members in enumerate(sets.values()):
        for pair in members:
            membership[pair] = membership.get(pair, 0) | (1 << k)
    counts = np.bincount(np.fromiter(membership.values(), dtype=np.int64, count=len(membership)), minlength=2**n)
    for region in range(1, 2**n):
        mid = centers[[k for k in range(n) if region >> k & 1]].mean(axis=0)
        ax.text(*(1.7 * mid), f"{counts[region]:,}", ha="center", va="center", fontsize=10, fontweight="bold")
    ax.set_xlim(*((-1.7, 1.7) if n == 2 else (-2.0, 2.0)))
    ax.set_ylim(*((-1.1, 1.55) if n == 2 else (-2.1, 1.45)))
    ax.set_aspect("equal")
    ax.axis("off")
    what = "all sources" if source is None else source
    ax.set_title(f"Retrieved known relationships ({what}): {', '.join(sets)}", fontsize=9)
    return ax
