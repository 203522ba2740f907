"""Aggregation of per-sample embeddings into one profile per perturbation."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from scsemiclip._keys import canonical_keys
from scsemiclip._utils import check_obs_keys, control_mask, get_rep
from scsemiclip._validate import check_choice, check_key


def aggregate(
    adata: ad.AnnData,
    *,
    use_rep: str,
    by: str = "perturbation",
    control_key: str | None = "is_control",
    method: str = "mean",
) -> ad.AnnData:
    """Aggregate an embedding per perturbation, controls dropped.

    Parameters
    ----------
    adata
        Annotated data with an embedding in ``obsm[use_rep]`` (``"X"`` for ``adata.X``).
    use_rep
        Key of the embedding in ``adata.obsm``.
    by
        Column of ``adata.obs`` to group by. Labels are compared in the canonical form of pairing keys
        (``1``, ``1.0``, ``"1"`` and ``"1.0"`` are one group, written ``"1"``; see
        :func:`~scsemiclip.tl.fit_semiclipped`'s ``pair_keys``).
    control_key
        Boolean column marking controls, which are dropped; ``None`` keeps every row.
    method
        ``"mean"`` or ``"median"``.

    Returns
    -------
    A new AnnData with one row per group (sorted labels, as ``efaar_benchmarking.efaar.aggregate``):

    ``X``
        The aggregated embedding (float64).
    ``obs[by]``
        The group label (also the index).
    ``obs["n_samples"]``
        Number of rows aggregated into the group.
    """
    check_choice(method, name="method", choices=("mean", "median"))
    check_key(by, name="by")
    check_key(control_key, name="control_key", none_ok=True)
    x = get_rep(adata, use_rep)
    check_obs_keys(adata, [by])
    keep = ~control_mask(adata, control_key) if control_key is not None else np.ones(adata.n_obs, dtype=bool)
    labels, missing = canonical_keys(adata.obs[by])
    bad = np.flatnonzero(missing & keep)
    if bad.size:
        raise ValueError(
            f"adata.obs[{by!r}] has missing values in {bad.size} row(s) to aggregate (first: "
            f"{adata.obs_names[bad[0]]!r}); fill them or mark those rows as controls."
        )
    if not keep.any():
        raise ValueError("No rows left to aggregate after dropping the controls.")
    codes, groups = pd.factorize(labels[keep], sort=True)
    xk = np.asarray(x[keep], dtype=np.float64)
    counts = np.bincount(codes, minlength=len(groups))
    if method == "mean":
        onehot = sparse.csr_matrix(
            (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(len(groups), codes.size)
        )
        out = np.asarray(onehot @ xk) / counts[:, None]
    else:
        order = np.argsort(codes, kind="stable")
        splits = np.split(xk[order], np.cumsum(counts)[:-1])
        out = np.vstack([np.median(block, axis=0) for block in splits])
    obs = pd.DataFrame({by: np.asarray(groups), "n_samples": counts}, index=pd.Index(np.asarray(groups), name=None))
    return ad.AnnData(X=out, obs=obs)
