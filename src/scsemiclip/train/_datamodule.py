"""A device-resident data module: all training tensors moved once to the device, minibatches by index."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from lightning.pytorch import LightningDataModule

from scsemiclip._docs import doc_params, doc_stage

if TYPE_CHECKING:
    from lightning.pytorch.strategies import Strategy

#: Start methods of Lightning's DDP strategy names.
_DDP_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}


def shared_float32(x: np.ndarray) -> torch.Tensor:
    """``x`` as a float32 CPU tensor, sharing its memory when it is float32 already (it is only read, never written).

    A read-only array (e.g. a memory-mapped file) is shared too: torch's warning about non-writable arrays is
    silenced because nothing writes into the tensor.
    """
    if x.dtype != np.float32:
        return torch.from_numpy(x.astype(np.float32))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(x)


def ddp_without_buffer_broadcast(strategy: str | Strategy) -> str | Strategy:
    """Lightning's DDP strategy names as ``DDPStrategy(broadcast_buffers=False)`` (the frozen teacher is a buffer)."""
    if isinstance(strategy, str) and strategy in _DDP_START_METHODS:
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(broadcast_buffers=False, start_method=_DDP_START_METHODS[strategy])
    return strategy


class PermutationBatches:
    """Minibatches of rows of device tensors, in a fresh random order every epoch, without the last partial one.

    In a distributed run every rank draws the same permutation (same seed, same number of draws) and takes its
    own contiguous share of ``n // world_size`` rows, so ranks see disjoint samples and the same number of steps.
    With ``rows`` (a long tensor on the tensors' device) only those rows are drawn: the permutation is over
    ``rows`` and a minibatch gathers ``tensors[rows[order]]``, so the tensors need no gathered copy.
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        *,
        batch_size: int,
        generator: torch.Generator,
        rank: int = 0,
        world_size: int = 1,
        rows: torch.Tensor | None = None,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.generator = generator
        self.rank = rank
        self.rows = rows
        self.n = next(iter(tensors.values())).shape[0] if rows is None else rows.shape[0]
        self.n_local = self.n // world_size

    def __len__(self) -> int:
        return self.n_local // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        device = next(iter(self.tensors.values())).device
        order = torch.randperm(self.n, generator=self.generator, device=device)
        order = order[self.rank * self.n_local : (self.rank + 1) * self.n_local]
        if self.rows is not None:
            order = self.rows[order]
        for idx in order[: len(self) * self.batch_size].split(self.batch_size):
            yield {k: v[idx] for k, v in self.tensors.items()}


class DeviceDataSplitter(LightningDataModule):
    """Training data for :class:`~scsemiclip.model.SemiClipped`, moved once to the training device.

    scvi-tools' default ``AnnDataLoader`` indexes the AnnData per minibatch on the host; here the (small, dense)
    training tensors are copied to ``trainer.strategy.root_device`` once in :meth:`setup`, and every minibatch is
    an index into them (random permutation per epoch, ``drop_last``), so a step costs a few gathers on the device.
    Works with any Lightning accelerator / strategy; under DDP each rank takes its share of every permutation.

    Parameters
    ----------
    tensors
        Tensors with the same first dimension, their rows yielded as a dict per minibatch.
    batch_size
        Minibatch size (per device).
    seed
        Seed of the permutations.
    rows
        Indices of the training rows of ``tensors`` (default: every row). The minibatches gather these rows from
        the full tensors, so a model can hand over its whole (shared, uncopied) embedding.
    validation_rows
        Indices of the held-out rows (validated by :class:`~scsemiclip.train.HeldOutValidation`, not yielded here);
        recorded as scvi-tools' ``val_idx`` / ``n_val`` (``train_idx``: the training rows).
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        *,
        batch_size: int,
        seed: int = 0,
        rows: np.ndarray | torch.Tensor | None = None,
        validation_rows: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        sizes = {k: v.shape[0] for k, v in tensors.items()}
        if not tensors or len(set(sizes.values())) != 1:
            raise ValueError(f"`tensors` must be non-empty with equal first dimensions, got {sizes}.")
        if batch_size < 2:
            raise ValueError(f"`batch_size` must be >= 2 (in-batch negatives), got {batch_size}.")
        n_rows = next(iter(sizes.values()))
        if rows is not None:
            rows = torch.as_tensor(rows, dtype=torch.long)
            if rows.ndim != 1 or (rows.numel() and not (0 <= int(rows.min()) and int(rows.max()) < n_rows)):
                raise ValueError(f"`rows` must be a 1-d array of row indices below {n_rows}.")
        self.tensors = tensors
        self.rows = rows
        self.batch_size = batch_size
        self.seed = seed
        self.n_train = n_rows if rows is None else rows.shape[0]
        self.train_idx = np.arange(n_rows) if rows is None else rows.numpy()
        self.val_idx = np.asarray([] if validation_rows is None else validation_rows, dtype=np.int64)
        self.n_val = len(self.val_idx)
        self._batches: PermutationBatches | None = None

    @doc_params(doc_stage=doc_stage)
    def setup(self, stage: str | None = None) -> None:
        """Move the tensors to the training device and prepare this rank's minibatches.

        The device is ``trainer.strategy.root_device`` (the CPU without a trainer); the rank and the world size are
        the trainer's. The permutations are drawn on that device from a generator seeded with ``seed``.

        Parameters
        ----------
        {doc_stage}

        Returns
        -------
        ``None``; :meth:`train_dataloader` returns the minibatches from now on.

        Raises
        ------
        ValueError
            If this rank's share of the training samples does not fill one minibatch.
        """
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        n_local = self.n_train // world_size
        if n_local < self.batch_size:
            raise ValueError(
                f"{self.n_train} training pairs"
                + (f" over {world_size} devices ({n_local} each)" if world_size > 1 else "")
                + f" do not fill one minibatch of batch_size={self.batch_size} (the last partial minibatch is "
                "dropped); lower `batch_size`."
            )
        tensors = {k: v.to(device, non_blocking=True) for k, v in self.tensors.items()}
        rows = None if self.rows is None else self.rows.to(device)
        generator = torch.Generator(device=device).manual_seed(self.seed)
        self._batches = PermutationBatches(
            tensors, batch_size=self.batch_size, generator=generator, rank=rank, world_size=world_size, rows=rows
        )

    def train_dataloader(self) -> PermutationBatches | None:
        """Minibatches of this rank (an iterable of dicts of device tensors; available after :meth:`setup`).

        Returns
        -------
        A :class:`PermutationBatches` yielding, per epoch, ``len()`` dicts with the keys of ``tensors`` and
        ``batch_size`` rows each; ``None`` before :meth:`setup` or after :meth:`teardown`.
        """
        return self._batches

    @doc_params(doc_stage=doc_stage)
    def teardown(self, stage: str | None = None) -> None:
        """Free the device copies.

        Parameters
        ----------
        {doc_stage}

        Returns
        -------
        ``None``; the host tensors given to the constructor are kept, a new :meth:`setup` copies them again.
        """
        self._batches = None
