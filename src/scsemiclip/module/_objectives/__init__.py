"""Training objectives: one file per objective, registered by name in :data:`OBJECTIVES`."""

from . import _clip, _semiclipped  # noqa: F401 (importing registers the objectives)
from ._base import OBJECTIVES, ContrastiveObjective, Objective, ObjectiveOutput, get_objective, info_nce, register_objective

__all__ = [
    "OBJECTIVES",
    "ContrastiveObjective",
    "Objective",
    "ObjectiveOutput",
    "get_objective",
    "info_nce",
    "register_objective",
]
