"""pl.recall's value labels: placed by the space the Axes gives them, and never overlapping."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from scsemiclip import pl

SOURCES = ["CORUM", "HuMAP", "Reactome", "SIGNOR", "StringDB", "mean"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tables(n_embeddings: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Recall tables of ``n_embeddings`` embeddings with close values (the labels of neighbours at equal height)."""
    rng = np.random.default_rng(seed)
    return {
        f"embedding {k}": pd.DataFrame({"recall": rng.uniform(0.1, 0.12, len(SOURCES))}, index=SOURCES)
        for k in range(n_embeddings)
    }


def _labels(ax):
    """The value labels (texts with one decimal: recall in %) drawn on the Axes, after a full draw."""
    ax.figure.canvas.draw()
    return [t for t in ax.texts if t.get_text().count(".") == 1 and len(t.get_text().split(".")[1]) == 1]


def _overlapping(ax) -> list[tuple[str, str]]:
    renderer = ax.figure.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _labels(ax)]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def _inside_axes(ax) -> bool:
    renderer = ax.figure.canvas.get_renderer()
    top = ax.get_window_extent(renderer).y1
    return all(t.get_window_extent(renderer).y1 <= top + 0.5 for t in _labels(ax))


def test_wide_bars_get_horizontal_labels():
    _, ax = plt.subplots(figsize=(8, 4))
    tables = _tables(1)
    pl.recall(tables, ax=ax)
    labels = _labels(ax)
    assert [t.get_text() for t in labels] == [f"{100 * v:.1f}" for v in tables["embedding 0"]["recall"]]
    assert {t.get_rotation() for t in labels} == {0}
    assert not _overlapping(ax)


def test_narrow_bars_get_vertical_labels_inside_the_axes():
    _, ax = plt.subplots(figsize=(8, 4))  # 24 bars: too narrow for horizontal 10-pt labels
    pl.recall(_tables(4), ax=ax)
    labels = _labels(ax)
    assert len(labels) == 4 * len(SOURCES)
    assert {t.get_rotation() for t in labels} == {90}
    assert not _overlapping(ax)
    assert _inside_axes(ax)


def test_labels_still_fit_after_tight_layout():
    """Two panels sharing y, laid out after plotting (as notebooks do): labels stay inside and apart."""
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.4), sharey=True)
    for k, ax in enumerate(axes):
        tables = _tables(4, seed=k)
        tables["embedding 1"].loc["Reactome", "recall"] = 0.57 + 0.01 * k
        pl.recall(tables, ax=ax, threshold=0.05)
    fig.tight_layout()
    for ax in axes:
        assert len(_labels(ax)) == 4 * len(SOURCES)
        assert _inside_axes(ax)
        assert not _overlapping(ax)


def test_too_narrow_bars_get_no_labels():
    fig, ax = plt.subplots(figsize=(1.5, 3))
    pl.recall(_tables(8), ax=ax)
    assert _labels(ax) == []
    assert len(ax.patches) == 8 * len(SOURCES)  # the bars themselves are all drawn


@pytest.mark.parametrize(("width", "n_embeddings"), [(3, 2), (4.5, 3), (6, 5), (2.5, 1), (10, 6)])
def test_labels_never_overlap(width, n_embeddings):
    """Whatever the width and the number of embeddings, labels are all drawn or none, and none overlap."""
    _, ax = plt.subplots(figsize=(width, 3))
    pl.recall(_tables(n_embeddings, seed=n_embeddings), ax=ax)
    assert len(_labels(ax)) in (0, n_embeddings * len(SOURCES))
    assert not _overlapping(ax)
    assert _inside_axes(ax)
