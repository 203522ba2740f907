"""Plots (matplotlib): each takes ``ax=`` and returns the Axes (or the Figure for several panels)."""

from ._benchmark import benchmark
from ._history import training_history
from ._recall import recall, recall_thresholds, relationship_venn

__all__ = ["benchmark", "recall", "recall_thresholds", "relationship_venn", "training_history"]
