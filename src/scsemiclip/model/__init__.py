"""Models (scvi-tools form)."""

from scsemiclip.train import TrainingDivergedError

from ._semiclipped import SemiClipped

__all__ = ["SemiClipped", "TrainingDivergedError"]
