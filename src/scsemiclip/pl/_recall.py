"""Plots of known-relationship recall: bars per database, recall-threshold curves, Venn diagrams of retrieved pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.patches import Circle, Patch

from scsemiclip._validate import check_key, check_threshold, check_thresholds

from ._palette import FONT_SIZE, MEAN_HATCH, RANDOM_STYLE, method_colors

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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
    The Axes, with one bar per database (and the hatched ``"mean"`` over them) and embedding, heights equal to the
    recall in % (the unit of the tables), each embedding in its colour of every plot (see
    :mod:`scsemiclip.pl`), and the random level as a dashed line. Each bar is labelled with its value (one decimal)
    where the labels fit the Axes as drawn: horizontally where a label is narrower than its bar, vertically where
    only that fits, and not at all where bars are too narrow even for vertical labels (give a wider ``ax``, or
    read the values from the table); a label is never crossed by the random line.
    """
    check_key(key, name="key")
    if threshold is not None:
        check_threshold(threshold, name="threshold")
    named = dict(adata_or_table) if isinstance(adata_or_table, Mapping) else {"": adata_or_table}
    results = {name: _recall_table(data, key) for name, data in named.items()}
    if threshold is None:
        threshold = next((t for _, t in results.values() if t is not None), None)
    series = {name: rec for name, (rec, _) in results.items()}
    sources = list(dict.fromkeys(s for rec in series.values() for s in rec.index if s != "mean"))
    sources += ["mean"] if any("mean" in rec.index for rec in series.values()) else []
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 0.75 * len(sources) * max(1, len(series) ** 0.5), 4.0))
    width = 0.8 / len(series)
    x = np.arange(len(sources))
    groups = []
    colors = method_colors([name or "unimodal" for name in series])  # an unnamed result: the first colour
    for k, (name, rec) in enumerate(series.items()):
        heights = 100 * rec.reindex(sources).to_numpy(dtype=float)
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=name or None, color=colors[k])
        groups.append(bars)
        if "mean" in sources:
            bars[-1].set_hatch(MEAN_HATCH)
            bars[-1].set_edgecolor("white")
    level = np.nan if threshold is None else 100 * 2 * threshold
    if threshold is not None:
        ax.axhline(level, **RANDOM_STYLE, label=f"random level ({level:g} %)", zorder=1)
    ax.set_xticks(x, sources, fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.set_ylabel("% of known pairs retrieved", fontsize=FONT_SIZE)
    ax.set_title("Known-relationship recall", fontsize=FONT_SIZE + 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(y=0.15)
    _value_labels(ax, groups, level)
    handles = ax.get_legend_handles_labels()[0]
    if "mean" in sources:  # the hatch explained
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch=MEAN_HATCH, label="mean over the databases"))
    if handles:
        ax.legend(handles=handles, fontsize=FONT_SIZE, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


_LABEL_SIZE = FONT_SIZE  # points
_LABEL_PAD = 1  # points between a bar and its label
_MAX_LABEL_HEADROOM = 0.4  # of the Axes height: more room than this for vertical labels and they are left out
# Labels are placed for the Axes as they are when plotted; a later fig.tight_layout() shrinks them (by a few
# percent to a fifth), so labels need this much more space than they take.
_LAYOUT_SLACK = 1.25


def _value_labels(ax: Axes, groups: Sequence, level: float = np.nan) -> None:
    """Label every bar with its height (1 decimal), placed by the space the Axes gives them.

    Adjacent bars touch, so two labels cannot overlap when each is at most as wide as its bar. Labels are
    horizontal when the text is that narrow, else vertical when the text height is (with head room made above
    the tallest bar), else left out. A label that would straddle the random line at ``level`` sits above it.
    """
    renderer = ax.figure.canvas.get_renderer()
    texts = [["" if np.isnan(h) else f"{h:.1f}" for h in bars.datavalues] for bars in groups]
    widest = max((s for group in texts for s in group), key=len, default="")
    if not widest:
        return
    probe = ax.text(0, 0, widest, fontsize=_LABEL_SIZE, transform=None)
    extent = probe.get_window_extent(renderer)
    probe.remove()
    left, right = ax.transData.transform([(0, 0), (groups[0][0].get_width(), 0)])[:, 0]
    bar_px = abs(right - left)
    pad_px = _LABEL_PAD * ax.figure.dpi / 72
    if _LAYOUT_SLACK * (extent.width + pad_px) <= bar_px:
        rotation = 0
    elif _LAYOUT_SLACK * (extent.height + pad_px) <= bar_px:
        rotation = 90
        bottom, top = ax.get_ylim()
        tallest = max(np.nanmax(np.asarray(bars.datavalues, dtype=float), initial=bottom) for bars in groups)
        # label length as a fraction of the Axes height, with room for a later layout change
        room = _LAYOUT_SLACK * (extent.width + 2 * pad_px) / ax.bbox.height
        if room > _MAX_LABEL_HEADROOM:
            return
        ax.set_ylim(bottom, max(top, (tallest - room * bottom) / (1 - room)))
    else:
        return
    bottom, top = ax.get_ylim()
    length = _LAYOUT_SLACK * ((extent.height if rotation == 0 else extent.width) + 2 * pad_px)
    length *= (top - bottom) / ax.bbox.height  # the label's height in data units
    if not np.isnan(level):  # a label that would straddle the random line is lifted above it
        top = max(top, level + 1.1 * length)
        ax.set_ylim(bottom, top)
    for bars, labels in zip(groups, texts, strict=True):
        for bar, label in zip(bars, labels, strict=True):
            height = bar.get_height()
            y = level if height < level < height + length else height
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, y),
                xytext=(0, _LABEL_PAD),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=_LABEL_SIZE,
                rotation=rotation,
            )


