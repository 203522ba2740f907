"""Models (scvi-tools form)."""

from ._semiclipped import SemiClipped

__all__ = ["SemiClipped"]
