"""Training: the Lightning training plan, the device-resident data module and the progress bar."""

from ._datamodule import DeviceDataSplitter, PermutationBatches
from ._plan import SemiClippedTrainingPlan
from ._progress import EpochProgressBar, quiet_lightning

__all__ = [
    "DeviceDataSplitter",
    "EpochProgressBar",
    "PermutationBatches",
    "SemiClippedTrainingPlan",
    "quiet_lightning",
]
