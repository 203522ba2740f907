"""Models (scvi-tools form)."""

from scsemiclip.train import TrainingDivergedError

from ._recipes import RECIPES, recipe_of
from ._semiclipped import SemiClipped

__all__ = ["RECIPES", "SemiClipped", "TrainingDivergedError", "recipe_of"]
