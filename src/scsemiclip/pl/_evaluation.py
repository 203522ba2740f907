"""Plot of :func:`scsemiclip.tl.evaluate_map`: one bar panel per metric, one bar per representation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from scsemiclip._validate import check_int, check_key
from scsemiclip.tl import RANDOM_LEVELS

from ._palette import FONT_SIZE, RANDOM_STYLE, method_colors, value_labels

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_COLUMNS = {"representation", "metric", "value"}
#: Panel titles and y-axis labels of the metrics of :func:`scsemiclip.tl.evaluate_map`.
_TITLES = {
    "recall": ("Known-relationship recall", "% of known pairs retrieved"),
    "recall_right": ("Recall, top tail only", "% of known pairs retrieved"),
    "phenotypic_activity": ("Phenotypic activity", "% of perturbations significant"),
    "phenotypic_consistency": ("Phenotypic consistency", "% of complexes significant"),
    "perturbation_consistency": ("Perturbation consistency", "% of perturbations significant"),
    "perturbation_magnitude": ("Perturbation magnitude", "% of perturbations significant"),
    "interpretability": ("Interpretability", "score (0-100)"),
}
#: Mark of the panels whose metric does not compare representations of different spaces.
_UNFAIR_MARK = "\N{DAGGER}"
_UNFAIR_NOTE = (
    f"{_UNFAIR_MARK} compares each representation's profiles with its own controls: compare only representations "
    "of the same space (a distilled map lives in the teacher's space)."
)
#: Inches per panel: wide enough for one bar per representation, tall enough for value labels on a slide.
_PANEL_HEIGHT = 3.3


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


def _label(metric: str) -> tuple[str, str]:
    """Title and y-axis label of a metric's panel (a calibration row: the false-positive rate of its family)."""
    if metric.endswith("_calibration"):
        family = metric.removesuffix("_calibration")
        return f"Calibration: {_TITLES.get(family, (family,))[0].lower()}", "% of pseudo-perturbations significant"
    return _TITLES.get(metric, (metric.replace("_", " ").capitalize(), "value"))


def _draw(rows: pd.DataFrame, metric: str, reps: list[str], ax: Axes) -> None:
    """One panel: a bar per representation with its value (in % for fractions) and the random level."""
    rows = rows.set_index("representation").reindex(reps)
    percent = "unit" not in rows or (rows["unit"].dropna() == "fraction").all()
    percent = percent and metric != "interpretability"
    values = rows["value"].to_numpy(dtype=float) * (100 if percent else 1)
    level = rows["random_level"].dropna() if "random_level" in rows else pd.Series(dtype=float)
    level = float(level.iloc[0]) if len(level) else RANDOM_LEVELS.get(metric, np.nan)
    level *= 100 if percent and not np.isnan(level) else 1
    x = np.arange(len(reps))
    bars = ax.bar(x, values, width=0.7, color=method_colors(reps), zorder=2)
    if not np.isnan(level):
        ax.axhline(level, **RANDOM_STYLE, zorder=1)
    top = np.nanmax([*values, level, 0 if percent else 1e-9])
    ax.set_ylim(0, top * 1.22 if top > 0 else 1)
    value_labels(ax, bars, level)
    title, ylabel = _label(metric)
    fair = "fair_across_spaces" not in rows or bool(rows["fair_across_spaces"].dropna().all())
    ax.set_title(title + ("" if fair else f" {_UNFAIR_MARK}"), fontsize=FONT_SIZE + 1)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    slanted = max(map(len, reps)) > 8  # long names slanted, so that neighbours do not touch
    ax.set_xticks(x, reps, rotation=30 if slanted else 0, ha="right" if slanted else "center")
    ax.tick_params(labelsize=FONT_SIZE)
    ax.spines[["top", "right"]].set_visible(False)


