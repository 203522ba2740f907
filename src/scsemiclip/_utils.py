"""Private helpers shared by every subpackage: input validation, randomness and logging."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from scsemiclip._keys import canonical_keys

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger("scsemiclip")

RNGLike = int | np.random.Generator | None


def resolve_rng(rng: RNGLike) -> np.random.Generator:
    """Turn an int seed, a Generator or None into a :class:`numpy.random.Generator`."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, int | np.integer):
        return np.random.default_rng(rng)
    raise TypeError(f"`rng` must be an int seed, a numpy.random.Generator or None, got {type(rng).__name__}.")


def torch_seed(rng: RNGLike) -> int:
    """Draw a 63-bit seed for torch / Lightning from ``rng`` (deterministic for an int seed)."""
    return int(resolve_rng(rng).integers(0, 2**62))


def check_array(x: object, *, name: str, ndim: int = 2) -> np.ndarray:
    """Validate an embedding matrix: dense, numeric, ``ndim``-dimensional and finite.

    Parameters
    ----------
    x
        The candidate array.
    name
        How the array is named in error messages (e.g. ``"obsm['X_scVI']"``).
    ndim
        Required number of dimensions.

    Returns
    -------
    The array as a read-only view of its values (no copy when already a float ndarray).
    """
    if sparse.issparse(x):
        raise ValueError(f"{name} is a sparse matrix; embeddings must be dense (call `.toarray()` first).")
    if isinstance(x, pd.DataFrame):
        x = x.to_numpy()
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}.")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got an array of shape {arr.shape}.")
    if arr.size and not np.isfinite(arr).all():
        bad = np.unique(np.nonzero(~np.isfinite(arr.reshape(arr.shape[0], -1)))[0])
        raise ValueError(f"{name} contains NaN or infinite values in {bad.size} row(s) (first: row {int(bad[0])}).")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


def get_rep(adata: AnnData, use_rep: str, *, what: str = "adata") -> np.ndarray:
    """Return ``adata.obsm[use_rep]`` (or ``adata.X`` for ``use_rep="X"``), validated by :func:`check_array`.

    ``what`` names the AnnData in messages (e.g. ``"teacher"``).
    """
    if not isinstance(use_rep, str):
        raise TypeError(f"`use_rep` must be a string naming an `.obsm` key, got {type(use_rep).__name__}.")
    if use_rep == "X":
        return check_array(adata.X, name=f"{what}.X")
    if use_rep not in adata.obsm:
        keys = ", ".join(map(repr, adata.obsm.keys())) or "none"
        raise KeyError(f"{use_rep!r} is not in {what}.obsm (available: {keys}).")
    return check_array(adata.obsm[use_rep], name=f"{what}.obsm[{use_rep!r}]")


def check_obs_keys(adata: AnnData, keys: Sequence[str | None], *, what: str = "adata") -> None:
    """Raise a :class:`KeyError` naming the first of ``keys`` missing from ``adata.obs``."""
    for key in keys:
        if key is not None and key not in adata.obs.columns:
            raise KeyError(f"{what}.obs has no column {key!r} (columns: {', '.join(map(repr, adata.obs.columns))}).")


def control_mask(adata: AnnData, control_key: str, *, what: str = "adata") -> np.ndarray:
    """Return ``obs[control_key]`` as a boolean array; the column must be boolean (see :func:`scsemiclip.pp.mark_controls`)."""
    check_obs_keys(adata, [control_key], what=what)
    col = adata.obs[control_key]
    if col.isna().any():
        raise ValueError(f"{what}.obs[{control_key!r}] has missing values; it must be boolean.")
    if not pd.api.types.is_bool_dtype(col):
        raise ValueError(
            f"{what}.obs[{control_key!r}] must be boolean (True for negative controls), got dtype {col.dtype}; "
            "build it with `scsemiclip.pp.mark_controls`."
        )
    return col.to_numpy(dtype=bool)


def batch_codes(adata: AnnData, batch_key: str | None, *, what: str = "adata") -> tuple[np.ndarray, pd.Index]:
    """Integer codes and category labels of ``obs[batch_key]`` (a single batch when ``batch_key`` is None)."""
    if batch_key is None:
        return np.zeros(adata.n_obs, dtype=np.int64), pd.Index(["all"])
    check_obs_keys(adata, [batch_key], what=what)
    col = adata.obs[batch_key]
    if col.isna().any():
        raise ValueError(f"{what}.obs[{batch_key!r}] has missing values.")
    codes, labels = pd.factorize(col, sort=True)
    return codes.astype(np.int64), pd.Index(labels)


def default_key(use_rep: str, suffix: str, key_added: str | None) -> str:
    """``key_added`` or ``f"{use_rep}_{suffix}"``; never the input key itself."""
    key = f"{use_rep}_{suffix}" if key_added is None else key_added
    if key == use_rep:
        raise ValueError(f"`key_added={key!r}` equals `use_rep`; choose another key so the input is not overwritten.")
    return key


class Timer:
    """Log the start and end of a step with its duration (scanpy's ``logg.info(..., time=start)``)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.start = time.perf_counter()
        logger.info(message)

    def done(self, detail: str = "") -> None:
        """Log the elapsed time."""
        logger.info("    finished %s(%.2fs)", f"{detail} " if detail else "", time.perf_counter() - self.start)


def normalize_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Undirected, de-duplicated pairs without self-pairs: ``entity1 < entity2`` (vectorised).

    Parameters
    ----------
    df
        A frame with columns ``entity1`` and ``entity2``.

    Returns
    -------
    A new frame with columns ``entity1``, ``entity2`` (strings in the canonical key form of
    :func:`scsemiclip._keys.canonical_keys`, rows with a missing entity dropped), in first-occurrence order.
    """
    missing = {"entity1", "entity2"} - set(df.columns)
    if missing:
        raise KeyError(f"A relationship table needs columns 'entity1' and 'entity2'; missing {sorted(missing)}.")
    (a, missing_a), (b, missing_b) = canonical_keys(df["entity1"]), canonical_keys(df["entity2"])
    keep = ~(missing_a | missing_b)
    a, b = a[keep], b[keep]
    lo, hi = np.where(a <= b, a, b), np.where(a <= b, b, a)
    out = pd.DataFrame({"entity1": lo, "entity2": hi})
    return out[out.entity1 != out.entity2].drop_duplicates(ignore_index=True)


def storable(value: object) -> object:
    """``value`` as h5ad can write it into ``uns``: ``None`` as ``""``, tuples as lists, numpy scalars as Python.

    Applied recursively to dicts (keys become strings), lists and tuples; other values are returned as they are.
    """
    if value is None:
        return ""
    if isinstance(value, dict):
        return {str(k): storable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [storable(v) for v in value]
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    return value


def version_info() -> str:
    """The installed package version (written into ``uns`` params)."""
    from scsemiclip import __version__

    return __version__
