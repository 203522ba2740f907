"""Batch corrections fitted on controls: centering, standardization and TVN (docs/method.md, "Batch corrections")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from scsemiclip._core import correct_array
from scsemiclip._docs import doc_adata_rep, doc_batch_key, doc_control_key, doc_copy, doc_correction_returns, doc_params
from scsemiclip._utils import Timer, batch_codes, control_mask, default_key, get_rep, storable, version_info
from scsemiclip._validate import check_choice, check_flag, check_key, check_real

if TYPE_CHECKING:
    from anndata import AnnData

_DOCS = {
    "doc_adata_rep": doc_adata_rep,
    "doc_batch_key": doc_batch_key,
    "doc_control_key": doc_control_key,
    "doc_copy": doc_copy,
    "doc_correction_returns": doc_correction_returns,
}


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
    check_key(use_rep, name="use_rep")
    check_key(batch_key, name="batch_key", none_ok=True)
    check_key(control_key, name="control_key")
    check_key(key_added, name="key_added", none_ok=True)
    check_flag(copy, name="copy")
    timer = Timer(f"{method} on obsm[{use_rep!r}]")
    x = get_rep(adata, use_rep)
    if x.shape[0] == 0:
        raise ValueError(f"adata has no rows (obsm[{use_rep!r}] has shape {x.shape}); nothing to {method}.")
    is_ctrl = control_mask(adata, control_key)
    codes, labels = batch_codes(adata, batch_key)
    key = default_key(use_rep, suffix, key_added)
    out = correct_array(x, is_ctrl, codes, labels, method=method, batch_key=batch_key, **kwargs)
    target = adata.copy() if copy else adata
    target.obsm[key] = out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64, copy=False)
    params = {"use_rep": use_rep, "batch_key": batch_key, "control_key": control_key, **kwargs}
    target.uns[key] = storable({"params": params, "n_batches": len(labels), "version": version_info()})
    timer.done(f"added obsm[{key!r}]")
    return target if copy else None


@doc_params(**_DOCS)
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
    {doc_adata_rep}
    {doc_batch_key}
    {doc_control_key}
    key_added
        Key of the result; defaults to ``f"{use_rep}_center"``.
    {doc_copy}

    {doc_correction_returns}
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


@doc_params(**_DOCS)
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
    {doc_adata_rep}
    {doc_batch_key}
    {doc_control_key}
    key_added
        Key of the result; defaults to ``f"{use_rep}_standardize"``.
    {doc_copy}

    {doc_correction_returns}
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


@doc_params(**{k: v for k, v in _DOCS.items() if k != "doc_batch_key"})
def tvn(
    adata: AnnData,
    *,
    use_rep: str,
    batch_key: str | None = "batch",
    control_key: str = "is_control",
    coral: bool = True,
    coral_reg: float = 0.5,
    basis: str = "pca",
    eigenvalue_floor: float = 0.0,
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
    {doc_adata_rep}
    batch_key
        Column of ``adata.obs`` with the experimental batch used by CORAL; ``None`` skips CORAL.
    {doc_control_key}
    coral
        Apply the per-batch CORAL step.
    coral_reg
        Ridge (>= 0) added to each batch's control covariance before the inverse square root.
    basis
        ``"pca"`` (efaar's output basis) or ``"zca"`` (input basis).
    eigenvalue_floor
        Robust whitening (docs/method.md): step 3 divides by at least ``sqrt(eigenvalue_floor)`` times the largest
        control standard deviation of the components, so no component is scaled up by more than
        ``1 / sqrt(eigenvalue_floor)`` times the first; 0 (default) whitens fully, as efaar, in ``[0, 1)``. The
        model's corrections use its own ``eigenvalue_floor`` (see :class:`~scsemiclip.model.SemiClipped`).
    key_added
        Key of the result; defaults to ``f"{use_rep}_tvn"``.
    {doc_copy}

    {doc_correction_returns}
    """
    check_flag(coral, name="coral")
    check_real(coral_reg, name="coral_reg", low=0)
    check_choice(basis, name="basis", choices=("pca", "zca"))
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
        eigenvalue_floor=eigenvalue_floor,
    )


__all__ = ["center", "standardize", "tvn"]
