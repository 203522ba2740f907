"""Training: the Lightning training plan, the device-resident data module, the validation split and its metrics."""

from ._datamodule import DeviceDataSplitter, PermutationBatches, ddp_without_buffer_broadcast, shared_float32
from ._plan import SemiClippedTrainingPlan, TrainingDivergedError
from ._progress import EpochProgressBar, quiet_lightning
from ._split import KeySplit, split_keys
from ._threads import apply_threads, torch_threads
from ._validation import (
    VALIDATION_METRICS,
    HeldOut,
    HeldOutValidation,
    Scorer,
    StopAfterEpochs,
    warn_if_near_chance,
)

__all__ = [
    "VALIDATION_METRICS",
    "DeviceDataSplitter",
    "EpochProgressBar",
    "HeldOut",
    "HeldOutValidation",
    "KeySplit",
    "PermutationBatches",
    "Scorer",
    "SemiClippedTrainingPlan",
    "StopAfterEpochs",
    "TrainingDivergedError",
    "apply_threads",
    "ddp_without_buffer_broadcast",
    "quiet_lightning",
    "shared_float32",
    "split_keys",
    "torch_threads",
    "warn_if_near_chance",
]
