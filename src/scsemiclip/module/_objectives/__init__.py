"""Training objectives: one file per objective, registered by name in :data:`OBJECTIVES`."""

# importing the objective files registers them
from . import _c2kd, _clip, _dcca, _kd, _semiclipped, _shake, _siglip, _vicreg
from ._base import (
    OBJECTIVES,
    ContrastiveObjective,
    Objective,
    ObjectiveOutput,
    get_objective,
    info_nce,
    minimise,
    register_objective,
)

__all__ = [
    "OBJECTIVES",
    "ContrastiveObjective",
    "Objective",
    "ObjectiveOutput",
    "get_objective",
    "info_nce",
    "minimise",
    "register_objective",
]
