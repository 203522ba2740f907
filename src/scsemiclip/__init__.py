"""scsemiclip: distil microscopy knowledge into transcriptomics representations (Semi-Clipped and PEA).

Subpackages load on first use (``ssc.pp``, ``ssc.tl``, ...), so ``import scsemiclip`` is fast and pulls in
neither torch, Lightning, scvi-tools nor scanpy; :data:`settings` holds the package settings.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from ._settings import settings

try:
    __version__ = version("scsemiclip")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from . import datasets, model, module, pl, pp, tl, train

_SUBPACKAGES = ("datasets", "model", "module", "pl", "pp", "tl", "train")

__all__ = ["__version__", "datasets", "model", "module", "pl", "pp", "settings", "tl", "train"]


def __getattr__(name: str) -> object:
    """Import a subpackage on first access (pertpy's lazy loading)."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
