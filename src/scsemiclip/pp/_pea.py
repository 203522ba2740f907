"""PEA: batch corrections re-used as a random data augmentation of perturbation embeddings (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scsemiclip._affine import STEPS, TRANSFORM_STEPS, AffineMaps, fit_corrections, sample_control_weights, sample_steps
from scsemiclip._utils import RNGLike, batch_codes, control_mask, get_rep, torch_seed

from ._corrections import batch_control_weights


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


def steps_to_names(steps: np.ndarray) -> pd.Categorical:
    """``"+"``-joined names of the kept steps of every row of a ``(n, len(STEPS))`` boolean matrix."""
    codes = steps.astype(np.int64) @ (1 << np.arange(len(STEPS)))
    names = np.array(["+".join(s for i, s in enumerate(STEPS) if c >> i & 1) for c in range(1 << len(STEPS))])
    return pd.Categorical(names[codes])


def check_pea_params(*, transforms: tuple[str, ...], p_drop: float, min_control_fraction: float) -> tuple[str, ...]:
    """Validate PEA hyper-parameters; returns ``transforms`` as a tuple."""
    transforms = tuple(transforms)
    if not transforms:
        raise ValueError("`transforms` must name at least one of 'center', 'standardize', 'tvn'.")
    unknown = sorted(set(transforms) - set(TRANSFORM_STEPS))
    if unknown:
        raise ValueError(f"Unknown PEA transform(s) {unknown}; choose from {list(TRANSFORM_STEPS)}.")
    if not 0 <= p_drop < 1:
        raise ValueError(f"`p_drop` must be in [0, 1), got {p_drop}.")
    if not 0 < min_control_fraction <= 1:
        raise ValueError(f"`min_control_fraction` must be in (0, 1], got {min_control_fraction}.")
    return transforms


def sample_pea_bank(
    controls_by_batch: list[torch.Tensor],
    *,
    bank_size: int,
    transforms: tuple[str, ...] = ("center", "standardize", "tvn"),
    p_drop: float = 0.5,
    min_control_fraction: float = 0.25,
    coral_reg: float = 0.5,
    generator: torch.Generator | None = None,
) -> PEABank:
    """Sample a bank of random PEA corrections for every batch, on the controls' device.

    For each of the ``bank_size`` maps of a batch: a transform drawn uniformly from ``transforms``; each of its
    steps dropped independently with probability ``p_drop`` (at least one kept); fitted on a random subset of
    the batch's controls of size uniform in ``[max(2, ceil(min_control_fraction * n_b)), n_b]``. TVN maps are
    basis-preserving (``"zca"``, SPEC §2) and include CORAL on the same controls.

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
    generator
        Torch generator on the controls' device.

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
        maps.append(fit_corrections(ctrl, w, st, basis="zca", coral_reg=coral_reg))
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


