"""Torch modules: the Semi-Clipped module and the pluggable training objectives."""

from scsemiclip._core import mlp

from ._objectives import OBJECTIVES, ContrastiveObjective, Objective, ObjectiveOutput, info_nce, register_objective
from ._semiclipped import SemiClippedModule

__all__ = [
    "OBJECTIVES",
    "ContrastiveObjective",
    "Objective",
    "ObjectiveOutput",
    "SemiClippedModule",
    "info_nce",
    "mlp",
    "register_objective",
]
