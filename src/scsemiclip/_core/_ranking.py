"""Retrieval and perturbation-signal kernels (pure torch / numpy): average precision, its null, energy distance, BH.

Average precision follows copairs 0.5.5 (cytomining): cosine similarities are rounded to single precision and a
candidate's rank key is ``1 - similarity`` in single precision; candidates are ranked by ascending key and a
positive that ties a negative ranks before it (copairs' stable ``lexsort`` lists positives first). So the number
of negatives ranked above a positive is ``searchsorted(sorted negative keys, positive key, side="left")``, and
with the positives of a query sorted, ``AP = mean_i i / (i + negatives above the i-th positive)``: one sort per
row of a block of queries, no per-pair Python.

The energy distance is that of ``geomloss.SamplesLoss("energy")`` times 2, as ``efaar_benchmarking`` 1.0 uses it:
``2 E|x - y| - E|x - x'| - E|y - y'|`` (V-statistics), with geomloss' distance floor ``sqrt(max(d^2, 1e-8))``.
"""

from __future__ import annotations

import numpy as np
import torch

#: geomloss clamps squared distances at this value before the square root (so ``|x - x| = 1e-4``).
SQUARED_DISTANCE_FLOOR = 1e-8
#: Null values within this tolerance of an observed mean average precision count as ties, not as exceeding it.
TIE_TOLERANCE = 1e-12


def unit_rows(x: torch.Tensor, *, what: str = "the embedding") -> torch.Tensor:
    """Rows of ``x`` scaled to unit L2 norm; a zero row (its cosine is undefined) is an error.

    Parameters
    ----------
    x
        ``(n, d)`` floating-point tensor.
    what
        How the rows are named in the error message.

    Returns
    -------
    The normalised rows (same dtype and device).
    """
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    zero = torch.nonzero(norms[:, 0] == 0).flatten()
    if zero.numel():
        raise ValueError(
            f"{what} has {zero.numel()} row(s) of norm 0 (first: row {int(zero[0])}); their cosine similarity is "
            "undefined. Drop them or use another representation."
        )
    return x / norms


