"""Array-level batch corrections (center, standardize, TVN) fitted on each batch's controls: numpy / torch only.

:mod:`scsemiclip.pp` wraps these for AnnData; the model uses them for its input and teacher corrections.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._affine import _CHUNK_BYTES, EIGENVALUE_FLOOR, AffineMaps, fit_coral, fit_whitening, step_mask

_DTYPE = torch.float64

#: The corrections of :func:`correction_maps`.
METHODS = ("center", "standardize", "tvn")
#: Rows :func:`apply_maps` corrects at once (the size of its float64 temporaries).
_ROWS_PER_CHUNK = 65536


def check_controls_per_batch(
    is_control: np.ndarray, codes: np.ndarray, labels: Sequence, *, batch_key: str | None, min_controls: int = 2
) -> np.ndarray:
    """The number of controls of every batch, checked to be at least ``min_controls``.

    Parameters
    ----------
    is_control
        ``(n,)`` booleans marking the controls.
    codes
        ``(n,)`` batch code of every row (``0 .. len(labels) - 1``).
    labels
        The batch labels, for messages.
    batch_key
        Name of the batch column, for messages; ``None`` means a single batch.
    min_controls
        Fewest controls a batch needs.

    Returns
    -------
    ``(n_batches,)`` control counts.

    Raises
    ------
    ValueError
        Naming the first batch with fewer than ``min_controls`` controls.
    """
    counts = np.bincount(codes[is_control], minlength=len(labels))
    bad = np.flatnonzero(counts < min_controls)
    if bad.size:
        where = "the data" if batch_key is None else f"batch {labels[bad[0]]!r} of obs[{batch_key!r}]"
        raise ValueError(
            f"{where} has {counts[bad[0]]} control(s); at least {min_controls} are needed to fit a correction"
            + (f" ({bad.size} batch(es) affected)." if bad.size > 1 else ".")
        )
    return counts


def batch_control_weights(
    is_control: np.ndarray, codes: np.ndarray, labels: Sequence, *, batch_key: str | None, min_controls: int = 2
) -> np.ndarray:
    """``(n_batches, n_controls)`` 0/1 membership of each control in each batch; checks every batch has controls.

    The arguments are those of :func:`check_controls_per_batch`, which raises the error for a batch with too few
    controls.

    Returns
    -------
    The float64 membership matrix, one row per batch, one column per control (in row order).
    """
    check_controls_per_batch(is_control, codes, labels, batch_key=batch_key, min_controls=min_controls)
    return (codes[is_control][None, :] == np.arange(len(labels))[:, None]).astype(np.float64)


def group_controls(
    x: np.ndarray, is_control: np.ndarray, codes: np.ndarray, labels: Sequence, *, batch_key: str | None
) -> list[np.ndarray]:
    """The control rows of ``x`` of every batch, in batch-code order (row order kept within a batch).

    Parameters
    ----------
    x
        ``(n, d)`` embeddings.
    is_control, codes, labels, batch_key
        As in :func:`check_controls_per_batch` (every batch needs at least 2 controls).

    Returns
    -------
    One ``(n_b, d)`` array per batch.
    """
    check_controls_per_batch(is_control, codes, labels, batch_key=batch_key)
    rows = np.flatnonzero(is_control)
    return [x[rows[codes[rows] == b]] for b in range(len(labels))]


def correction_maps(
    x: np.ndarray | torch.Tensor,
    is_control: np.ndarray,
    codes: np.ndarray,
    labels: Sequence,
    *,
    method: str,
    batch_key: str | None,
    coral: bool = True,
    coral_reg: float = 0.5,
    basis: str = "pca",
    eigenvalue_floor: float = 0.0,
) -> AffineMaps:
    """Fit one affine correction per batch on an embedding matrix.

    Parameters
    ----------
    x
        ``(n, d)`` embeddings (numpy or torch; computed in float64 on the tensor's device).
    is_control
        ``(n,)`` booleans marking the controls.
    codes, labels
        Batch code of every row and the batch labels.
    method
        ``"center"``, ``"standardize"`` (fitted on each batch's controls) or ``"tvn"`` (standardize, PCA
        rotation and whitening on the pooled controls, then CORAL on each batch's controls when
        ``batch_key`` is given and ``coral`` is true), as ``efaar_benchmarking.efaar.tvn_on_controls``.
    batch_key
        Name of the batch column (for messages); ``None`` means a single batch.
    coral
        Apply the per-batch CORAL step of TVN.
    coral_reg
        Ridge added to each batch's control covariance before the inverse square root.
    basis
        ``"pca"`` (efaar's output basis) or ``"zca"`` (input basis).
    eigenvalue_floor
        Robust whitening (see :func:`~scsemiclip._core.fit_whitening`); 0 (default) is efaar's full whitening.

    Returns
    -------
    One map per batch, index = batch code.
    """
    xt = torch.as_tensor(x)
    ctrl = xt[torch.as_tensor(is_control, device=xt.device)].to(_DTYPE)  # only the controls in float64
    member = torch.as_tensor(
        batch_control_weights(is_control, codes, labels, batch_key=batch_key), dtype=_DTYPE, device=xt.device
    )
    if method in ("center", "standardize"):
        steps = step_mask((method,) * len(labels), device=xt.device)
        return fit_whitening(ctrl, member, steps, basis=basis)
    if method != "tvn":
        raise ValueError(f"Unknown correction {method!r}; choose one of {METHODS}.")
    pooled = _pooled_whitening(ctrl, basis=basis, eigenvalue_floor=eigenvalue_floor)
    n_b = len(labels)
    if not coral or batch_key is None:
        return AffineMaps(pooled.weight.expand(n_b, -1, -1), pooled.bias.expand(n_b, -1))
    return _then_coral(pooled, pooled.apply(ctrl), member, reg=coral_reg)


def _pooled_whitening(ctrl: torch.Tensor, *, basis: str, eigenvalue_floor: float) -> AffineMaps:
    """TVN's first steps (center, scale, rotate, whiten) fitted on all controls: one map."""
    ones = torch.ones((1, ctrl.shape[0]), dtype=_DTYPE, device=ctrl.device)
    steps = step_mask(("tvn",), device=ctrl.device)
    return fit_whitening(ctrl, ones, steps, basis=basis, eigenvalue_floor=eigenvalue_floor)


def _then_coral(pooled: AffineMaps, z: torch.Tensor, member: torch.Tensor, *, reg: float) -> AffineMaps:
    """The pooled map followed by the CORAL step of each row of ``member`` (fitted on the whitened controls ``z``)."""
    mat = fit_coral(z, member, reg=reg)
    return AffineMaps(pooled.weight @ mat, torch.einsum("d,kde->ke", pooled.bias[0], mat))


def apply_maps(
    x: np.ndarray | torch.Tensor,
    maps: AffineMaps,
    codes: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    dtype: np.dtype | type = np.float64,
    chunk_size: int = _ROWS_PER_CHUNK,
) -> np.ndarray:
    """Apply the map of each row's batch, ``chunk_size`` rows at a time (computed in the maps' precision).

    Only one chunk is held in the maps' precision at a time: the extra memory is the output (``dtype``) plus
    about ``chunk_size`` rows, whatever the size of ``x``. ``rows`` selects (and orders) the rows to correct.
    """
    codes = np.asarray(codes)
    rows = np.arange(x.shape[0]) if rows is None else np.asarray(rows)
    out = np.empty((rows.size, maps.weight.shape[2]), dtype=dtype)
    device, work = maps.weight.device, maps.weight.dtype
    for start in range(0, rows.size, chunk_size):
        part = rows[start : start + chunk_size]
        xt = torch.as_tensor(x[part]).to(device=device, dtype=work)
        out[start : start + part.size] = maps.apply_rows(xt, torch.as_tensor(codes[part], device=device)).cpu()
    return out


def correct_array(
    x: np.ndarray,
    is_control: np.ndarray,
    codes: np.ndarray,
    labels: Sequence,
    *,
    method: str,
    batch_key: str | None,
    **kwargs: object,
) -> np.ndarray:
    """Fit :func:`correction_maps` and apply it to ``x`` (numpy in, float64 numpy out)."""
    maps = correction_maps(x, is_control, codes, labels, method=method, batch_key=batch_key, **kwargs)
    return apply_maps(x, maps, codes)


def zca_tvn_rows(
    x: np.ndarray,
    is_control: np.ndarray,
    codes: np.ndarray,
    labels: Sequence,
    *,
    rows: np.ndarray,
    batch_key: str | None,
    coral_reg: float,
    eigenvalue_floor: float = EIGENVALUE_FLOOR,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """``rows`` of ``x`` corrected by :func:`zca_tvn_maps`, fitted and applied a group of batches at a time.

    The same values as ``apply_maps(x, zca_tvn_maps(...), codes, rows=rows, dtype=dtype)``, but the ``(K, d, d)``
    maps of all ``K`` batches never coexist: beyond the output and the controls, the memory is that of a group
    of batches (about 64 MB of maps), whatever the number of batches.
    """
    xt = torch.as_tensor(x)
    ctrl = xt[torch.as_tensor(is_control, device=xt.device)].to(_DTYPE)
    pooled = _pooled_whitening(ctrl, basis="zca", eigenvalue_floor=eigenvalue_floor)
    rows, codes = np.asarray(rows), np.asarray(codes)
    if batch_key is None:
        return apply_maps(x, pooled, np.zeros_like(codes), rows=rows, dtype=dtype)
    member = torch.as_tensor(
        batch_control_weights(is_control, codes, labels, batch_key=batch_key), dtype=_DTYPE, device=xt.device
    )
    z = pooled.apply(ctrl)
    d = pooled.weight.shape[-1]
    group = max(1, _CHUNK_BYTES // (d * d * pooled.weight.element_size()))
    out = np.empty((rows.size, d), dtype=dtype)
    row_codes = codes[rows]
    for start in range(0, len(labels), group):
        maps = _then_coral(pooled, z, member[start : start + group], reg=coral_reg)
        sel = np.flatnonzero((row_codes >= start) & (row_codes < start + group))
        local = codes - start  # the group's batches are maps 0, 1, ...
        for part in np.array_split(sel, max(1, -(-sel.size // _ROWS_PER_CHUNK))):  # no group-sized temporary
            out[part] = apply_maps(x, maps, local, rows=rows[part], dtype=dtype)
    return out


def zca_tvn_maps(
    x: np.ndarray,
    is_control: np.ndarray,
    codes: np.ndarray,
    labels: Sequence,
    *,
    batch_key: str | None,
    coral_reg: float,
    eigenvalue_floor: float = EIGENVALUE_FLOOR,
) -> AffineMaps:
    """Basis-preserving TVN with per-batch CORAL fitted on the data's own controls (the model's input / teacher form).

    The whitening is robust: the pooled control eigenvalues are floored at ``eigenvalue_floor`` times the largest
    (see :func:`~scsemiclip._core.fit_whitening`; 0 whitens fully, as efaar does); CORAL's ridge ``coral_reg`` bounds
    its own gain by ``1 / sqrt(coral_reg)``. The maps (one per batch, float64) are applied with :func:`apply_maps`,
    e.g. in chunks or to some rows only.
    """
    return correction_maps(
        x,
        is_control,
        codes,
        labels,
        method="tvn",
        batch_key=batch_key,
        coral=True,
        coral_reg=coral_reg,
        basis="zca",
        eigenvalue_floor=eigenvalue_floor,
    )
