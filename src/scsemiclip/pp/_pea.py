"""PEA: batch corrections re-used as a random data augmentation of perturbation embeddings (docs/method.md, "PEA")."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scsemiclip._core import EIGENVALUE_FLOOR, STEPS, check_pea_params, group_controls, sample_pea_bank
from scsemiclip._docs import doc_adata_rep, doc_control_key, doc_params, doc_pea
from scsemiclip._utils import RNGLike, batch_codes, control_mask, get_rep, resolve_rng, torch_seed
from scsemiclip._validate import check_int, check_key, check_real


def steps_to_names(steps: np.ndarray) -> pd.Categorical:
    """``"+"``-joined names of the kept steps of every row of a ``(n, len(STEPS))`` boolean matrix."""
    codes = steps.astype(np.int64) @ (1 << np.arange(len(STEPS)))
    names = np.array(["+".join(s for i, s in enumerate(STEPS) if c >> i & 1) for c in range(1 << len(STEPS))])
    return pd.Categorical(names[codes])


@doc_params(doc_adata_rep=doc_adata_rep, doc_control_key=doc_control_key, doc_pea=doc_pea)
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
    eigenvalue_floor: float = EIGENVALUE_FLOOR,
    bank_size: int | None = 64,
    rng: RNGLike = None,
) -> ad.AnnData:
    """Augment an embedding with random batch corrections (PEA), offline.

    Every non-control sample gets, in each of ``n_augmentations`` rounds, its own random correction of its batch:
    a transform drawn from ``transforms``, random step dropout and a random subset
    of the batch's controls. Corrections are drawn from a bank of ``bank_size`` fitted maps per batch and round
    (``None``: one fitted map per sample, exact but slower). Training uses the same core online on the training
    device (:class:`scsemiclip.model.SemiClipped`).

    Parameters
    ----------
    {doc_adata_rep}
    batch_key
        Column of ``adata.obs`` with the batch whose controls fit the corrections; ``None`` for one batch.
    {doc_control_key}
    n_augmentations
        Augmented copies of every non-control sample.
    {doc_pea}
    eigenvalue_floor
        Robust whitening of the TVN maps, as the model's (docs/method.md): no control direction is scaled up by more
        than ``1 / sqrt(eigenvalue_floor)`` times the largest; 0 whitens fully.
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
    check_key(use_rep, name="use_rep")
    check_key(batch_key, name="batch_key", none_ok=True)
    check_key(control_key, name="control_key")
    check_int(n_augmentations, name="n_augmentations", minimum=1)
    check_int(bank_size, name="bank_size", minimum=1, none_ok=True)
    check_real(coral_reg, name="coral_reg", low=0)
    resolve_rng(rng)
    transforms = check_pea_params(transforms=transforms, p_drop=p_drop, min_control_fraction=min_control_fraction)
    x = get_rep(adata, use_rep)
    is_ctrl = control_mask(adata, control_key)
    codes, labels = batch_codes(adata, batch_key)
    x64 = np.asarray(x, dtype=np.float64)
    xt = torch.as_tensor(x64)
    controls_by_batch = [torch.as_tensor(c) for c in group_controls(x64, is_ctrl, codes, labels, batch_key=batch_key)]
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
            eigenvalue_floor=eigenvalue_floor,
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
