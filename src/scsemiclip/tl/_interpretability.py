"""Transcriptomic interpretability preservation (Bendidi et al. 2024, Tx-Evaluation; docs/evaluation.md).

A decoder is trained to reconstruct expression from the embedding on one part of the batches and perturbations
and scored on the other part: Spearman correlation per gene and structural integrity of the control-centred
profiles. :func:`score_predictions` is the scoring step alone, for predictions made elsewhere.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scipy.stats import rankdata

from scsemiclip._core import mlp, resolve_device
from scsemiclip._docs import doc_params
from scsemiclip._utils import (
    RNGLike,
    Timer,
    batch_codes,
    check_array,
    check_obs_keys,
    control_mask,
    get_rep,
    resolve_rng,
    storable,
    torch_seed,
    version_info,
)
from scsemiclip._validate import check_flag, check_key, check_real

if TYPE_CHECKING:
    from anndata import AnnData

#: Tx-Evaluation's warm-up starts at 3e-5 for a learning rate of 1e-4.
_WARMUP_START_FACTOR = 0.3
_GENE_CHUNK = 2048
#: Early stopping checks the validation loss every epoch, but not more often than every this many steps.
_CHECK_STEPS = 50
#: Validation rows predicted at once.
_VALIDATION_CHUNK = 4096


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
    """Interpretability-preservation scores of predicted expression, without training anything.

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


class Budget(NamedTuple):
    """The decoder's training budget and optimiser, resolved from a protocol (see :func:`resolve_budget`)."""

    max_epochs: int
    batch_size: int
    lr: float
    min_steps: int
    validation_fraction: float
    patience: int


#: The two protocols: the paper's exact configuration, and one that trains the decoder at any sample count.
PROTOCOLS = {
    "paper": Budget(max_epochs=30, batch_size=512, lr=1e-4, min_steps=0, validation_fraction=0.0, patience=0),
    "auto": Budget(max_epochs=30, batch_size=128, lr=1e-3, min_steps=1000, validation_fraction=0.1, patience=5),
}


