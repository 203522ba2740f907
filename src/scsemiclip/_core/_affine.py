"""Affine maps ``x -> x @ W + b`` fitted on controls: the one core behind every batch correction and PEA.

Centering, standardization and TVN (docs/method.md) are all affine maps of an embedding. This module fits them in
torch, batched over ``K`` maps at once, on CPU or GPU, from a matrix of control embeddings and a ``(K, n)``
matrix of control weights (0/1 masks select per-batch controls or random control subsets). Which steps a
map contains is a ``(K, 5)`` boolean matrix over :data:`STEPS`, so one call fits a whole bank of random PEA
transforms (random transform type, random step dropout, random control subsets) as well as the
deterministic corrections of :mod:`scsemiclip.pp`.

``x @ W + b`` is the same map as the method page's ``(x - m) @ W`` with ``b = -m @ W``; the ``(W, b)`` form is kept
because it composes and applies with one ``baddbmm`` and needs no inverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scsemiclip._validate import check_real

#: The steps an affine correction is made of, in the order they are applied.
STEPS: tuple[str, ...] = ("center", "scale", "rotate", "whiten", "coral")

#: The steps of each correction of docs/method.md ("Batch corrections", "PEA").
TRANSFORM_STEPS: dict[str, tuple[str, ...]] = {
    "center": ("center",),
    "standardize": ("center", "scale"),
    "tvn": ("center", "scale", "rotate", "whiten", "coral"),
}

BASES = ("pca", "zca")
#: Default floor of the control eigenvalues, relative to the largest, of the whitening that feeds the adapter (PEA's
#: TVN maps, the input TVN, the teacher's TVN): no axis is scaled up by more than ``1 / sqrt(floor)`` times the
#: largest. ``pp.tvn`` keeps 0 (efaar's full whitening).
EIGENVALUE_FLOOR = 1e-3
#: Bytes of covariance matrices :func:`fit_coral` decomposes at once (its peak memory beyond its output).
_CHUNK_BYTES = 2**26


@dataclass
class AffineMaps:
    """A stack of ``K`` affine maps ``x -> x @ weight[k] + bias[k]``.

    Attributes
    ----------
    weight
        ``(K, d_in, d_out)``.
    bias
        ``(K, d_out)``.
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __len__(self) -> int:
        return self.weight.shape[0]

    def apply(self, x: torch.Tensor, index: int = 0) -> torch.Tensor:
        """Apply map ``index`` to every row of ``x``."""
        return torch.addmm(self.bias[index], x, self.weight[index])

    def apply_rows(self, x: torch.Tensor, index: torch.Tensor, *, max_gather_bytes: int = 2**27) -> torch.Tensor:
        """Apply map ``index[i]`` to row ``x[i]``.

        On accelerators (or with fewer rows than maps) this is a gather of the maps and a batched matmul, in
        chunks of at most ``max_gather_bytes`` of gathered weights. On CPU with more rows than maps the rows are
        grouped by map instead (one ``addmm`` per distinct map, no ``(n, d, d)`` gather).
        """
        if x.device.type == "cpu" and x.shape[0] > len(self):
            order = torch.argsort(index, stable=True)
            maps, counts = torch.unique_consecutive(index[order], return_counts=True)
            out = x.new_empty((x.shape[0], self.weight.shape[2]))
            for k, rows in zip(maps.tolist(), torch.split(order, counts.tolist()), strict=True):
                out[rows] = torch.addmm(self.bias[k], x[rows], self.weight[k])
            return out
        per_row = self.weight.shape[1] * self.weight.shape[2] * self.weight.element_size()
        chunk = max(1, max_gather_bytes // per_row)
        parts = [
            torch.baddbmm(self.bias[i].unsqueeze(1), xi.unsqueeze(1), self.weight[i]).squeeze(1)
            for xi, i in zip(x.split(chunk), index.split(chunk), strict=True)
        ]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def then(self, other: AffineMaps) -> AffineMaps:
        """The composition ``x -> other(self(x))`` (maps paired index by index, or broadcast from one)."""
        return AffineMaps(self.weight @ other.weight, torch.einsum("kd,kde->ke", self.bias, other.weight) + other.bias)

    def to(self, *args: object, **kwargs: object) -> AffineMaps:
        """Move / cast both tensors (same arguments as :meth:`torch.Tensor.to`)."""
        return AffineMaps(self.weight.to(*args, **kwargs), self.bias.to(*args, **kwargs))


def step_mask(transforms: list[str] | tuple[str, ...], *, device: torch.device | None = None) -> torch.Tensor:
    """``(K, len(STEPS))`` boolean matrix with the full steps of each named transform."""
    unknown = set(transforms) - set(TRANSFORM_STEPS)
    if unknown:
        raise ValueError(f"Unknown transform(s) {sorted(unknown)}; choose from {list(TRANSFORM_STEPS)}.")
    rows = [[s in TRANSFORM_STEPS[t] for s in STEPS] for t in transforms]
    return torch.tensor(rows, dtype=torch.bool, device=device).reshape(len(transforms), len(STEPS))


def _weighted_moments(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted means ``(K, d)`` and population (ddof 0) variances ``(K, d)`` of the rows of ``x``."""
    total = weights.sum(1, keepdim=True)
    mean = weights @ x / total
    var = (weights @ x.square()) / total - mean.square()
    return mean, var.clamp_min(0)


def _weighted_cov(z: torch.Tensor, weights: torch.Tensor, *, ddof: int) -> torch.Tensor:
    """Weighted covariances ``(K, d, d)`` of ``z``, ``(K, n, d)`` or ``(n, d)``, with ``ddof``."""
    total = weights.sum(1)
    if z.dim() == 2:
        # shared rows: one map at a time, on the rows it weighs only (a batch's own controls), so K batches cost
        # about n d^2 in all instead of K n d^2, and there is never a (K, n, d) copy of the rows
        covs = []
        for w in weights:
            rows = w.nonzero().squeeze(1)
            zk, wk = z[rows], w[rows]
            centred = zk - (wk @ zk) / wk.sum()
            covs.append((centred * wk[:, None]).T @ centred)
        return torch.stack(covs) / (total - ddof).clamp_min(1)[:, None, None]
    mean = torch.einsum("kn,knd->kd", weights, z) / total[:, None]
    centred = z - mean[:, None, :]
    cov = (centred * weights[:, :, None]).transpose(1, 2) @ centred
    return cov / (total - ddof).clamp_min(1)[:, None, None]


def _safe_scale(var: torch.Tensor, *, rank_tol: bool = False) -> torch.Tensor:
    """Standard deviation with zero (or numerically zero) entries replaced by 1, as scikit-learn does.

    With ``rank_tol``, ``var`` holds the variances of a covariance matrix along its eigenvectors, and those below
    ``10 d eps`` times the largest (the eigensolver's rounding level: the null space of a rank-deficient
    covariance, e.g. fewer controls than dimensions) count as zero too; otherwise they would be whitened by
    factors of about ``1e8``.
    """
    std = var.sqrt()
    eps = 10 * torch.finfo(var.dtype).eps
    zero = std < eps * torch.clamp_min(std.amax(-1, keepdim=True), 1.0)
    if rank_tol:
        zero |= var <= eps * var.shape[-1] * var.amax(-1, keepdim=True)
    return torch.where(zero, torch.ones_like(std), std)


def _flip_signs(vecs: torch.Tensor) -> torch.Tensor:
    """Make the largest-magnitude entry of every eigenvector (column) positive (scikit-learn's ``svd_flip``)."""
    idx = vecs.abs().argmax(dim=-2, keepdim=True)
    signs = torch.sign(torch.gather(vecs, -2, idx))
    return vecs * torch.where(signs == 0, torch.ones_like(signs), signs)


def inverse_sqrt_psd(cov: torch.Tensor) -> torch.Tensor:
    """``cov^(-1/2)`` of a batch of symmetric positive definite matrices (eigendecomposition)."""
    vals, vecs = torch.linalg.eigh(cov)
    return (vecs * vals.clamp_min(torch.finfo(cov.dtype).tiny).rsqrt().unsqueeze(-2)) @ vecs.transpose(-1, -2)


def fit_whitening(
    controls: torch.Tensor,
    weights: torch.Tensor,
    steps: torch.Tensor,
    *,
    basis: str = "zca",
    eigenvalue_floor: float = 0.0,
) -> AffineMaps:
    """Fit the center / scale / rotate / whiten part of ``K`` corrections on weighted controls.

    Parameters
    ----------
    controls
        ``(n, d)`` control embeddings.
    weights
        ``(K, n)`` non-negative weights (0/1 masks) choosing the controls each map is fitted on; every row
        needs at least two non-zero weights.
    steps
        ``(K, len(STEPS))`` booleans: which steps each map contains (the ``coral`` column is ignored here).
    basis
        ``"pca"`` leaves rotated maps in the principal-component basis of their controls (efaar's TVN);
        ``"zca"`` rotates back so the output keeps the input's coordinates (the paper's ``W D^-1/2 W^T``).
    eigenvalue_floor
        Robust whitening: the control variance along each whitening axis is raised to at least
        ``eigenvalue_floor`` times the largest one of its map before it is divided out, so no axis is scaled up
        by more than ``1 / sqrt(eigenvalue_floor)`` times the largest axis (near-collapsed control directions, as
        in an scVI latent, are not blown up to unit variance). ``0`` (default) whitens
        every axis fully, as ``efaar_benchmarking`` does; it must be in ``[0, 1)``.

    Returns
    -------
    The ``K`` maps ``x -> ((x - mean) / std) @ P @ diag(1 / s) [@ P.T]`` where each factor is the identity
    when its step is off: ``mean``/``std`` the weighted control moments, ``P`` the control PCA eigenvectors
    (sorted by decreasing variance, scikit-learn's sign convention) and ``s`` the control standard deviation
    along the axes of ``P`` (floored at ``sqrt(eigenvalue_floor)`` times the largest). A zero standard deviation
    counts as 1; the dimension is always kept, also when there are fewer controls than dimensions.
    """
    if basis not in BASES:
        raise ValueError(f"`basis` must be one of {BASES}, got {basis!r}.")
    check_real(eigenvalue_floor, name="eigenvalue_floor", low=0, high=1, high_open=True)
    k, d = weights.shape[0], controls.shape[1]
    dtype, device = controls.dtype, controls.device
    weights = weights.to(dtype)
    center, scale, rotate, whiten = (steps[:, i] for i in range(4))

    mean, var = _weighted_moments(controls, weights)
    mean = torch.where(center[:, None], mean, torch.zeros_like(mean))
    inv_std = torch.where(scale[:, None], 1.0 / _safe_scale(var), torch.ones_like(var))
    eye = torch.eye(d, dtype=dtype, device=device).expand(k, d, d)

    if not bool((rotate | whiten).any()):
        return AffineMaps(torch.diag_embed(inv_std), -mean * inv_std)

    # Controls after the first two steps; their PCA (ddof 0 covariance: same eigenvectors as ddof 1).
    z = (controls.unsqueeze(0) - mean[:, None, :]) * inv_std[:, None, :]
    cov = _weighted_cov(z, weights, ddof=0)
    need_eig = rotate | whiten
    rot = eye.clone()
    if bool(need_eig.any()):
        vals, vecs = torch.linalg.eigh(cov[need_eig])
        rot[need_eig] = _flip_signs(vecs.flip(-1))
    # Axes of the whitening: the principal axes when rotating (or whitening in the zca basis), else the
    # input coordinates; the output stays in the rotated basis only for basis="pca".
    axes = torch.where((rotate | (whiten & (basis == "zca")))[:, None, None], rot, eye)
    axis_var = ((cov @ axes) * axes).sum(-2).clamp_min(0)
    if eigenvalue_floor > 0:
        axis_var = torch.maximum(axis_var, eigenvalue_floor * axis_var.amax(-1, keepdim=True))
    inv_s = torch.where(whiten[:, None], 1.0 / _safe_scale(axis_var, rank_tol=True), torch.ones_like(axis_var))
    linear = axes * inv_s[:, None, :]
    if basis == "zca":
        linear = linear @ axes.transpose(-1, -2)
    weight = inv_std[:, :, None] * linear
    return AffineMaps(weight, -torch.einsum("kd,kde->ke", mean * inv_std, linear))


def fit_coral(
    transformed_controls: torch.Tensor, weights: torch.Tensor, *, reg: float = 0.5, enabled: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-map CORAL matrices ``(Cov(C, ddof=1) + reg I)^(-1/2)``, ``(K, d, d)``.

    Parameters
    ----------
    transformed_controls
        ``(n, d)`` or ``(K, n, d)`` controls already passed through the whitening part.
    weights
        ``(K, n)`` control weights (the batch's controls, or a random subset of them).
    reg
        Ridge added to the covariance (efaar: 0.5).
    enabled
        ``(K,)`` booleans; maps where it is False get the identity.
    """
    dtype = transformed_controls.dtype
    weights = weights.to(dtype)
    k, d = weights.shape[0], transformed_controls.shape[-1]
    eye = torch.eye(d, dtype=dtype, device=transformed_controls.device)
    out = eye.expand(k, d, d).clone()
    on = torch.ones(k, dtype=torch.bool, device=weights.device) if enabled is None else enabled
    # a few maps at a time: the covariances and the eigendecompositions of all K maps never coexist
    for part in on.nonzero().squeeze(1).split(max(1, _CHUNK_BYTES // (d * d * eye.element_size()))):
        z = transformed_controls if transformed_controls.dim() == 2 else transformed_controls[part]
        out[part] = inverse_sqrt_psd(_weighted_cov(z, weights[part], ddof=1) + reg * eye)
    return out


def fit_corrections(
    controls: torch.Tensor,
    weights: torch.Tensor,
    steps: torch.Tensor,
    *,
    basis: str = "zca",
    coral_reg: float = 0.5,
    eigenvalue_floor: float = 0.0,
) -> AffineMaps:
    """Fit ``K`` complete corrections (whitening part then CORAL), each on its own weighted controls.

    This is the per-batch form used by PEA: every step of map ``k`` is fitted on the controls selected by
    ``weights[k]``. See :func:`fit_whitening` for the arguments.
    """
    maps = fit_whitening(controls, weights, steps, basis=basis, eigenvalue_floor=eigenvalue_floor)
    coral = steps[:, STEPS.index("coral")]
    if not bool(coral.any()):
        return maps
    z = torch.baddbmm(maps.bias.unsqueeze(1), controls.unsqueeze(0).expand(len(maps), -1, -1), maps.weight)
    mat = fit_coral(z, weights, reg=coral_reg, enabled=coral)
    return AffineMaps(maps.weight @ mat, torch.einsum("kd,kde->ke", maps.bias, mat))


def sample_steps(
    transform_ids: torch.Tensor,
    transforms: tuple[str, ...],
    *,
    p_drop: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random step masks for PEA: each step of the chosen transform dropped independently with ``p_drop``.

    When every step of a transform was dropped, one of its steps, chosen uniformly, is restored, so a step of an
    ``m``-step transform is kept with probability ``1 - p_drop + p_drop**m / m``.

    Parameters
    ----------
    transform_ids
        ``(K,)`` indices into ``transforms``.
    transforms
        Names from :data:`TRANSFORM_STEPS`.
    p_drop
        Independent drop probability of every step.
    generator
        Torch generator (on the device of ``transform_ids``).

    Returns
    -------
    ``(K, len(STEPS))`` boolean step masks.
    """
    full = step_mask(transforms, device=transform_ids.device)[transform_ids]
    if p_drop <= 0:
        return full
    device = transform_ids.device
    keep = torch.rand(full.shape, generator=generator, device=device) >= p_drop
    kept = full & keep
    # A transform whose steps were all dropped keeps one of its steps, chosen uniformly.
    empty = ~kept.any(1)
    if bool(empty.any()):
        scores = torch.rand(full.shape, generator=generator, device=device).masked_fill(~full, -1.0)
        pick = torch.nn.functional.one_hot(scores.argmax(1), len(STEPS)).bool()
        kept = torch.where(empty[:, None], pick, kept)
    return kept


def sample_control_weights(
    n_controls: int,
    k: int,
    *,
    min_fraction: float,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(k, n_controls)`` 0/1 masks of random control subsets, sizes uniform in ``[max(2, ceil(f n)), n]``."""
    low = min(n_controls, max(2, math.ceil(min_fraction * n_controls)))
    sizes = torch.randint(low, n_controls + 1, (k,), generator=generator, device=device)
    ranks = torch.rand((k, n_controls), generator=generator, device=device).argsort(1).argsort(1)
    return (ranks < sizes[:, None]).to(dtype)
