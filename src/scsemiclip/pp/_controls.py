"""Marking negative controls."""

from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np

from scsemiclip._keys import canonical_keys, canonical_value
from scsemiclip._utils import check_obs_keys
from scsemiclip._validate import check_key


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
        The label, or labels, of negative controls (e.g. ``"non-targeting"`` or ``["DMSO", "EMPTY"]``), compared
        in the canonical form of pairing keys (``0`` matches ``"0"`` and ``0.0``).
    key_added
        Name of the boolean column written (not ``perturbation_key``: the labels are kept).

    Returns
    -------
    ``None``; writes

    ``adata.obs[key_added]``
        ``True`` for rows whose ``obs[perturbation_key]`` is one of ``control_values``.
    """
    check_key(perturbation_key, name="perturbation_key")
    check_key(key_added, name="key_added")
    if key_added == perturbation_key:
        raise ValueError(
            f"`key_added={key_added!r}` equals `perturbation_key`; choose another column so the labels are kept."
        )
    check_obs_keys(adata, [perturbation_key])
    if isinstance(control_values, str) or not isinstance(control_values, Iterable):
        control_values = [control_values]
    values = list(control_values)
    if not values:
        raise ValueError("`control_values` is empty; give the label(s) of the negative controls.")
    col = adata.obs[perturbation_key]
    keys, missing = canonical_keys(col)
    mask = np.isin(keys, [canonical_value(v) for v in values]) & ~missing
    if not mask.any():
        present = ", ".join(map(repr, col.astype(str).unique()[:10]))
        raise ValueError(
            f"None of {values!r} occurs in adata.obs[{perturbation_key!r}] (values include {present}); no control marked."
        )
    adata.obs[key_added] = np.asarray(mask, dtype=bool)
