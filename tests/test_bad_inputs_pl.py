"""Bad inputs of ``pl``: a named ValueError / TypeError / KeyError, never a plot of what ``tl`` would reject."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from conftest import make_weakly_paired

import scsemiclip as ssc


@pytest.fixture(scope="module")
def curves():
    adata, _, pairs = make_weakly_paired(n_genes=24, n_rep=2, n_controls=4)
    ssc.tl.known_relationship_recall_curve(adata, use_rep="X_emb", sources={"toy": pairs}, thresholds=[0.05, 0.1])
    ssc.tl.known_relationship_recall(adata, use_rep="X_emb", sources={"toy": pairs})
    return adata


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


CASES = [
    ("recall_thresholds", {"thresholds": [0.9]}, ValueError, "thresholds"),
    ("recall_thresholds", {"thresholds": []}, ValueError, "thresholds"),
    ("recall_thresholds", {"thresholds": [float("nan")]}, ValueError, "thresholds"),
    ("recall_thresholds", {"thresholds": ["0.05"]}, TypeError, "thresholds"),
    ("recall_thresholds", {"thresholds": [0.2]}, ValueError, "thresholds"),
    ("recall_thresholds", {"source": 1}, TypeError, "source"),
    ("recall_thresholds", {"source": "nope"}, ValueError, "source"),
    ("recall_thresholds", {"use_reps": [], "keys": None}, ValueError, "use_reps"),
    ("recall_thresholds", {"use_reps": "X_nope"}, KeyError, "X_nope"),
    ("recall", {"threshold": 0.7}, ValueError, "threshold"),
    ("recall", {"threshold": float("inf")}, ValueError, "threshold"),
    ("recall", {"key": 3}, TypeError, "key"),
    ("recall", {"key": "nope"}, KeyError, "nope"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "text"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_bad_argument(curves, name, kwargs, error, text):
    n_figures = len(plt.get_fignums())
    with pytest.raises(error, match=re.escape(text)):
        defaults = {"use_reps": "X_emb"} if name == "recall_thresholds" else {}
        getattr(ssc.pl, name)(curves, **{**defaults, **kwargs})
    assert len(plt.get_fignums()) == n_figures  # nothing drawn


def test_recall_rejects_another_object():
    with pytest.raises(TypeError, match="Expected an AnnData or a recall table, got list"):
        ssc.pl.recall([1, 2])


def test_benchmark_bad_arguments():
    with pytest.raises(TypeError, match="`df`"):
        ssc.pl.benchmark({"recall_mean": [0.1]})
    df = pd.DataFrame({"dataset": ["a"], "recall_mean": [0.1]})
    with pytest.raises(TypeError, match="metric"):
        ssc.pl.benchmark(df, metric=None)
    with pytest.raises(KeyError, match="nope"):
        ssc.pl.benchmark(df, metric="nope")


def test_relationship_enrichment_bad_top():
    table = pd.DataFrame({"term": ["a"], "p_value": [0.1], "q_value": [0.2], "odds_ratio": [2.0], "overlap": [1]})
    with pytest.raises((ValueError, KeyError), match="top|columns"):
        ssc.pl.relationship_enrichment(table, top=0)


def test_training_history_of_an_untrained_object():
    with pytest.raises(ValueError, match="no training history"):
        ssc.pl.training_history(object())
