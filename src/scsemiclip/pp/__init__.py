"""Preprocessing: negative controls, batch corrections fitted on controls, aggregation and PEA."""

from ._aggregate import aggregate
from ._corrections import center, standardize, tvn

__all__ = ["aggregate", "center", "standardize", "tvn"]
