"""Tools: training, transfer and evaluation (known-relationship recall, interpretability preservation)."""

from ._benchmark import benchmark, benchmark_summary, evaluate_representations
from ._interpretability import interpretability_preservation
from ._random import random_baseline
from ._recall import known_relationship_recall, known_relationship_recall_curve, retrieved_relationships
from ._semiclipped import apply_semiclipped, fit_semiclipped

__all__ = [
    "apply_semiclipped",
    "benchmark",
    "benchmark_summary",
    "evaluate_representations",
    "fit_semiclipped",
    "interpretability_preservation",
    "known_relationship_recall",
    "known_relationship_recall_curve",
    "random_baseline",
    "retrieved_relationships",
]
