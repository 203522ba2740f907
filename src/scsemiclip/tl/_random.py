"""Random baselines of an embedding (the paper's "Random baseline" rows; docs/method.md, "Baselines and statistics")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from scsemiclip._docs import doc_copy, doc_params
from scsemiclip._utils import RNGLike, control_mask, default_key, get_rep, resolve_rng, storable, version_info
from scsemiclip._validate import check_choice, check_flag, check_key

if TYPE_CHECKING:
    from anndata import AnnData


@doc_params(doc_copy=doc_copy)
def random_baseline(
    adata: AnnData,
    *,
    use_rep: str,
    kind: Literal["uniform", "shuffled"] = "uniform",
    control_key: str | None = "is_control",
    rng: RNGLike = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """A random embedding with the shape of ``obsm[use_rep]``, to score as a baseline.

    Known-relationship recall of either kind is about ``2 * threshold`` (0.10 at the default 0.05) and
    interpretability preservation about 25; evaluate the result like any embedding, e.g.
    ``tl.known_relationship_recall(adata, use_rep="X_emb_random_uniform")``.

    Parameters
    ----------
    adata
        Annotated data with an embedding in ``obsm[use_rep]`` (``"X"`` for ``adata.X``).
    use_rep
        Key of the embedding whose shape (and, for ``"shuffled"``, rows) the baseline takes.
    kind
        ``"uniform"``: independent values uniform in ``[-1, 1)`` for every row, controls included.
        ``"shuffled"``: the rows of the embedding permuted among the non-control samples (controls keep their
        own rows), which breaks the link between a perturbation label and its embedding but keeps the
        distribution of the embedding and the controls.
    control_key
        Boolean column of ``adata.obs`` marking the controls (only used by ``"shuffled"``); ``None`` permutes
        every row.
    rng
        Seed or :class:`numpy.random.Generator`.
    key_added
        Key of the result; defaults to ``f"{use_rep}_random_{kind}"``.
    {doc_copy}

    Returns
    -------
    ``None``, or a modified copy if ``copy=True``; writes

    ``adata.obsm[key_added]``
        The random embedding (same shape as ``obsm[use_rep]``, float dtype of the input or float64).
    ``adata.uns[key_added]``
        ``{"params": {"use_rep", "kind", "control_key"}, "version": ...}``.
    """
    check_key(use_rep, name="use_rep")
    check_choice(kind, name="kind", choices=("uniform", "shuffled"))
    check_key(control_key, name="control_key", none_ok=True)
    check_key(key_added, name="key_added", none_ok=True)
    check_flag(copy, name="copy")
    gen = resolve_rng(rng)
    x = get_rep(adata, use_rep)
    key = default_key(use_rep, f"random_{kind}", key_added)
    if kind == "uniform":
        out = gen.uniform(-1.0, 1.0, size=x.shape).astype(x.dtype, copy=False)
    else:
        rows = np.arange(adata.n_obs)
        if control_key is not None:
            rows = np.flatnonzero(~control_mask(adata, control_key))
        out = np.array(x, copy=True)
        out[rows] = x[gen.permutation(rows)]
    target = adata.copy() if copy else adata
    target.obsm[key] = out
    target.uns[key] = storable(
        {"params": {"use_rep": use_rep, "kind": kind, "control_key": control_key}, "version": version_info()}
    )
    return target if copy else None
