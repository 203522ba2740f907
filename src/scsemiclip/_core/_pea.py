"""The PEA bank (docs/method.md): random batch corrections fitted on random control subsets, in torch on any device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from scsemiclip._validate import check_choices, check_real

from ._affine import (
    EIGENVALUE_FLOOR,
    TRANSFORM_STEPS,
    AffineMaps,
    fit_corrections,
    sample_control_weights,
    sample_steps,
)


@dataclass
class PEABank:
    """A bank of ``bank_size`` random corrections for each of ``n_batches`` batches.

    Map ``b * bank_size + j`` is the ``j``-th transform of batch ``b``.

    Attributes
    ----------
    maps
        The ``n_batches * bank_size`` affine maps.
    transform_ids
        Index into ``transforms`` of every map.
    steps
        ``(n_maps, len(STEPS))`` booleans: the steps each map kept after step dropout.
    n_controls
        Number of controls each map was fitted on.
    bank_size
        Maps per batch.
    """

    maps: AffineMaps
    transform_ids: torch.Tensor
    steps: torch.Tensor
    n_controls: torch.Tensor
    bank_size: int

    def draw(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw, for every row of batch code ``batch[i]``, one map of its batch uniformly: ``(n,)`` map indices."""
        j = torch.randint(self.bank_size, batch.shape, generator=generator, device=batch.device)
        return batch * self.bank_size + j

    def augment(self, x: torch.Tensor, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply a randomly drawn map of its batch to every row of ``x`` (one gather, one batched matmul)."""
        return self.maps.apply_rows(x, self.draw(batch, generator))


def check_pea_params(*, transforms: Sequence[str], p_drop: float, min_control_fraction: float) -> tuple[str, ...]:
    """Validate PEA hyper-parameters; returns ``transforms`` as a tuple."""
    check_real(p_drop, name="p_drop", low=0, high=1, high_open=True)
    check_real(min_control_fraction, name="min_control_fraction", low=0, high=1, low_open=True)
    return check_choices(transforms, name="transforms", choices=TRANSFORM_STEPS)


def sample_pea_bank(
    controls_by_batch: list[torch.Tensor],
    *,
    bank_size: int,
    transforms: tuple[str, ...] = ("center", "standardize", "tvn"),
    p_drop: float = 0.5,
    min_control_fraction: float = 0.25,
    coral_reg: float = 0.5,
    eigenvalue_floor: float = EIGENVALUE_FLOOR,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> PEABank:
    """Sample a bank of random PEA corrections for every batch, on the controls' device.

    For each of the ``bank_size`` maps of a batch: a transform drawn uniformly from ``transforms``; each of its
    steps dropped independently with probability ``p_drop`` (at least one kept); fitted on a random subset of
    the batch's controls of size uniform in ``[max(2, ceil(min_control_fraction * n_b)), n_b]``. TVN maps are
    basis-preserving (``"zca"``, docs/method.md) and include CORAL on the same controls.

    Parameters
    ----------
    controls_by_batch
        The control embeddings of every batch, each ``(n_b, d)`` with ``n_b >= 2``.
    bank_size
        Maps per batch.
    transforms
        Names from ``("center", "standardize", "tvn")``.
    p_drop
        Step dropout probability (0 disables step dropout: the ablation without augmentation stochasticity).
    min_control_fraction
        Smallest fraction of a batch's controls a map is fitted on (1 disables control sampling).
    coral_reg
        CORAL ridge.
    eigenvalue_floor
        Robust whitening of the TVN maps (see :func:`~scsemiclip._core.fit_whitening`): no control direction is
        scaled up by more than ``1 / sqrt(eigenvalue_floor)`` times the largest; 0 whitens fully.
    generator
        Torch generator on the controls' device.
    dtype
        Precision in which the maps are kept (cast batch by batch, so that the bank of every batch is never held in
        the fitting precision at once); ``None``: the controls'.

    Returns
    -------
    The :class:`PEABank`.
    """
    transforms = check_pea_params(transforms=transforms, p_drop=p_drop, min_control_fraction=min_control_fraction)
    device = controls_by_batch[0].device
    maps, tids, steps, sizes = [], [], [], []
    for ctrl in controls_by_batch:
        tid = torch.randint(len(transforms), (bank_size,), generator=generator, device=device)
        st = sample_steps(tid, transforms, p_drop=p_drop, generator=generator)
        w = sample_control_weights(
            ctrl.shape[0], bank_size, min_fraction=min_control_fraction, generator=generator, device=device
        )
        fitted = fit_corrections(ctrl, w, st, basis="zca", coral_reg=coral_reg, eigenvalue_floor=eigenvalue_floor)
        maps.append(fitted if dtype is None else fitted.to(dtype=dtype))
        tids.append(tid)
        steps.append(st)
        sizes.append(w.sum(1).long())
    return PEABank(
        maps=AffineMaps(torch.cat([m.weight for m in maps]), torch.cat([m.bias for m in maps])),
        transform_ids=torch.cat(tids),
        steps=torch.cat(steps),
        n_controls=torch.cat(sizes),
        bank_size=bank_size,
    )