def pea_augment(
    adata: ad.AnnData,
    *,
    use_rep: str,
    batch_key: str | None = "batch",
    control_key: str = "is_control",
    n_augmentations: int = 1,
    transforms: tuple[str, ...] = ("center", "standardize", "tvn"),
    p_drop: float = 0.5,
    min_control_fraction: float = 0.25,
    coral_reg: float = 0.5,
    bank_size: int | None = 64,
    rng: RNGLike = None,
) -> ad.AnnData:
    """Augment an embedding with random batch corrections (PEA), offline.

    Every non-control sample gets, in each of ``n_augmentations`` rounds, its own random correction of its batch
    (see :func:`sample_pea_bank`): a transform drawn from ``transforms``, random step dropout and a random subset
    of the batch's controls. Corrections are drawn from a bank of ``bank_size`` fitted maps per batch and round
    (``None``: one fitted map per sample, exact but slower). Training uses the same core online on the training
    device (:class:`scsemiclip.model.SemiClipped`).

    Parameters
    ----------
    adata
        Annotated data with an embedding in ``obsm[use_rep]``.
    use_rep
        Key of the embedding in ``adata.obsm``.
    batch_key
        Column of ``adata.obs`` with the batch whose controls fit the corrections; ``None`` for one batch.
    control_key
        Boolean column of ``adata.obs`` marking the negative controls (at least 2 per batch).
    n_augmentations
        Augmented copies of every non-control sample.
    transforms
        Corrections to draw from: ``"center"``, ``"standardize"``, ``"tvn"``.
    p_drop
        Independent dropout probability of each step of a correction (at least one step is kept).
    min_control_fraction
        Smallest fraction of a batch's controls a correction is fitted on.
    coral_reg
        Ridge of the CORAL step of TVN.
    bank_size
        Fitted corrections per batch and round; ``None`` fits one per sample.
    rng
        Seed or generator.

    Returns
    -------
    A new AnnData with ``n_augmentations * n_non_controls`` rows (round-major order), no ``X``:

    ``obsm[use_rep]``
        The augmented embedding (float32 if the input is float32, else float64).
    ``obs``
        The input's ``obs`` for each row, plus ``pea_round`` (int), ``pea_transform`` (the drawn correction)
        and ``pea_steps`` (the kept steps, ``"+"``-joined, e.g. ``"center+whiten"``) and ``pea_n_controls``
        (controls it was fitted on). ``obs_names`` get a ``-pea<round>`` suffix.
    """
    if n_augmentations < 1:
        raise ValueError(f"`n_augmentations` must be >= 1, got {n_augmentations}.")
    if bank_size is not None and bank_size < 1:
        raise ValueError(f"`bank_size` must be >= 1 or None, got {bank_size}.")
    transforms = check_pea_params(transforms=transforms, p_drop=p_drop, min_control_fraction=min_control_fraction)
    x = get_rep(adata, use_rep)
    is_ctrl = control_mask(adata, control_key)
    codes, labels = batch_codes(adata, batch_key)
    member = batch_control_weights(is_ctrl, codes, labels, batch_key=batch_key).astype(bool)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    ctrl = xt[torch.as_tensor(is_ctrl)]
    controls_by_batch = [ctrl[torch.as_tensor(m)] for m in member]
    keep = np.flatnonzero(~is_ctrl)
    if keep.size == 0:
        raise ValueError(f"adata has only controls (obs[{control_key!r}] is all True); nothing to augment.")
    kept_codes = torch.as_tensor(codes[keep])
    gen = torch.Generator().manual_seed(torch_seed(rng))
    per_batch = np.bincount(codes[keep], minlength=len(labels))

    outs, tids, steps, sizes = [], [], [], []
    for _ in range(n_augmentations):
        size = int(per_batch.max()) if bank_size is None else bank_size
        bank = sample_pea_bank(
            controls_by_batch,
            bank_size=size,
            transforms=transforms,
            p_drop=p_drop,
            min_control_fraction=min_control_fraction,
            coral_reg=coral_reg,
            generator=gen,
        )
        if bank_size is None:  # one distinct map per sample: its rank within its batch
            order = np.argsort(codes[keep], kind="stable")
            rank = np.empty(keep.size, dtype=np.int64)
            rank[order] = np.arange(keep.size) - np.repeat(np.cumsum(per_batch) - per_batch, per_batch)
            idx = kept_codes * size + torch.as_tensor(rank)
        else:
            idx = bank.draw(kept_codes, gen)
        outs.append(bank.maps.apply_rows(xt[torch.as_tensor(keep)], idx))
        tids.append(bank.transform_ids[idx])
        steps.append(bank.steps[idx])
        sizes.append(bank.n_controls[idx])

    obs = pd.concat([adata.obs.iloc[keep]] * n_augmentations)
    obs.index = [f"{name}-pea{r}" for r in range(n_augmentations) for name in adata.obs_names[keep]]
    obs["pea_round"] = np.repeat(np.arange(n_augmentations), keep.size)
    obs["pea_transform"] = pd.Categorical(np.asarray(transforms)[torch.cat(tids).numpy()], categories=transforms)
    obs["pea_steps"] = steps_to_names(torch.cat(steps).numpy())
    obs["pea_n_controls"] = torch.cat(sizes).numpy()
    out = ad.AnnData(obs=obs)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    out.obsm[use_rep] = torch.cat(outs).numpy().astype(dtype, copy=False)
    return out
