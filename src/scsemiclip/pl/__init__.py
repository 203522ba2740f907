"""Plots (matplotlib): each takes ``ax=`` and returns the Axes (or the Figure for several panels)."""

from ._benchmark import benchmark
from ._enrichment import relationship_enrichment
from ._evaluation import evaluation_summary
from ._history import training_history
from ._recall import recall, recall_thresholds, relationship_venn

__all__ = [
    "benchmark",
    "evaluation_summary",
    "recall",
    "recall_thresholds",
    "relationship_enrichment",
    "relationship_venn",
    "training_history",
]
