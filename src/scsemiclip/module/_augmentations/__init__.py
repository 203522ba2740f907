"""Training-time augmentations of the student: one file per method, registered by name in :data:`AUGMENTATIONS`."""

# importing the augmentation files registers them
from . import _mdwgan, _mwo, _scgft, _scvi
from ._base import (
    AUGMENTATIONS,
    PEA,
    Augmentation,
    KeyGroups,
    Minibatch,
    build_augmentations,
    register_augmentation,
)
from ._mdwgan import MDWGANGP, knn_propagate
from ._mwo import MWO
from ._scgft import ScGFT
from ._scvi import ScVIDenoise

__all__ = [
    "AUGMENTATIONS",
    "MDWGANGP",
    "MWO",
    "PEA",
    "Augmentation",
    "KeyGroups",
    "Minibatch",
    "ScGFT",
    "ScVIDenoise",
    "build_augmentations",
    "knn_propagate",
    "register_augmentation",
]
