"""Batch corrections fitted on controls: centering, standardization and TVN (SPEC §2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from scsemiclip._affine import STEPS, AffineMaps, fit_coral, fit_whitening, step_mask
from scsemiclip._utils import Timer, batch_codes, control_mask, default_key, get_rep, version_info

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

_DTYPE = torch.float64


def batch_control_weights(
    is_control: np.ndarray, codes: np.ndarray, labels: pd.Index, *, batch_key: str | None, min_controls: int = 2
) -> np.ndarray:
    """``(n_batches, n_controls)`` 0/1 membership of each control in each batch; checks every batch has controls.

    Raises
    ------
    ValueError
        Naming the first batch with fewer than ``min_controls`` controls.
    """
    ctrl_codes = codes[is_control]
    counts = np.bincount(ctrl_codes, minlength=len(labels))
    bad = np.flatnonzero(counts < min_controls)
    if bad.size:
        where = "the data" if batch_key is None else f"batch {labels[bad[0]]!r} of obs[{batch_key!r}]"
        raise ValueError(
            f"{where} has {counts[bad[0]]} control(s); at least {min_controls} are needed to fit a correction"
            + (f" ({bad.size} batch(es) affected)." if bad.size > 1 else ".")
        )
    return (ctrl_codes[None, :] == np.arange(len(labels))[:, None]).astype(np.float64)


def correction_maps(
    x: np.ndarray | torch.Tensor,
    is_control: np.ndarray,
    codes: np.ndarray,
    labels: pd.Index,
    *,
    method: str,
    batch_key: str | None,
    coral: bool = True,
    coral_reg: float = 0.5,
    basis: str = "pca",
) -> AffineMaps:
    """Fit one affine correction per batch on an embedding matrix (array-level form of :func:`center`, ...).

    Parameters
    ----------
    x
        ``(n, d)`` embeddings (numpy or torch; computed in float64 on the tensor's device).
    is_control
        ``(n,)`` booleans marking the controls.
    codes, labels
        Batch code of every row and the batch labels (from :func:`scsemiclip._utils.batch_codes`).
    method
        ``"center"``, ``"standardize"`` (fitted on each batch's controls) or ``"tvn"`` (standardize, PCA
        rotation and whitening on the pooled controls, then CORAL on each batch's controls when
        ``batch_key`` is given and ``coral`` is true), as ``efaar_benchmarking.efaar.tvn_on_controls``.
    batch_key
        Name of the batch column (for messages); ``None`` means a single batch.
    coral, coral_reg, basis
        See :func:`tvn`.

    Returns
    -------
    One map per batch, index = batch code.
    """
    xt = torch.as_tensor(x).to(_DTYPE)
    ctrl = xt[torch.as_tensor(is_control, device=xt.device)]
    member = torch.as_tensor(
        batch_control_weights(is_control, codes, labels, batch_key=batch_key), dtype=_DTYPE, device=xt.device
    )
    if method in ("center", "standardize"):
        steps = step_mask((method,) * len(labels), device=xt.device)
        return fit_whitening(ctrl, member, steps, basis=basis)
    if method != "tvn":
        raise ValueError(f"Unknown correction {method!r}; choose 'center', 'standardize' or 'tvn'.")
    steps = step_mask(("tvn",), device=xt.device)
    pooled = fit_whitening(ctrl, torch.ones((1, ctrl.shape[0]), dtype=_DTYPE, device=xt.device), steps, basis=basis)
    n_b = len(labels)
    if not coral or batch_key is None:
        return AffineMaps(pooled.weight.expand(n_b, -1, -1), pooled.bias.expand(n_b, -1))
    z = pooled.apply(ctrl)
    mat = fit_coral(z, member, reg=coral_reg)
    return AffineMaps(pooled.weight @ mat, torch.einsum("d,kde->ke", pooled.bias[0], mat))


def apply_maps(x: np.ndarray | torch.Tensor, maps: AffineMaps, codes: np.ndarray) -> np.ndarray:
    """Apply the map of each row's batch; returns float64 numpy."""
    xt = torch.as_tensor(x).to(device=maps.weight.device, dtype=maps.weight.dtype)
    out = maps.apply_rows(xt, torch.as_tensor(codes, device=xt.device))
    return out.cpu().numpy()


def correct_array(
    x: np.ndarray,
    is_control: np.ndarray,
    codes: np.ndarray,
    labels: pd.Index,
    *,
    method: str,
    batch_key: str | None,
    **kwargs: object,
) -> np.ndarray:
    """Fit :func:`correction_maps` and apply it to ``x`` (numpy in, numpy out)."""
    maps = correction_maps(x, is_control, codes, labels, method=method, batch_key=batch_key, **kwargs)
    return apply_maps(x, maps, codes)


def _correct(
    adata: AnnData,
    *,
    method: str,
    use_rep: str,
    batch_key: str | None,
    control_key: str,
    key_added: str | None,
    copy: bool,
    suffix: str,
    **kwargs: object,
) -> AnnData | None:
    timer = Timer(f"{method} on obsm[{use_rep!r}]")
    x = get_rep(adata, use_rep)
    is_ctrl = control_mask(adata, control_key)
    codes, labels = batch_codes(adata, batch_key)
    key = default_key(use_rep, suffix, key_added)
    out = correct_array(x, is_ctrl, codes, labels, method=method, batch_key=batch_key, **kwargs)
    target = adata.copy() if copy else adata
    target.obsm[key] = out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64, copy=False)
    params = {"use_rep": use_rep, "batch_key": batch_key or "", "control_key": control_key, **kwargs}
    target.uns[key] = {"params": params, "n_batches": len(labels), "version": version_info()}
    timer.done(f"added obsm[{key!r}]")
    return target if copy else None


