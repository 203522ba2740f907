"""Tools: training, transfer and evaluation (known-relationship recall, interpretability preservation)."""

from ._benchmark import benchmark, benchmark_summary, evaluate_representations
from ._enrichment import relationship_enrichment
from ._evaluate import evaluate_map
from ._interpretability import interpretability_preservation, interpretability_preservation_split
from ._map import phenotypic_activity, phenotypic_consistency
from ._random import random_baseline
from ._recall import known_relationship_recall, known_relationship_recall_curve, retrieved_relationships
from ._semiclipped import apply_semiclipped, fit_semiclipped
from ._signal import perturbation_consistency, perturbation_magnitude

__all__ = [
    "apply_semiclipped",
    "benchmark",
    "benchmark_summary",
    "evaluate_map",
    "evaluate_representations",
    "fit_semiclipped",
    "interpretability_preservation",
    "interpretability_preservation_split",
    "known_relationship_recall",
    "known_relationship_recall_curve",
    "perturbation_consistency",
    "perturbation_magnitude",
    "phenotypic_activity",
    "phenotypic_consistency",
    "random_baseline",
    "relationship_enrichment",
    "retrieved_relationships",
]
