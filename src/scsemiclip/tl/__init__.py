"""Tools: training, transfer and evaluation (known-relationship recall, interpretability preservation)."""

from ._benchmark import benchmark, benchmark_summary, evaluate_representations
from ._calibration import calibration_check
from ._distillation import distillation_gain, validation_recall
from ._enrichment import relationship_enrichment
from ._evaluate import evaluate_map
from ._interpretability import interpretability_preservation, interpretability_preservation_split
from ._map import phenotypic_activity, phenotypic_consistency
from ._random import random_baseline
from ._random_levels import RANDOM_LEVELS, RECALL_THRESHOLD
from ._recall import known_relationship_recall, known_relationship_recall_curve, retrieved_relationships
from ._semiclipped import apply_semiclipped, fit_semiclipped
from ._signal import perturbation_consistency, perturbation_magnitude

__all__ = [
    "RANDOM_LEVELS",
    "RECALL_THRESHOLD",
    "apply_semiclipped",
    "benchmark",
    "benchmark_summary",
    "calibration_check",
    "distillation_gain",
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
    "validation_recall",
]