_SHARED_RETURNS = """Returns
    -------
    ``None``, or a modified copy if ``copy=True``; writes

    ``adata.obsm[key_added]``
        The corrected embedding (same shape and dtype as ``obsm[use_rep]``).
    ``adata.uns[key_added]``
        ``{"params": ..., "n_batches": ..., "version": ...}``."""


def center(
    adata: AnnData,
    *,
    use_rep: str,
    batch_key: str | None = "batch",
    control_key: str = "is_control",
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Center an embedding on the mean of each batch's controls: ``x <- x - mean(C_b)``.

    Parameters
    ----------
    adata
        Annotated data with an embedding in ``obsm[use_rep]``.
    use_rep
        Key of the embedding in ``adata.obsm``.
    batch_key
        Column of ``adata.obs`` with the experimental batch; ``None`` for one batch.
    control_key
        Boolean column of ``adata.obs`` marking the negative controls (at least 2 per batch).
    key_added
        Key of the result; defaults to ``f"{use_rep}_center"``.
    copy
        Return a modified copy instead of writing into ``adata``.

    {returns}
    """
    return _correct(
        adata,
        method="center",
        use_rep=use_rep,
        batch_key=batch_key,
        control_key=control_key,
        key_added=key_added,
        copy=copy,
        suffix="center",
    )


def standardize(
    adata: AnnData,
    *,
    use_rep: str,
    batch_key: str | None = "batch",
    control_key: str = "is_control",
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Center and scale an embedding on each batch's controls: ``x <- (x - mean(C_b)) / std(C_b)``.

    Population standard deviation (ddof 0); a zero standard deviation counts as 1.

    Parameters
    ----------
    adata
        Annotated data with an embedding in ``obsm[use_rep]``.
    use_rep
        Key of the embedding in ``adata.obsm``.
    batch_key
        Column of ``adata.obs`` with the experimental batch; ``None`` for one batch.
    control_key
        Boolean column of ``adata.obs`` marking the negative controls (at least 2 per batch).
    key_added
        Key of the result; defaults to ``f"{use_rep}_standardize"``.
    copy
        Return a modified copy instead of writing into ``adata``.

    {returns}
    """
    return _correct(
        adata,
        method="standardize",
        use_rep=use_rep,
        batch_key=batch_key,
        control_key=control_key,
        key_added=key_added,
        copy=copy,
        suffix="standardize",
    )


def tvn(
    adata: AnnData,
    *,
    use_rep: str,
    batch_key: str | None = "batch",
    control_key: str = "is_control",
    coral: bool = True,
    coral_reg: float = 0.5,
    basis: str = "pca",
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Typical variation normalization on controls, optionally with per-batch CORAL.

    1. standardize on all controls (pooled over batches);
    2. rotate by the PCA of the controls (all components; the dimension is kept also with fewer controls
       than dimensions);
    3. scale every component to unit control variance;
    4. if ``coral`` and ``batch_key``: ``x_b <- x_b (Cov(C_b, ddof=1) + coral_reg I)^(-1/2)`` per batch.

    With ``basis="pca"`` this equals ``efaar_benchmarking.efaar.tvn_on_controls`` (the output is in the
    principal-component basis of the controls); ``basis="zca"`` rotates back (``W D^-1/2 W^T``, the paper's
    form), which keeps coordinates comparable across datasets and is what every model input uses.

    Parameters
    ----------
    adata
        Annotated data with an embedding in ``obsm[use_rep]``.
    use_rep
        Key of the embedding in ``adata.obsm``.
    batch_key
        Column of ``adata.obs`` with the experimental batch used by CORAL; ``None`` skips CORAL.
    control_key
        Boolean column of ``adata.obs`` marking the negative controls (at least 2 per batch).
    coral
        Apply the per-batch CORAL step.
    coral_reg
        Ridge added to each batch's control covariance before the inverse square root.
    basis
        ``"pca"`` (efaar's output basis) or ``"zca"`` (input basis).
    key_added
        Key of the result; defaults to ``f"{use_rep}_tvn"``.
    copy
        Return a modified copy instead of writing into ``adata``.

    {returns}
    """
    return _correct(
        adata,
        method="tvn",
        use_rep=use_rep,
        batch_key=batch_key,
        control_key=control_key,
        key_added=key_added,
        copy=copy,
        suffix="tvn",
        coral=coral,
        coral_reg=coral_reg,
        basis=basis,
    )


for _f in (center, standardize, tvn):
    _f.__doc__ = _f.__doc__.replace("{returns}", _SHARED_RETURNS)

__all__ = ["STEPS", "apply_maps", "center", "correct_array", "correction_maps", "standardize", "tvn"]
