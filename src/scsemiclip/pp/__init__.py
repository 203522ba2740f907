"""Preprocessing: negative controls, batch corrections fitted on controls, aggregation and PEA."""

from ._aggregate import aggregate
from ._controls import mark_controls
from ._corrections import center, standardize, tvn
from ._pea import pea_augment

__all__ = ["aggregate", "center", "mark_controls", "pea_augment", "standardize", "tvn"]