@dataclass(frozen=True)
class _Result:
    """A ``tl`` function whose results the plots read from ``adata.uns``, and how its entries are recognised."""

    func: str
    field: str
    """The entry's data: ``"table"`` (one table) or ``"tables"`` (one per source)."""
    param: str
    """A parameter only this function stores (``params[param]``)."""

    def holds(self, entry: object) -> bool:
        """Whether an ``adata.uns`` value is a result of :attr:`func`."""
        return (
            isinstance(entry, Mapping)
            and self.field in entry
            and isinstance(entry.get("params"), Mapping)
            and self.param in entry["params"]
        )

    def hint(self, use_rep: str | None, key: str, extra: str = "") -> str:
        """The call that stores the missing result (``extra``: more arguments, e.g. ``", thresholds=[0.1]"``)."""
        rep = "..." if use_rep is None else repr(use_rep)
        return f"run `scsemiclip.tl.{self.func}(adata, use_rep={rep}{extra}, key_added={key!r})` first"


_CURVE = _Result("known_relationship_recall_curve", "table", "thresholds")
_RETRIEVED = _Result("retrieved_relationships", "tables", "threshold")


def _selection(use_reps: str | Sequence[str] | None, keys: str | Sequence[str] | None) -> tuple[str, list[str]]:
    """``("use_rep", embeddings)`` or ``("key", uns keys)``: which stored results a plot draws."""
    if (use_reps is None) == (keys is None):
        raise ValueError(
            "Pass either `use_reps` (embeddings, whose stored results are looked up in adata.uns) or `keys` "
            f"(keys of adata.uns), not {'both' if keys is not None else 'neither'}."
        )
    by, names = ("use_rep", use_reps) if keys is None else ("key", keys)
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"`{by}s` is empty; give at least one.")
    return by, names


def _same(a: object, b: object) -> bool:
    """Whether two stored results hold the same data (tables, or mappings of tables)."""
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b)
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return False


def _by_key(adata: AnnData, kind: _Result, key: str) -> tuple[str, Mapping]:
    """``(key, adata.uns[key])``, which must be a result of ``kind``."""
    if key not in adata.uns:
        raise KeyError(f"adata.uns has no {key!r}; {kind.hint(None, key)}.")
    if not kind.holds(adata.uns[key]):
        raise KeyError(f"adata.uns[{key!r}] is not a result of `scsemiclip.tl.{kind.func}`; {kind.hint(None, key)}.")
    return key, adata.uns[key]