def _legend(target: Figure | Axes, reps: list[str], *, random: bool, note: bool, loc: str) -> None:
    """The legend: a patch per representation, the random level, and what a dagger means."""
    handles = [Patch(facecolor=c, label=r) for r, c in zip(reps, method_colors(reps), strict=True)]
    if random:
        handles.append(Line2D([], [], **RANDOM_STYLE, label="random level (a map without information)"))
    below = loc == "outside lower center"
    target.legend(
        handles=handles,
        loc=loc,
        bbox_to_anchor=(1.02, 1.0) if loc == "upper left" else None,
        ncols=min(len(handles), 5) if below else 1,
        fontsize=FONT_SIZE,
        frameon=False,
        title=_UNFAIR_NOTE if note and below else None,
        title_fontsize=FONT_SIZE,
    )


def evaluation_summary(
    adata_or_table: AnnData | pd.DataFrame,
    *,
    key: str = "evaluate_map",
    metrics: Sequence[str] | None = None,
    ncols: int = 4,
    ax: Axes | None = None,
) -> Axes | Figure:
    """Bars of every metric of :func:`scsemiclip.tl.evaluate_map`, one panel per metric, one bar per representation.

    Fractions are drawn in % (recall: known pairs retrieved; phenotypic activity and consistency, perturbation
    consistency and magnitude: perturbations or complexes significant), interpretability as its 0-100 score; each
    bar carries its value. A dashed line marks the random level, what a map without information scores (the
    table's ``random_level``: ``2 * threshold`` for ``recall``, ``threshold`` for ``recall_right``, 25 for
    ``interpretability``; see :data:`scsemiclip.tl.RANDOM_LEVELS`). A dagger marks the metrics that compare
    profiles with the representation's own controls, which do not compare representations of different spaces
    (the table's ``fair_across_spaces``). Each representation keeps its colour of every plot of
    :mod:`scsemiclip.pl` (Semi-Clipped orange, the unimodal embedding blue, random grey).

    Parameters
    ----------
    adata_or_table
        AnnData with ``uns[key]`` written by :func:`scsemiclip.tl.evaluate_map`, or its table.
    key
        Key of the result in ``adata.uns``.
    metrics
        Metrics to draw, in this order (``None``: all of the table except the calibration rows, in its order).
    ncols
        Panels per row of the figure (a positive integer).
    ax
        Axes to draw into (only with a single metric); a new figure by default.

    Returns
    -------
    The Axes for a single metric, otherwise the Figure with one panel per metric and one legend below them.
    """
    check_key(key, name="key")
    ncols = check_int(ncols, name="ncols", minimum=1)
    table = _table(adata_or_table, key)
    available = list(dict.fromkeys(table["metric"]))
    if metrics is None:
        chosen = [m for m in available if not str(m).endswith("_calibration")]
    else:
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in chosen if m not in available]
    if unknown or not chosen:
        raise ValueError(f"`metrics` {unknown or chosen} not in the evaluation's metrics {available}.")
    if ax is not None and len(chosen) > 1:
        raise ValueError(f"`ax` takes one panel, but {len(chosen)} metrics are drawn; pass `metrics=` with one.")
    reps = [str(r) for r in dict.fromkeys(table["representation"])]
    table = table.assign(representation=table["representation"].astype(str))
    width = max(2.6, 1.0 + 0.75 * len(reps))
    if ax is not None or len(chosen) == 1:
        own = ax is None  # a figure of our own: its legend right of the panel, inside the figure
        if own:
            _, ax = plt.subplots(figsize=(width + 3.6, _PANEL_HEIGHT), layout="constrained")
        _draw(table[table["metric"] == chosen[0]], chosen[0], reps, ax)
        target = ax.figure if own else ax
        _legend(target, reps, random=bool(ax.lines), note=False, loc="outside right upper" if own else "upper left")
        return ax
    ncols = min(ncols, len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * width, nrows * _PANEL_HEIGHT + 0.9), squeeze=False, layout="constrained"
    )
    for metric, panel in zip(chosen, axes.ravel(), strict=False):
        _draw(table[table["metric"] == metric], metric, reps, panel)
    for panel in axes.ravel()[len(chosen) :]:
        panel.set_visible(False)
    drawn = axes.ravel()[: len(chosen)]
    unfair = any(_UNFAIR_MARK in panel.get_title() for panel in drawn)
    _legend(fig, reps, random=any(panel.lines for panel in drawn), note=unfair, loc="outside lower center")
    return fig
