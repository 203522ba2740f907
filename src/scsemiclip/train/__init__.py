"""Training: the Lightning training plan and the device-resident data module."""

from ._datamodule import DeviceDataSplitter, PermutationBatches
from ._plan import SemiClippedTrainingPlan

__all__ = ["DeviceDataSplitter", "PermutationBatches", "SemiClippedTrainingPlan"]
