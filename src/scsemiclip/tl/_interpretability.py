"""Transcriptomic interpretability preservation (Bendidi et al. 2024, Tx-Evaluation; SPEC §6).

A decoder is trained to reconstruct expression from the embedding on one part of the batches and perturbations
and scored on the other part: Spearman correlation per gene and structural integrity of the control-centred
profiles. :func:`score_predictions` is the scoring step alone, for predictions made elsewhere.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scipy.stats import rankdata

from scsemiclip._core import mlp, resolve_device
from scsemiclip._utils import (
    RNGLike,
    Timer,
    batch_codes,
    check_obs_keys,
    control_mask,
    get_rep,
    resolve_rng,
    storable,
    torch_seed,
    version_info,
)

if TYPE_CHECKING:
    from anndata import AnnData

#: Tx-Evaluation's warm-up starts at 3e-5 for a learning rate of 1e-4.
_WARMUP_START_FACTOR = 0.3
_GENE_CHUNK = 2048


def _train_levels(codes: np.ndarray, *, what: str, rng: np.random.Generator, fraction: float) -> np.ndarray:
    levels = np.unique(codes)
    if levels.size < 2:
        raise ValueError(f"Interpretability preservation needs at least 2 {what}, got {levels.size}.")
    n_train = min(max(round(fraction * levels.size), 1), levels.size - 1)
    return rng.permutation(levels)[:n_train]


def split_samples(
    batch: np.ndarray, perturbation: np.ndarray, is_control: np.ndarray, *, rng: RNGLike, train_fraction: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test masks: disjoint batches AND disjoint perturbations, each split with its batches' controls.

    Batches and perturbations are shuffled with ``rng``; the first ``round(train_fraction * n)`` of each (at least
    one, at most ``n - 1``) go to train, the rest to test. Samples whose batch and perturbation fall in different
    splits are used by neither.

    Parameters
    ----------
    batch
        Integer batch code of every sample.
    perturbation
        Integer perturbation code of every sample (ignored for controls).
    is_control
        Boolean control mask.
    rng
        Seed or :class:`numpy.random.Generator`.
    train_fraction
        Share of the batches and of the perturbations used for training.

    Returns
    -------
    Boolean masks ``(train, test)``.
    """
    gen = resolve_rng(rng)
    in_train_batch = np.isin(batch, _train_levels(batch, what="batches", rng=gen, fraction=train_fraction))
    train_perts = _train_levels(perturbation[~is_control], what="perturbations", rng=gen, fraction=train_fraction)
    in_train_pert = np.isin(perturbation, train_perts)
    train = in_train_batch & (is_control | in_train_pert)
    test = ~in_train_batch & (is_control | ~in_train_pert)
    for name, mask in (("train", train), ("test", test)):
        if not (mask & ~is_control).any():
            raise ValueError(f"The {name} split has no perturbed sample; more batches or perturbations are needed.")
    return train, test


def normalized_expression(x: np.ndarray | sparse.spmatrix, *, name: str) -> np.ndarray:
    """Counts total-count normalised to 1e4 per sample and log1p-transformed, as a dense float32 array."""
    if sparse.issparse(x):
        x = sparse.csr_matrix(x, dtype=np.float64)
        values = x.data
    else:
        x = np.asarray(x, dtype=np.float64)
        values = x
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{name} must hold non-negative finite counts.")
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    if sparse.issparse(x):
        return sparse.diags(scale).dot(x).log1p().toarray().astype(np.float32)
    return np.log1p(x * scale[:, None]).astype(np.float32)


def _spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over genes of the Spearman correlation across samples (average ranks; a constant gene scores 0)."""
    rhos = []
    for start in range(0, y_true.shape[1], _GENE_CHUNK):
        cols = slice(start, start + _GENE_CHUNK)
        rt = rankdata(y_true[:, cols], axis=0)
        rp = rankdata(y_pred[:, cols], axis=0)
        rt -= rt.mean(axis=0)
        rp -= rp.mean(axis=0)
        den = np.sqrt((rt**2).sum(axis=0) * (rp**2).sum(axis=0))
        num = (rt * rp).sum(axis=0)
        rhos.append(np.divide(num, den, out=np.zeros_like(num), where=den > 0))
    return float(np.concatenate(rhos).mean())


def _structural_integrity(y_true: np.ndarray, y_pred: np.ndarray, batch: np.ndarray, is_control: np.ndarray) -> float:
    """``1 - sum_b D_b / (2 sum_b M_b)`` on profiles centred on each batch's (predicted / true) control mean."""
    dist, size = 0.0, 0.0
    for b in np.unique(batch).tolist():
        rows = batch == b
        ctrl = rows & is_control
        if not ctrl.any():
            raise ValueError(f"Batch {b!r} has no control sample; structural integrity centres on the controls.")
        t = y_true[rows] - y_true[ctrl].mean(axis=0)
        p = y_pred[rows] - y_pred[ctrl].mean(axis=0)
        dist += np.linalg.norm(p - t) / rows.sum()
        size += np.linalg.norm(t) / rows.sum()
    if size == 0:
        raise ValueError("The targets equal their control means in every batch; structural integrity is undefined.")
    return float(1 - dist / (2 * size))


