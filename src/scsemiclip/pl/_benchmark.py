"""Plot of a benchmark (the paper's Table 1 as grouped bars): methods without and with PEA, per evaluation set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scsemiclip._validate import check_key

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_PEA_STYLE = {False: {"color": "C0", "label": "without PEA"}, True: {"color": "C1", "label": "with PEA"}}


def _draw(summary: pd.DataFrame, dataset: str, metric: str, ax: Axes) -> None:
    """Bars (mean), error bars (std) and PEA p-values of one evaluation set into ``ax``."""
    methods = list(dict.fromkeys(summary.index.get_level_values("method")))
    x = np.arange(len(methods))
    width = 0.38
    for use_pea, style in _PEA_STYLE.items():
        rows = [(m, use_pea) for m in methods]
        present = np.array([row in summary.index for row in rows])
        if not present.any():
            continue
        stats = summary.reindex(rows)[(dataset, metric)]
        both = np.array([(m, not use_pea) in summary.index for m in methods])
        offset = np.where(both, (width / 2) * (1 if use_pea else -1), 0.0)
        ax.bar(
            (x + offset)[present],
            stats["mean"].to_numpy()[present],
            width,
            yerr=np.nan_to_num(stats["std"].to_numpy()[present]),
            capsize=3,
            **style,
        )
        if use_pea:
            for xi, mean, std, p in zip(x + offset, stats["mean"], stats["std"], stats["p_value"], strict=True):
                if np.isfinite(p):
                    ax.annotate(
                        f"p={p:.2g}",
                        (xi, mean + np.nan_to_num(std)),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        fontsize=7,
                    )
    ax.set_xticks(x, methods, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(dataset)


def benchmark(
    df: pd.DataFrame,
    *,
    metric: str = "recall_mean",
    datasets: str | list[str] | None = None,
    alternative: str = "two-sided",
    ax: Axes | None = None,
) -> Axes | Figure:
    """Grouped bars of a benchmark: mean over seeds (error bar: std) per method, without and with PEA.

    Each PEA bar is annotated with the Wilcoxon signed-rank p-value against the same method without PEA
    (see :func:`scsemiclip.tl.benchmark_summary`); the baselines have one bar.

    Parameters
    ----------
    df
        The table returned by :func:`scsemiclip.tl.benchmark`.
    metric
        Column to plot (e.g. ``"recall_mean"``, ``"interpretability"``, ``"recall_CORUM"``).
    datasets
        Evaluation set(s) to plot, one panel each; ``None``: all of ``df``.
    alternative
        Alternative hypothesis of the Wilcoxon test.
    ax
        Axes to draw into (only with a single evaluation set); a new figure by default.

    Returns
    -------
    The Axes for a single evaluation set, otherwise the Figure with one panel per set.
    """
    from scsemiclip.tl import benchmark_summary  # the statistics; imported here so that `pl` does not load `tl`

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`df` must be the DataFrame of `scsemiclip.tl.benchmark`, got {type(df).__name__}.")
    check_key(metric, name="metric")
    if metric not in df.columns:
        raise KeyError(f"`df` has no column {metric!r}; pass the table of `tl.benchmark` and one of its metrics.")
    available = list(dict.fromkeys(df["dataset"]))
    chosen = available if datasets is None else [datasets] if isinstance(datasets, str) else list(datasets)
    unknown = [d for d in chosen if d not in available]
    if unknown or not chosen:
        raise ValueError(f"`datasets` {unknown or chosen} not in the benchmark's sets {available}.")
    if ax is not None and len(chosen) > 1:
        raise ValueError(f"`ax` takes one panel, but {len(chosen)} sets are plotted; pass `datasets=` with one.")
    summary = benchmark_summary(df[df["dataset"].isin(chosen)], metrics=metric, alternative=alternative)
    if ax is not None or len(chosen) == 1:
        if ax is None:
            _, ax = plt.subplots(figsize=(1.5 + 0.9 * summary.index.levels[0].size, 3.5))
        _draw(summary, chosen[0], metric, ax)
        ax.legend(fontsize=8)
        return ax
    fig, axes = plt.subplots(
        1, len(chosen), figsize=(len(chosen) * (1.5 + 0.9 * summary.index.levels[0].size), 3.5), squeeze=False
    )
    for dataset, panel in zip(chosen, axes[0], strict=True):
        _draw(summary, dataset, metric, panel)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
