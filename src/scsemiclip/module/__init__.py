"""Torch modules: the Semi-Clipped module, the pluggable training objectives and the student augmentations."""

from scsemiclip._core import mlp

from ._augmentations import (
    AUGMENTATIONS,
    MDWGANGP,
    MWO,
    Augmentation,
    Minibatch,
    ScGFT,
    ScVIDenoise,
    build_augmentations,
    register_augmentation,
)
from ._objectives import OBJECTIVES, ContrastiveObjective, Objective, ObjectiveOutput, info_nce, register_objective
from ._semiclipped import SemiClippedModule

__all__ = [
    "AUGMENTATIONS",
    "MDWGANGP",
    "MWO",
    "OBJECTIVES",
    "Augmentation",
    "ContrastiveObjective",
    "Minibatch",
    "Objective",
    "ObjectiveOutput",
    "ScGFT",
    "ScVIDenoise",
    "SemiClippedModule",
    "build_augmentations",
    "info_nce",
    "mlp",
    "register_augmentation",
    "register_objective",
]