def score_predictions(
    y_true: np.ndarray, y_pred: np.ndarray, *, batch: np.ndarray, is_control: np.ndarray
) -> pd.Series:
    """Interpretability-preservation scores of predicted expression (SPEC §6), without training anything.

    Parameters
    ----------
    y_true
        ``(n, G)`` true (normalised, log1p) expression of the scored samples.
    y_pred
        ``(n, G)`` predicted expression.
    batch
        ``(n,)`` batch label of every sample.
    is_control
        ``(n,)`` booleans marking the controls (every batch needs at least one).

    Returns
    -------
    ``structural_integrity`` (1 for a perfect prediction, 0.5 for one constant within each batch),
    ``spearman`` (mean over genes of the Spearman correlation across samples; a constant gene scores 0) and
    ``score = 100 * (structural_integrity + spearman) / 2``.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    batch, is_control = np.asarray(batch), np.asarray(is_control, dtype=bool)
    n = y_true.shape[0]
    if y_true.shape != y_pred.shape or y_true.ndim != 2 or batch.shape != (n,) or is_control.shape != (n,):
        raise ValueError(
            f"`y_true` {y_true.shape} and `y_pred` {y_pred.shape} must be equal (n, G) arrays, "
            f"`batch` {batch.shape} and `is_control` {is_control.shape} of length n."
        )
    si = _structural_integrity(y_true, y_pred, batch, is_control)
    rho = _spearman(y_true, y_pred)
    return pd.Series({"structural_integrity": si, "spearman": rho, "score": 100 * (si + rho) / 2})


def decoder(n_in: int, n_out: int) -> torch.nn.Sequential:
    """MLP ``d -> h1 -> h2 -> h3 -> G`` with ``h_i = d + (G - d) i / 4`` and ReLU (Tx-Evaluation's decoder)."""
    return mlp(n_in, [int(n_in + (n_out - n_in) * i / 4) for i in (1, 2, 3)], n_out)


def _warmup_cosine(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return _WARMUP_START_FACTOR + (1 - _WARMUP_START_FACTOR) * step / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def fit_decoder(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int,
    max_epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_fraction: float,
) -> torch.nn.Sequential:
    """Train :func:`decoder` with MSE, AdamW, linear warm-up then cosine decay (per step), on ``x.device``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = decoder(x.shape[1], y.shape[1]).to(x.device)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max_epochs * math.ceil(x.shape[0] / batch_size)
    warmup = round(warmup_fraction * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _warmup_cosine(s, warmup=warmup, total=steps))
    model.train()
    for _ in range(max_epochs):
        for idx in torch.randperm(x.shape[0], generator=gen, device=x.device).split(batch_size):
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _design(
    adata: AnnData, *, batch_key: str, perturbation_key: str, control_key: str
) -> tuple[np.ndarray, np.ndarray, pd.Index, np.ndarray]:
    """Controls, batch codes and labels, and perturbation codes; every batch needs a control."""
    check_obs_keys(adata, [batch_key, perturbation_key])
    is_ctrl = control_mask(adata, control_key)
    batch, batch_labels = batch_codes(adata, batch_key)
    no_ctrl = np.setdiff1d(np.arange(len(batch_labels)), batch[is_ctrl])
    if no_ctrl.size:
        raise ValueError(
            f"Batch {batch_labels[no_ctrl[0]]!r} of adata.obs[{batch_key!r}] has no control sample "
            f"({no_ctrl.size} batch(es) affected); structural integrity centres each batch on its controls."
        )
    pert, _ = pd.factorize(adata.obs[perturbation_key])
    if (pert[~is_ctrl] < 0).any():
        raise ValueError(f"adata.obs[{perturbation_key!r}] has missing values among the non-control samples.")
    return is_ctrl, batch, batch_labels, pert


def _counts(adata: AnnData, layer: str | None) -> np.ndarray | sparse.spmatrix:
    """The expression counts: ``adata.X`` or ``adata.layers[layer]``."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"`layer={layer!r}` is not in adata.layers (available: {list(adata.layers.keys())}).")
    counts = adata.X if layer is None else adata.layers[layer]
    if counts is None:
        raise ValueError("adata.X is empty; give the expression counts in `X` or a `layer`.")
    return counts


def interpretability_preservation(
    adata: AnnData,
    *,
    use_rep: str,
    layer: str | None = None,
    batch_key: str = "batch",
    perturbation_key: str = "perturbation",
    control_key: str = "is_control",
    rng: RNGLike = 0,
    max_epochs: int = 30,
    batch_size: int = 512,
    lr: float = 1e-4,
    weight_decay: float = 1e-6,
    warmup_fraction: float = 1 / 3,
    train_fraction: float = 0.7,
    accelerator: str = "auto",
    key_added: str = "interpretability_preservation",
) -> pd.Series:
    """How well the expression can be decoded from an embedding on unseen batches and perturbations (SPEC §6).

    Batches and perturbations are shuffled with ``rng``; the decoder is trained on the first ``train_fraction``
    of the batches AND of the perturbations (plus the controls of those batches) and scored on all samples of the
    other batches and perturbations (plus their controls) by :func:`score_predictions`. Target: the expression
    (``X`` or ``layers[layer]``, counts, dense or sparse) total-count normalised to 1e4 and log1p-transformed,
    all genes. Decoder: :func:`decoder`, MSE, AdamW, ``batch_size`` samples per step, a linear warm-up from
    ``0.3 lr`` over the first ``warmup_fraction`` of the steps then cosine decay to 0 (Tx-Evaluation's
    configuration: 10 of 30 epochs), in float32 on the chosen device with the data held there as tensors.

    Parameters
    ----------
    adata
        Annotated data: one row per sample with expression counts and an embedding in ``obsm[use_rep]``.
    use_rep
        Key of the embedding in ``adata.obsm``.
    layer
        Layer with the counts; ``None`` uses ``adata.X``.
    batch_key
        Column of ``adata.obs`` with the experimental batch (every batch needs controls).
    perturbation_key
        Column of ``adata.obs`` with the perturbation label.
    control_key
        Boolean column of ``adata.obs`` marking the controls.
    rng
        Seed or :class:`numpy.random.Generator` (split, decoder initialisation and minibatch order).
    max_epochs
        Training epochs.
    batch_size, lr, weight_decay
        Minibatch size, AdamW learning rate and weight decay.
    warmup_fraction
        Share of the training steps spent in the linear warm-up.
    train_fraction
        Share of the batches and of the perturbations used for training.
    accelerator
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"gpu"``.
    key_added
        Key of the result in ``adata.uns``.

    Returns
    -------
    ``structural_integrity``, ``spearman`` and ``score`` (0-100) as in :func:`score_predictions`.

    Also writes ``adata.uns[key_added]`` = ``{"scores": {structural_integrity, spearman, score}, "params": {...},
    "n_train": ..., "n_test": ..., "version": ...}``.
    """
    timer = Timer(f"interpretability preservation of {use_rep!r}")
    emb = get_rep(adata, use_rep)
    is_ctrl, batch, batch_labels, pert = _design(
        adata, batch_key=batch_key, perturbation_key=perturbation_key, control_key=control_key
    )
    counts = _counts(adata, layer)
    gen = resolve_rng(rng)
    train, test = split_samples(batch, pert, is_ctrl, rng=gen, train_fraction=train_fraction)
    device = resolve_device(accelerator)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"

    def tensors(mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        y = normalized_expression(counts[np.flatnonzero(mask)], name=where)
        return torch.as_tensor(emb[mask], dtype=torch.float32, device=device), torch.as_tensor(y, device=device)

    x_train, y_train = tensors(train)
    model = fit_decoder(
        x_train,
        y_train,
        seed=torch_seed(gen),
        max_epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup_fraction=warmup_fraction,
    )
    del x_train, y_train
    x_test, y_test = tensors(test)
    with torch.no_grad():
        pred = torch.cat([model(chunk) for chunk in x_test.split(4 * batch_size)])
    scores = score_predictions(
        y_test.cpu().numpy(), pred.cpu().numpy(), batch=batch_labels[batch[test]], is_control=is_ctrl[test]
    )
    params = {
        "use_rep": use_rep,
        "layer": layer,
        "batch_key": batch_key,
        "perturbation_key": perturbation_key,
        "control_key": control_key,
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "warmup_fraction": warmup_fraction,
        "train_fraction": train_fraction,
    }
    adata.uns[key_added] = storable(
        {
            "scores": {k: float(v) for k, v in scores.items()},
            "params": params,
            "n_train": int(train.sum()),
            "n_test": int(test.sum()),
            "version": version_info(),
        }
    )
    timer.done(f"score {scores['score']:.2f}, added uns[{key_added!r}]")
    return scores