def resolve_budget(protocol: str, given: tuple[float | None, ...]) -> Budget:
    """The protocol's :class:`Budget` with the ``given`` values (in field order) that are not ``None`` in its place."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {sorted(PROTOCOLS)}, got {protocol!r}.")
    budget = PROTOCOLS[protocol]._replace(**{k: v for k, v in zip(Budget._fields, given, strict=True) if v is not None})
    for name in ("max_epochs", "batch_size", "min_steps", "patience"):
        value = getattr(budget, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or value < (name in ("max_epochs", "batch_size"))
        ):
            raise ValueError(
                f"`{name}` must be a non-negative integer (positive for epochs and batch size), got {value!r}."
            )
    check_real(budget.lr, name="lr", low=0, low_open=True)
    check_real(budget.validation_fraction, name="validation_fraction", low=0, high=1, high_open=True)
    return budget


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
    min_steps: int = 0,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    patience: int = 0,
) -> tuple[torch.nn.Sequential, int]:
    """Train :func:`decoder` with MSE, AdamW, linear warm-up then cosine decay (per step), on ``x.device``.

    The budget is ``max_epochs`` epochs, extended to at least ``min_steps`` optimiser steps. With ``validation``
    ``(x_val, y_val)`` and ``patience > 0`` the validation MSE is checked every epoch (every ``_CHECK_STEPS``
    steps at least) and training stops after ``patience`` checks without improvement, keeping the best weights.
    Returns the model (in eval mode) and the number of optimiser steps taken.
    """
    from scsemiclip.train import torch_threads  # Lightning: imported only when a decoder is trained

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = decoder(x.shape[1], y.shape[1]).to(x.device)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    opt = _FlatAdamW(model, weight_decay=weight_decay)
    per_epoch = math.ceil(x.shape[0] / batch_size)
    epochs = max(max_epochs, math.ceil(min_steps / per_epoch))
    steps = epochs * per_epoch
    warmup = round(warmup_fraction * steps)
    check_every = math.ceil(_CHECK_STEPS / per_epoch)
    stopper = _EarlyStopping(model, validation, patience=patience) if validation is not None and patience else None
    taken = 0
    with torch_threads():
        for epoch in range(epochs):
            model.train()
            for idx in torch.randperm(x.shape[0], generator=gen, device=x.device).split(batch_size):
                loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
                loss.backward()
                opt.step(lr * _warmup_cosine(taken, warmup=warmup, total=steps))
                taken += 1
            if stopper is not None and (epoch + 1) % check_every == 0 and stopper.should_stop():
                break
        if stopper is not None:
            stopper.restore()
    return model.eval(), taken


class _FlatAdamW:
    """AdamW (:class:`torch.optim.AdamW`'s update, element for element) on a model's parameters as one flat buffer.

    The parameters become views of one tensor, so that a step is eight vectorised operations whatever the number of
    layers (``torch.optim`` loops over the parameters in Python, and its first use imports ``torch._dynamo``, seconds
    of a short evaluation). Same defaults (betas 0.9 and 0.999, eps 1e-8); the learning rate is given per step.
    """

    def __init__(self, model: torch.nn.Module, *, weight_decay: float) -> None:
        self.params = list(model.parameters())
        with torch.no_grad():
            self.flat = torch.cat([p.reshape(-1) for p in self.params])
            for p, view in zip(self.params, self.flat.split([p.numel() for p in self.params]), strict=True):
                p.data = view.view_as(p)
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.flat), torch.zeros_like(self.flat)
        self.weight_decay, self.betas, self.eps, self.steps = weight_decay, (0.9, 0.999), 1e-8, 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One update with learning rate ``lr`` from the gradients of the last backward pass (then cleared)."""
        torch.cat([p.grad.reshape(-1) for p in self.params], out=self.grad)
        for p in self.params:
            p.grad = None
        (beta1, beta2), self.steps = self.betas, self.steps + 1
        self.flat.mul_(1 - lr * self.weight_decay)
        self.exp_avg.lerp_(self.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        step_size = lr / (1 - beta1**self.steps)
        denom = (self.exp_avg_sq.sqrt() / (1 - beta2**self.steps) ** 0.5).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-step_size)


class _EarlyStopping:
    """Validation MSE of a model, the best weights so far, and the count of checks without improvement."""

    def __init__(self, model: torch.nn.Module, validation: tuple[torch.Tensor, torch.Tensor], *, patience: int) -> None:
        self.model, (self.x, self.y), self.patience = model, validation, patience
        self.best, self.best_state, self.waited = math.inf, None, 0

    def should_stop(self) -> bool:
        self.model.eval()
        with torch.no_grad():  # in chunks, so that a large validation part fits the device
            chunks = zip(self.x.split(_VALIDATION_CHUNK), self.y.split(_VALIDATION_CHUNK), strict=True)
            loss = sum(float(((self.model(x) - y) ** 2).sum()) for x, y in chunks) / self.y.numel()
        if loss < self.best:
            self.best, self.waited = loss, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.waited += 1
        return self.waited >= self.patience

    def restore(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def validation_rows(
    groups: np.ndarray, candidates: np.ndarray, *, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """A random ``fraction`` (at least one) of the groups of the ``candidates`` rows, as a row mask; none if < 2 groups."""
    levels = np.unique(groups[candidates])
    if fraction == 0 or levels.size < 2:
        return np.zeros(groups.shape, dtype=bool)
    chosen = rng.permutation(levels)[: max(round(fraction * levels.size), 1)]
    return candidates & np.isin(groups, chosen)


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


def _counts(adata: AnnData, layer: str | None, *, what: str = "adata") -> np.ndarray | sparse.spmatrix:
    """The expression counts: ``adata.X`` or ``adata.layers[layer]`` (``what`` names the AnnData in errors)."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"`layer={layer!r}` is not in {what}.layers (available: {list(adata.layers.keys())}).")
    counts = adata.X if layer is None else adata.layers[layer]
    if counts is None:
        raise ValueError(f"{what}.X is empty; give the expression counts in `X` or a `layer`.")
    return counts


def _check_options(*, layer: object, weight_decay: object, warmup_fraction: object, key_added: object) -> None:
    """The options both entry points share, checked before any work."""
    check_key(layer, name="layer", none_ok=True)
    check_real(weight_decay, name="weight_decay", low=0)
    check_real(warmup_fraction, name="warmup_fraction", low=0, high=1)
    check_key(key_added, name="key_added")


_BUDGET_DOC = """\
protocol
    ``"auto"`` (default): a budget that fits the decoder at any sample count: the paper's optimiser settings
    except ``batch_size`` 128 and ``lr`` 1e-3, at least ``min_steps`` = 1000 optimiser steps, and early stopping
    on a validation part of the training samples (``validation_fraction`` = 0.1 of the training perturbations,
    checked every epoch (at least every 50 steps), ``patience`` = 5 checks, best weights kept). ``"paper"``:
    Tx-Evaluation's exact configuration (30 epochs, batch 512, lr 1e-4, no minimum, no validation), which the
    paper's numbers need; on small data (about 60 steps for 1,000 samples) it leaves the decoder untrained.
rng
    Seed or :class:`numpy.random.Generator` (split, validation part, decoder initialisation, minibatch order).
max_epochs
    Training epochs (``None``: the protocol's, 30).
batch_size, lr
    Minibatch size and AdamW learning rate (``None``: the protocol's, 128 and 1e-3 / 512 and 1e-4 for ``"paper"``).
weight_decay
    AdamW weight decay (>= 0).
warmup_fraction
    Share of the training steps spent in the linear warm-up (in [0, 1]).
min_steps
    Smallest number of optimiser steps (the epochs are extended to reach it; ``None``: the protocol's).
validation_fraction
    Share of the training perturbations held out for early stopping (0: none; ``None``: the protocol's); with
    fewer than 2 training perturbations there is no validation part and the whole budget runs.
patience
    Validation checks without improvement before stopping (0: no early stopping; ``None``: the protocol's).
accelerator
    ``"auto"`` (CUDA when available), ``"cpu"`` or ``"gpu"``."""


def _decode_and_score(
    adata: AnnData,
    *,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    val: np.ndarray,
    batch: np.ndarray,
    is_control: np.ndarray,
    budget: Budget,
    params: dict,
    gen: np.random.Generator,
    accelerator: str,
    key_added: str,
) -> pd.Series:
    """Fit :func:`decoder` on the ``train`` rows outside ``val`` (early stopping on ``val``), score it on ``test``.

    ``train`` and ``test`` are ``(embedding, target)`` pairs, ``batch`` and ``is_control`` those of the test rows;
    writes ``adata.uns[key_added]`` and returns the scores.
    """
    device = resolve_device(accelerator)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32, device=device)

    (x, y), (x_test, y_test) = train, test
    model, steps = fit_decoder(
        tensor(x[~val]),
        tensor(y[~val]),
        seed=torch_seed(gen),
        max_epochs=budget.max_epochs,
        batch_size=budget.batch_size,
        lr=budget.lr,
        weight_decay=params["weight_decay"],
        warmup_fraction=params["warmup_fraction"],
        min_steps=budget.min_steps,
        validation=(tensor(x[val]), tensor(y[val])) if val.any() else None,
        patience=budget.patience,
    )
    with torch.no_grad():
        pred = torch.cat([model(chunk) for chunk in tensor(x_test).split(4 * budget.batch_size)]).cpu().numpy()
    scores = score_predictions(y_test, pred, batch=batch, is_control=is_control)
    adata.uns[key_added] = storable(
        {
            "scores": {k: float(v) for k, v in scores.items()},
            "params": {**params, **budget._asdict()},
            "n_train": int(val.size - val.sum()),
            "n_validation": int(val.sum()),
            "n_test": int(x_test.shape[0]),
            "n_steps": steps,
            "version": version_info(),
        }
    )
    return scores


@doc_params(doc_budget=_BUDGET_DOC)
def interpretability_preservation(
    adata: AnnData,
    *,
    use_rep: str,
    layer: str | None = None,
    batch_key: str = "batch",
    perturbation_key: str = "perturbation",
    control_key: str = "is_control",
    train_fraction: float = 0.7,
    protocol: Literal["auto", "paper"] = "auto",
    rng: RNGLike = 0,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float = 1e-6,
    warmup_fraction: float = 1 / 3,
    min_steps: int | None = None,
    validation_fraction: float | None = None,
    patience: int | None = None,
    accelerator: str = "auto",
    key_added: str = "interpretability_preservation",
) -> pd.Series:
    """How well the expression can be decoded from an embedding on unseen batches and perturbations.

    Batches and perturbations are shuffled with ``rng``; the decoder is trained on the first ``train_fraction``
    of the batches AND of the perturbations (plus the controls of those batches) and scored on all samples of the
    other batches and perturbations (plus their controls) with Tx-Evaluation's scores. Target: the expression
    (``X`` or ``layers[layer]``, counts, dense or sparse) total-count normalised to 1e4 and log1p-transformed,
    all genes. Decoder: an MLP (3 hidden layers, ReLU), MSE, AdamW, a linear warm-up from ``0.3 lr`` over the
    first ``warmup_fraction`` of the steps then cosine decay to 0 (Tx-Evaluation: 10 of 30 epochs), in float32 on the
    chosen device with the data held there as tensors. ``protocol`` sets the budget; for maps without batches
    or controls (gene-level profiles) use :func:`interpretability_preservation_split` with a split of your own.

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
    train_fraction
        Share of the batches and of the perturbations used for training (strictly between 0 and 1).
    {doc_budget}
    key_added
        Key of the result in ``adata.uns``.

    Returns
    -------
    ``structural_integrity``, ``spearman`` and ``score`` (0-100, the mean of the two times 100).

    Also writes ``adata.uns[key_added]`` = ``{"scores": {structural_integrity, spearman, score}, "params": {...,
    "protocol", the resolved budget}, "n_train": ..., "n_validation": ..., "n_test": ..., "n_steps": ...,
    "version": ...}`` (``n_train`` counts the samples the decoder is fitted on, ``n_steps`` its optimiser steps).
    """
    _check_options(layer=layer, weight_decay=weight_decay, warmup_fraction=warmup_fraction, key_added=key_added)
    check_real(train_fraction, name="train_fraction", low=0, high=1, low_open=True, high_open=True)
    timer = Timer(f"interpretability preservation of {use_rep!r}")
    budget = resolve_budget(protocol, (max_epochs, batch_size, lr, min_steps, validation_fraction, patience))
    emb = get_rep(adata, use_rep)
    is_ctrl, batch, batch_labels, pert = _design(
        adata, batch_key=batch_key, perturbation_key=perturbation_key, control_key=control_key
    )
    counts = _counts(adata, layer)
    gen = resolve_rng(rng)
    train, test = split_samples(batch, pert, is_ctrl, rng=gen, train_fraction=train_fraction)
    rows = np.flatnonzero(train)
    val = validation_rows(pert[rows], ~is_ctrl[rows], fraction=budget.validation_fraction, rng=gen)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    params = {
        "use_rep": use_rep,
        "layer": layer,
        "batch_key": batch_key,
        "perturbation_key": perturbation_key,
        "control_key": control_key,
        "train_fraction": train_fraction,
        "protocol": protocol,
        "weight_decay": weight_decay,
        "warmup_fraction": warmup_fraction,
    }
    scores = _decode_and_score(
        adata,
        train=(emb[rows], normalized_expression(counts[rows], name=where)),
        test=(emb[test], normalized_expression(counts[np.flatnonzero(test)], name=where)),
        val=val,
        batch=batch_labels[batch[test]],
        is_control=is_ctrl[test],
        budget=budget,
        params=params,
        gen=gen,
        accelerator=accelerator,
        key_added=key_added,
    )
    timer.done(f"score {scores['score']:.2f}, added uns[{key_added!r}]")
    return scores


def _target(adata: AnnData, layer: str | None, genes: pd.Index, *, normalize: bool, what: str) -> np.ndarray:
    """The decoded target of ``adata`` over ``genes``: normalised log1p counts, or the values as given."""
    if not adata.var_names.is_unique:
        repeated = adata.var_names[adata.var_names.duplicated()]
        raise ValueError(
            f"{what}.var_names repeat {repeated.size} gene name(s) (first: {repeated[0]!r}), so the decoded genes are "
            f"ambiguous; make them unique (e.g. `{what}.var_names_make_unique()`)."
        )
    missing = genes.difference(adata.var_names)
    if missing.size:
        raise ValueError(
            f"{what}.var_names lack {missing.size} of the {genes.size} genes decoded (first: {missing[0]!r}); "
            "give the test set the training set's genes (e.g. reindex it)."
        )
    counts = _counts(adata, layer, what=what)[:, adata.var_names.get_indexer(genes)]
    where = f"{what}.X" if layer is None else f"{what}.layers[{layer!r}]"
    if normalize:
        return normalized_expression(counts, name=where)
    values = check_array(counts.toarray() if sparse.issparse(counts) else counts, name=where)
    return values.astype(np.float32)


@doc_params(doc_budget=_BUDGET_DOC)
def interpretability_preservation_split(
    adata: AnnData,
    *,
    test: AnnData,
    use_rep: str,
    test_rep: str | None = None,
    layer: str | None = None,
    normalize: bool = True,
    perturbation_key: str | None = None,
    batch_key: str | None = None,
    control_key: str = "is_control",
    protocol: Literal["auto", "paper"] = "auto",
    rng: RNGLike = 0,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float = 1e-6,
    warmup_fraction: float = 1 / 3,
    min_steps: int | None = None,
    validation_fraction: float | None = None,
    patience: int | None = None,
    accelerator: str = "auto",
    key_added: str = "interpretability_preservation_split",
) -> pd.Series:
    """Interpretability preservation on a split of your own: train the decoder on ``adata``, score it on ``test``.

    For maps :func:`interpretability_preservation` cannot split itself, such as gene-level profiles without
    batches or controls, or a test set from another screen. The decoder (the same model and training as
    :func:`interpretability_preservation`) learns ``obsm[use_rep]`` -> expression on every row of ``adata``
    (except the validation part of ``protocol="auto"``) and predicts ``test``'s expression from
    ``test.obsm[test_rep]``, and the prediction is scored as there. Structural integrity centres each batch of
    ``test`` on its controls, so ``test`` needs at least one control per batch: for signatures (differences to
    the controls) add a pseudo-control row whose target is zero and whose embedding is the encoder's image of
    the zero signature.

    Parameters
    ----------
    adata
        Training samples: expression and an embedding in ``obsm[use_rep]``.
    test
        Scored samples: the same genes (at least ``adata``'s ``var_names``), the embedding in
        ``obsm[test_rep]``, and ``obs[control_key]``.
    use_rep
        Key of the training embedding in ``adata.obsm``.
    test_rep
        Key of the test embedding in ``test.obsm`` (``None``: ``use_rep``; it must come from the same encoder).
    layer
        Layer of both AnnData with the expression; ``None`` uses ``X``.
    normalize
        Decode counts total-count normalised to 1e4 and log1p-transformed (``True``), or the values as given
        (``False``, e.g. signatures or already normalised data).
    perturbation_key
        Column of ``adata.obs`` grouping the training rows for the validation part (``None``: each row is its own
        perturbation, as in a gene-level map).
    batch_key
        Column of ``test.obs`` with the batch (``None``: one batch).
    control_key
        Boolean column of ``test.obs`` marking the controls (at least one per batch).
    {doc_budget}
    key_added
        Key of the result in ``adata.uns``.

    Returns
    -------
    ``structural_integrity``, ``spearman`` and ``score`` (0-100, the mean of the two times 100).

    Also writes ``adata.uns[key_added]`` = ``{"scores": {...}, "params": {..., "protocol", the resolved budget},
    "n_train": ..., "n_validation": ..., "n_test": ..., "n_steps": ..., "version": ...}``; ``test`` is not
    modified.
    """
    _check_options(layer=layer, weight_decay=weight_decay, warmup_fraction=warmup_fraction, key_added=key_added)
    check_flag(normalize, name="normalize")
    timer = Timer(f"interpretability preservation of {use_rep!r} on a given split")
    budget = resolve_budget(protocol, (max_epochs, batch_size, lr, min_steps, validation_fraction, patience))
    test_rep = use_rep if test_rep is None else test_rep
    x_train, x_test = get_rep(adata, use_rep), get_rep(test, test_rep, what="test")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"adata.obsm[{use_rep!r}] has {x_train.shape[1]} dims and test.obsm[{test_rep!r}] {x_test.shape[1]}; "
            "both must come from the same encoder."
        )
    is_ctrl = control_mask(test, control_key, what="test")
    batch, batch_labels = batch_codes(test, batch_key, what="test")
    no_ctrl = np.setdiff1d(np.arange(len(batch_labels)), batch[is_ctrl])
    if no_ctrl.size:
        raise ValueError(
            f"Batch {batch_labels[no_ctrl[0]]!r} of test has no control (test.obs[{control_key!r}]); structural "
            "integrity centres each batch on its controls: add one (for signatures, a zero pseudo-control)."
        )
    if perturbation_key is None:
        groups = np.arange(adata.n_obs)
    else:
        check_obs_keys(adata, [perturbation_key])
        groups = pd.factorize(adata.obs[perturbation_key])[0]
    genes = pd.Index(adata.var_names)
    y_train = _target(adata, layer, genes, normalize=normalize, what="adata")
    y_test = _target(test, layer, genes, normalize=normalize, what="test")
    gen = resolve_rng(rng)
    val = validation_rows(groups, groups >= 0, fraction=budget.validation_fraction, rng=gen)
    params = {
        "use_rep": use_rep,
        "test_rep": test_rep,
        "layer": layer,
        "normalize": normalize,
        "perturbation_key": perturbation_key,
        "batch_key": batch_key,
        "control_key": control_key,
        "protocol": protocol,
        "weight_decay": weight_decay,
        "warmup_fraction": warmup_fraction,
    }
    scores = _decode_and_score(
        adata,
        train=(x_train, y_train),
        test=(x_test, y_test),
        val=val,
        batch=batch_labels[batch],
        is_control=is_ctrl,
        budget=budget,
        params=params,
        gen=gen,
        accelerator=accelerator,
        key_added=key_added,
    )
    timer.done(f"score {scores['score']:.2f}, added uns[{key_added!r}]")
    return scores
