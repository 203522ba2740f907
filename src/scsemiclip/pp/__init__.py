"""Preprocessing: negative controls, batch corrections fitted on controls, aggregation and PEA."""

from ._corrections import center, standardize, tvn

__all__ = ["center", "standardize", "tvn"]
