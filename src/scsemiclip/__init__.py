"""scsemiclip: distil microscopy knowledge into transcriptomics representations (Semi-Clipped and PEA)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scsemiclip")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from . import datasets, model, pl, pp, tl

__all__ = ["__version__", "datasets", "model", "pl", "pp", "tl"]
