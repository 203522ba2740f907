"""Tools: training, transfer and evaluation (known-relationship recall, interpretability preservation)."""

from ._interpretability import interpretability_preservation
from ._random import random_baseline
from ._recall import known_relationship_recall, known_relationship_recall_curve, retrieved_relationships

__all__ = [
    "interpretability_preservation",
    "known_relationship_recall",
    "known_relationship_recall_curve",
    "random_baseline",
    "retrieved_relationships",
]
