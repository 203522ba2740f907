"""Marking negative controls."""

from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np

from scsemiclip._utils import check_obs_keys


def mark_controls(
    adata: ad.AnnData,
    *,
    perturbation_key: str,
    control_values: str | Iterable[object],
    key_added: str = "is_control",
) -> None:
    """Mark negative controls (non-targeting guides, DMSO, ...) in a boolean ``obs`` column.

    Parameters
    ----------
    adata
        Annotated data.
    perturbation_key
        Column of ``adata.obs`` with the perturbation label.
    control_values
        The label, or labels, of negative controls (e.g. ``"non-targeting"`` or ``["DMSO", "EMPTY"]``).
    key_added
        Name of the boolean column written.

    Returns
    -------
    ``None``; writes

    ``adata.obs[key_added]``
        ``True`` for rows whose ``obs[perturbation_key]`` is one of ``control_values``.
    """
    check_obs_keys(adata, [perturbation_key])
    values = [control_values] if isinstance(control_values, str) else list(control_values)
    if not values:
        raise ValueError("`control_values` is empty; give the label(s) of the negative controls.")
    col = adata.obs[perturbation_key]
    mask = col.isin(values).to_numpy(dtype=bool)
    if not mask.any():
        present = ", ".join(map(repr, col.astype(str).unique()[:10]))
        raise ValueError(
            f"None of {values!r} occurs in adata.obs[{perturbation_key!r}] (values include {present}); no control marked."
        )
    adata.obs[key_added] = np.asarray(mask, dtype=bool)
