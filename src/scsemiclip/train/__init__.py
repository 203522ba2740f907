"""Training: the Lightning training plan, the device-resident data module and the progress bar."""

from ._datamodule import DeviceDataSplitter, PermutationBatches
from ._plan import SemiClippedTrainingPlan, TrainingDivergedError
from ._progress import EpochProgressBar, quiet_lightning
from ._threads import apply_threads, torch_threads

__all__ = [
    "DeviceDataSplitter",
    "EpochProgressBar",
    "PermutationBatches",
    "SemiClippedTrainingPlan",
    "TrainingDivergedError",
    "apply_threads",
    "quiet_lightning",
    "torch_threads",
]