def _by_rep(adata: AnnData, kind: _Result, use_rep: str) -> tuple[str, Mapping]:
    """The ``uns`` key and result of ``kind`` computed on ``use_rep`` (several equal results: the first)."""
    found = {k: v for k, v in adata.uns.items() if kind.holds(v) and v["params"].get("use_rep") == use_rep}
    if not found:
        raise KeyError(
            f"adata.uns has no result of `scsemiclip.tl.{kind.func}` for use_rep={use_rep!r}; "
            f"{kind.hint(use_rep, f'{kind.func}_{use_rep}')} (a distinct `key_added` per embedding: one key holds "
            "one result)."
        )
    (key, first), *others = found.items()
    if not all(_same(first[kind.field], other[kind.field]) for _, other in others):
        raise ValueError(
            f"adata.uns holds several different results of `scsemiclip.tl.{kind.func}` for use_rep={use_rep!r} "
            f"(keys {list(found)}); pass `keys=` to choose, or delete the stale ones."
        )
    return key, first


def _stored(adata: AnnData, kind: _Result, by: str, names: list[str]) -> dict[str, tuple[str, Mapping]]:
    """Name (embedding or key) -> its ``uns`` key and result; a :class:`KeyError` names the call to run first."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData with results of `scsemiclip.tl.{kind.func}`, got {type(adata).__name__}.")
    find = _by_rep if by == "use_rep" else _by_key
    return {name: find(adata, kind, name) for name in names}


def _legend_names(names: list[str], labels: Sequence[str] | Mapping[str, str] | None) -> list[str]:
    """One legend name per entry of ``names``: ``labels`` in order, or mapped from the entry (default: itself)."""
    if labels is None or isinstance(labels, Mapping):
        return [(labels or {}).get(name, name) for name in names]
    if isinstance(labels, str) or len(labels) != len(names):
        raise ValueError(f"`labels` needs one name per key of `use_reps` or `keys` ({len(names)}), got {labels!r}.")
    return list(labels)


def _curve(result: Mapping, key: str, *, source: str, thresholds: np.ndarray | None) -> pd.DataFrame:
    """The rows of one source of a stored curve, by increasing threshold (those of ``thresholds`` if given)."""
    table = result["table"]
    if source not in set(table["source"]):
        stored = [s for s in dict.fromkeys(table["source"]) if s != "mean"]
        raise ValueError(f"`source={source!r}` is not among the sources {stored} or 'mean' of adata.uns[{key!r}].")
    curve = table[table["source"] == source].sort_values("threshold")
    if thresholds is None:
        return curve
    match = np.isclose(thresholds[:, None], curve["threshold"].to_numpy(dtype=float)[None, :], rtol=1e-12, atol=0)
    if not match.any(axis=1).all():
        use_rep = result["params"].get("use_rep")
        raise ValueError(
            f"thresholds {thresholds[~match.any(axis=1)].tolist()} are not stored in adata.uns[{key!r}] (it has "
            f"{curve['threshold'].tolist()}); {_CURVE.hint(use_rep, key, f', thresholds={thresholds.tolist()}')}."
        )
    return curve[match.any(axis=0)]


def recall_thresholds(
    adata: AnnData,
    *,
    use_reps: str | Sequence[str] | None = None,
    keys: str | Sequence[str] | None = None,
    thresholds: Sequence[float] | None = None,
    source: str = "mean",
    labels: Sequence[str] | Mapping[str, str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Known-relationship recall against the threshold, one curve per stored result (``adata`` is not modified).

    Draws the curves stored by :func:`scsemiclip.tl.known_relationship_recall_curve`; nothing is recomputed.

    Parameters
    ----------
    adata
        Annotated data with results of :func:`scsemiclip.tl.known_relationship_recall_curve` in ``adata.uns``.
    use_reps
        Embeddings to draw: for each, the result in ``adata.uns`` whose ``params["use_rep"]`` is that embedding
        (under the default key or any ``key_added``). Give either ``use_reps`` or ``keys``.
    keys
        Keys of the results in ``adata.uns`` (the ``key_added`` of each call).
    thresholds
        Thresholds to draw, among the stored ones; ``None`` draws every stored threshold.
    source
        Which curve: a source of the results (e.g. ``"CORUM"``) or ``"mean"``.
    labels
        Legend names: one per entry of ``use_reps`` or ``keys`` (in order), or a mapping from entry to name
        (entries it lacks keep their own name); the entries by default.
    ax
        Axes to draw into; a new figure by default.

    Returns
    -------
    The Axes, with one line per result (labelled by ``labels``) and the random expectation ``2 * threshold``.

    Raises
    ------
    KeyError
        When a result is missing; the message names the call of :func:`scsemiclip.tl.known_relationship_recall_curve`
        to run first.
    ValueError
        When ``source`` or one of ``thresholds`` is not stored, or several different results match an embedding.
    """
    wanted = None if thresholds is None else np.sort(check_thresholds(thresholds, name="thresholds"))
    check_key(source, name="source")
    by, names = _selection(use_reps, keys)
    legend = _legend_names(names, labels)
    results = _stored(adata, _CURVE, by, names)
    curves = [_curve(result, key, source=source, thresholds=wanted) for key, result in results.values()]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    for curve, name, color in zip(curves, legend, method_colors(legend), strict=True):
        ax.plot(curve["threshold"], curve["recall"], marker="o", markersize=3, label=name, color=color)
    grid = np.unique(np.concatenate([curve["threshold"].to_numpy(dtype=float) for curve in curves]))
    ax.plot(grid, 2 * grid, **RANDOM_STYLE, label="random")
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
    keys: str | Sequence[str] | None = None,
    source: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Venn diagram of the known relationships retrieved by two or three embeddings (the paper's Figure 4).

    Draws the relationships stored by :func:`scsemiclip.tl.retrieved_relationships`; nothing is recomputed
    (``adata`` is not modified).

    Parameters
    ----------
    adata
        Annotated data with results of :func:`scsemiclip.tl.retrieved_relationships` in ``adata.uns``; or, for
        embeddings of different datasets, a mapping from name to the result that function returned (or one of
        its tables).
    use_reps
        Two or three embeddings: for each, the result in ``adata.uns`` whose ``params["use_rep"]`` is that
        embedding (under the default key or any ``key_added``). With an AnnData, give either ``use_reps`` or
        ``keys`` (neither is used with a mapping).
    keys
        Two or three keys of the results in ``adata.uns`` (the ``key_added`` of each call).
    source
        One source's relationships; ``None`` pools all sources (a gene pair counts once).
    ax
        Axes to draw into; a new figure by default.

    Returns
    -------
    The Axes, with one circle per embedding (label: name and number of retrieved pairs) and the number of pairs
    in every region.

    Raises
    ------
    KeyError
        When a result is missing; the message names the call of :func:`scsemiclip.tl.retrieved_relationships` to
        run first.
    ValueError
        Unless there are 2 or 3 distinct embeddings, or when several different results match an embedding.
    """
    if isinstance(adata, AnnData):
        by, names = _selection(use_reps, keys)
    else:
        names = list(adata)
    if len(set(names)) != len(names) or len(names) not in (2, 3):
        raise ValueError(f"A Venn diagram needs 2 or 3 distinct embeddings, got {names}.")
    if isinstance(adata, AnnData):
        retrieved = {name: result["tables"] for name, (_, result) in _stored(adata, _RETRIEVED, by, names).items()}
    else:
        retrieved = dict(adata)
    sets = {name: _pair_set(res, source) for name, res in retrieved.items()}
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.6) if len(sets) == 3 else (4.5, 3.0))
    n = len(sets)
    angles = np.deg2rad([180.0, 0.0] if n == 2 else [150.0, 30.0, 270.0])
    centers = 0.6 * np.c_[np.cos(angles), np.sin(angles)]
    label_pos = centers * [1.5, 0] + [0, 1.25] if n == 2 else 3.1 * centers
    for k, ((name, members), color) in enumerate(zip(sets.items(), method_colors(list(sets)), strict=True)):
        ax.add_patch(Circle(centers[k], 1.0, facecolor=color, edgecolor=color, alpha=0.3, linewidth=1.5))
        ax.text(*label_pos[k], f"{name}\n({len(members):,})", ha="center", va="center", fontsize=FONT_SIZE, color=color)
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