def rank_keys(query: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The copairs rank keys ``1 - cos`` (single precision) of unit rows: ``(n_query, n_candidates)``, lower is better.

    Parameters
    ----------
    query, candidates
        Unit-norm rows (float64 for copairs' values: its cosines are computed in the input precision).

    Returns
    -------
    The float32 keys.
    """
    return 1 - (query @ candidates.T).to(torch.float32)


def average_precision(negative_keys: torch.Tensor, positive_keys: torch.Tensor) -> torch.Tensor:
    """Average precision of every query row from the rank keys of its negatives and positives.

    Parameters
    ----------
    negative_keys
        ``(n, n_neg)`` keys of each row's negatives, ``+inf`` where a column is not one of the row's negatives
        (need not be sorted).
    positive_keys
        ``(n, n_pos)`` keys of each row's positives, ``+inf`` padding after a row's own positives count.

    Returns
    -------
    ``(n,)`` float64 average precisions (NaN for a row without positives).
    """
    neg = torch.sort(negative_keys, dim=1).values
    pos = torch.sort(positive_keys, dim=1).values
    valid = torch.isfinite(pos)
    above = torch.searchsorted(neg.contiguous(), pos.contiguous(), side="left").to(torch.float64)
    i = torch.arange(1, pos.shape[1] + 1, dtype=torch.float64, device=pos.device).expand_as(above)
    precision = torch.where(valid, i / (i + above), torch.zeros((), dtype=torch.float64, device=pos.device))
    n_pos = valid.sum(dim=1)
    return precision.sum(dim=1) / n_pos


def random_ap_null(configs: np.ndarray, null_size: int, generator: torch.Generator) -> torch.Tensor:
    """Null distributions of average precision: random rankings of ``n_pos`` positives among ``n_total``.

    Each configuration gets its own independent draws (as copairs' ``get_null_dists``): the sorted 0-based ranks
    of the positives are a uniform random ``n_pos``-subset of ``range(n_total)`` (:func:`random_subsets`), drawn
    on the CPU, so that a seed gives the same null on every device.

    Parameters
    ----------
    configs
        ``(n_configs, 2)`` integer array of ``(n_pos, n_total)``, ``1 <= n_pos <= n_total``.
    null_size
        Number of draws per configuration.
    generator
        A seeded CPU :class:`torch.Generator`.

    Returns
    -------
    ``(n_configs, null_size)`` float64 null average precisions.
    """
    out = torch.empty((len(configs), null_size), dtype=torch.float64)
    for c, (n_pos, n_total) in enumerate(np.asarray(configs, dtype=np.int64)):
        out[c] = _null_ranks_ap(int(n_pos), int(n_total), null_size, generator)
    return out


def random_subsets(n: int, k: int, n_draws: int, generator: torch.Generator) -> torch.Tensor:
    """``n_draws`` uniform random ``k``-subsets of ``range(n)``, each sorted (CPU, deterministic for a seed).

    By rejection (uniform integers, redrawn where two coincide) when ``k^2 < 2 n``, else as the first ``k``
    entries of random permutations (in blocks of about 4 million values).

    Parameters
    ----------
    n
        Size of the set drawn from.
    k
        Size of each subset, ``1 <= k <= n``.
    n_draws
        Number of subsets.
    generator
        A seeded CPU :class:`torch.Generator`.

    Returns
    -------
    ``(n_draws, k)`` int64 indices, ascending in each row.
    """
    if k * k < 2 * n:
        out = torch.empty((n_draws, k), dtype=torch.int64)
        todo = torch.arange(n_draws)
        while todo.numel():
            draw = torch.floor(torch.rand((todo.numel(), k), generator=generator, dtype=torch.float64) * n)
            draw = torch.sort(draw.to(torch.int64), dim=1).values
            out[todo] = draw
            todo = todo[(draw[:, 1:] == draw[:, :-1]).any(dim=1)]
        return out
    step = max(1, 2**22 // n)
    blocks = [
        torch.argsort(torch.rand((min(step, n_draws - s), n), generator=generator), dim=1)[:, :k]
        for s in range(0, n_draws, step)
    ]
    return torch.sort(torch.cat(blocks), dim=1).values


def _null_ranks_ap(n_pos: int, n_total: int, null_size: int, generator: torch.Generator) -> torch.Tensor:
    ranks = random_subsets(n_total, n_pos, null_size, generator).to(torch.float64)
    return (torch.arange(1, n_pos + 1, dtype=torch.float64) / (ranks + 1)).mean(dim=1)


def exceedance_p_values(observed: np.ndarray, null: torch.Tensor) -> np.ndarray:
    """``(1 + #(null > observed)) / (1 + null_size)`` per row (copairs' mAP p-value; ties do not count).

    Parameters
    ----------
    observed
        ``(n,)`` observed values.
    null
        ``(n, null_size)`` null values of each row.

    Returns
    -------
    ``(n,)`` float64 p-values.
    """
    obs = torch.as_tensor(np.asarray(observed, dtype=np.float64))[:, None]
    above = (null > obs + TIE_TOLERANCE).sum(dim=1).numpy()
    return (1.0 + above) / (1.0 + null.shape[1])


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (``statsmodels`` ``multipletests(method="fdr_bh")``); NaN stays NaN.

    Parameters
    ----------
    p_values
        ``(n,)`` p-values.

    Returns
    -------
    ``(n,)`` q-values, capped at 1.
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if tested.size:
        order = tested[np.argsort(p[tested], kind="mergesort")]
        scaled = p[order] * tested.size / np.arange(1, tested.size + 1)
        q[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return q


def mean_pairwise_cosine(unit: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean cosine similarity over the ``k (k - 1) / 2`` pairs of each group's unit rows.

    Uses ``sum_{i<j} u_i . u_j = (|sum_i u_i|^2 - k) / 2``.

    Parameters
    ----------
    unit
        ``(n, d)`` unit-norm (or zero) rows.
    groups
        ``(n,)`` group index of every row.
    n_groups
        Number of groups.

    Returns
    -------
    ``(n_groups,)`` float64 means (NaN for a group of fewer than 2 rows).
    """
    sums = torch.zeros((n_groups, unit.shape[1]), dtype=unit.dtype, device=unit.device).index_add_(0, groups, unit)
    squares = (unit * unit).sum(dim=1)
    k_norm = torch.zeros(n_groups, dtype=unit.dtype, device=unit.device).index_add_(0, groups, squares)
    k = torch.bincount(groups, minlength=n_groups).to(unit.dtype)
    return (((sums * sums).sum(dim=1) - k_norm) / (k * (k - 1))).to(torch.float64)


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The geomloss Euclidean distances ``sqrt(max(|a|^2 - 2 a.b + |b|^2, 1e-8))`` (batched over leading dims)."""
    squared = (a * a).sum(-1)[..., :, None] - 2 * a @ b.transpose(-1, -2) + (b * b).sum(-1)[..., None, :]
    return torch.sqrt(torch.clamp_min(squared, SQUARED_DISTANCE_FLOOR))


def energy_distances(x: torch.Tensor, groups: torch.Tensor, n_groups: int, reference: torch.Tensor) -> torch.Tensor:
    """Energy distance between each group of rows of ``x`` and the ``reference`` rows (efaar's magnitude).

    Parameters
    ----------
    x
        ``(n, d)`` rows.
    groups
        ``(n,)`` group index of every row, sorted (rows of a group contiguous).
    n_groups
        Number of groups.
    reference
        ``(m, d)`` reference (control) rows, same dtype and device as ``x``.

    Returns
    -------
    ``(n_groups,)`` float64 energy distances ``2 E|x - y| - E|x - x'| - E|y - y'|``.
    """
    k = torch.bincount(groups, minlength=n_groups).to(x.dtype)
    e_yy = _distances(reference, reference).mean()
    cross = torch.zeros(n_groups, dtype=x.dtype, device=x.device)
    block = max(1, 2**25 // max(1, reference.shape[0]))
    for s in range(0, x.shape[0], block):
        rows = slice(s, s + block)
        cross.index_add_(0, groups[rows], _distances(x[rows], reference).sum(dim=1))
    within = torch.zeros(n_groups, dtype=x.dtype, device=x.device)
    starts = torch.cumsum(k.to(torch.int64), 0) - k.to(torch.int64)
    for size in torch.unique(k.to(torch.int64)).tolist():
        members = torch.nonzero(k == size).flatten()
        idx = starts[members][:, None] + torch.arange(size, device=x.device)
        block_x = x[idx]
        within[members] = _distances(block_x, block_x).sum(dim=(1, 2))
    e_xy = cross / (k * reference.shape[0])
    return (2 * e_xy - within / (k * k) - e_yy).to(torch.float64)


def subset_energy_distances(reference: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Energy distance between each drawn subset of the reference rows and the rest of them (a null of magnitude).

    Parameters
    ----------
    reference
        ``(m, d)`` reference rows.
    draws
        ``(n_draws, k)`` distinct row indices of each subset, ``k < m`` (same device as ``reference``).

    Returns
    -------
    ``(n_draws,)`` float64 energy distances between the ``k`` drawn rows and the ``m - k`` others.
    """
    distances = _distances(reference, reference)
    m, k = distances.shape[0], draws.shape[1]
    within = distances[draws[:, :, None], draws[:, None, :]].sum(dim=(1, 2))
    cross = distances.sum(dim=1)[draws].sum(dim=1) - within
    rest = distances.sum() - 2 * cross - within
    return (2 * cross / (k * (m - k)) - within / (k * k) - rest / ((m - k) ** 2)).to(torch.float64)
