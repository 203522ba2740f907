"""Perturbation signal: consistency and magnitude of each perturbation's replicates (efaar_benchmarking 1.0).

The statistics are those of ``efaar_benchmarking.benchmarking.pert_signal_consistency_benchmark`` /
``pert_signal_magnitude_benchmark``, vectorised in torch (CPU or GPU): the mean pairwise cosine of all perturbations
from one scatter-add of unit rows, the energy distances to the controls from one distance matrix per block of
replicates.

The default null (``null="permutation"``, see docs/evaluation.md, "How the p-values are calibrated") is a
within-batch permutation test: each draw puts the perturbation's replicates back among the held-out controls of
their batches and draws as many rows from each batch, so that a draw has the replicates' batch layout. Under the
null hypothesis (the replicates are exchangeable with the controls of their batches) the p-value
``(1 + #(null >= value)) / (1 + null_size)`` is valid for any number of controls, batch effects and corrections,
provided no control of the null entered the fit of a correction (``fitted_key``). ``null="efaar"`` gives efaar's
null and p-values (differences, on purpose: the control sample is drawn with ``rng``, efaar's ``DataFrame.sample``
has no seed; null perturbations with too few replicates are left out of the null, efaar keeps them as NaN, which
still count in the length of the null; without ``null_perturbations`` the null is drawn from the controls for each
replicate count).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from scsemiclip._core import (
    energy_distances,
    mean_pairwise_cosine,
    random_subsets,
    resolve_device,
    subset_energy_distances,
    unit_rows,
)
from scsemiclip._core._ranking import TIE_TOLERANCE, _distances
from scsemiclip._docs import doc_params
from scsemiclip._keys import canonical_keys, canonical_value
from scsemiclip._utils import (
    RNGLike,
    Timer,
    check_obs_keys,
    control_mask,
    get_rep,
    resolve_rng,
    torch_seed,
)
from scsemiclip._validate import check_choice, check_int, check_key

from ._map import check_significance, screen_batches, significance_columns, store_table

if TYPE_CHECKING:
    from anndata import AnnData

#: Fewest replicates efaar scores (the ``min_replicates`` defaults): 2 for consistency, 5 for magnitude.
MIN_REPLICATES = {"consistency": 2, "magnitude": 5}
#: The nulls of the perturbation signal: the within-batch permutation test (calibrated) and efaar's.
NULLS = ("permutation", "efaar")
#: Fewest held-out controls the permutation null needs in every batch that holds a scored perturbation.
MIN_NULL_CONTROLS = 2
#: Elements of a block of distances to the magnitude's reference computed at once.
_BLOCK_ELEMENTS = 2**24

doc_signal = """\
adata
    Annotated data, one row per profile (replicate), controls included.
use_rep
    Key of the embedding in ``adata.obsm`` (``"X"`` for ``adata.X``).
perturbation_key
    Column of ``adata.obs`` with the perturbation labels.
control_key
    Boolean column of ``adata.obs`` marking the controls (never scored).
batch_key
    Column of ``adata.obs`` with the batch: the permutation null draws each replicate's stand-ins from the controls
    of its batch (``None``: one batch)."""

doc_null_perturbations = """\
null_perturbations
    Labels of negative-control perturbations (e.g. genes not expressed in the cell line): the null is the
    statistic of each of them (efaar's ``neg_ctrl_perts``; they are not scored). ``None``: the null of a
    perturbation is drawn from the controls (see ``null``)."""

doc_signal_options = """\
null
    ``"permutation"`` (default, calibrated): without ``null_perturbations``, ``null_size`` draws that put the
    perturbation's replicates back among the held-out controls of their batches and draw as many rows from each
    batch; p-value ``(1 + #(null >= value)) / (1 + n_null)``. It needs 2 held-out
    controls in every batch with a scored perturbation. ``"efaar"``: efaar's null (random controls of any batch
    per replicate count) and p-value (can be 0), for comparison with efaar; it is not calibrated when a correction
    was fitted on the same controls or the batches differ.
fitted_key
    Boolean column of ``adata.obs`` marking the controls a correction of the embedding was fitted on (as
    :func:`~scsemiclip.tl.evaluate_map` cross-fits): they never enter the null (a correction makes its own
    controls look more alike than any other profile); ``None``: no control was used to fit a correction.
null_size
    Number of null draws per perturbation (``"permutation"``) or per replicate count (``"efaar"``) when
    ``null_perturbations`` is ``None``.
fdr
    False discovery rate of the ``significant`` flag (Benjamini-Hochberg q-value below it).
rng
    Seed or :class:`numpy.random.Generator` of the random draws (and of the magnitude's control sample).
accelerator
    Where the statistics are computed: ``"auto"`` (a GPU when torch sees one), ``"cpu"``, ``"gpu"`` ...
key_added
    Key of the result in ``adata.uns``."""

doc_signal_returns = """\
``p_value``
    ``(1 + #(null >= value)) / (1 + n_null)``; with ``null="efaar"`` efaar's share of the null at or above the
    value (consistency) / above it (magnitude).
``q_value``
    Benjamini-Hochberg adjusted p-value.
``significant``
    ``q_value < fdr``.
``n_replicates``
    Number of profiles of the perturbation."""


class _Profiles:
    """The rows of an AnnData grouped by perturbation label (controls apart), on a torch device."""

    def __init__(
        self,
        adata: AnnData,
        *,
        use_rep: str,
        perturbation_key: str,
        control_key: str | None,
        batch_key: str | None,
        fitted_key: str | None,
        accelerator: str,
    ) -> None:
        check_key(perturbation_key, name="perturbation_key")
        check_key(control_key, name="control_key", none_ok=True)
        check_key(batch_key, name="batch_key", none_ok=True)
        check_key(fitted_key, name="fitted_key", none_ok=True)
        x = get_rep(adata, use_rep)
        check_obs_keys(adata, [perturbation_key])
        self.is_control = (
            control_mask(adata, control_key) if control_key is not None else np.zeros(adata.n_obs, dtype=bool)
        )
        self.fitted = control_mask(adata, fitted_key) if fitted_key is not None else np.zeros(adata.n_obs, dtype=bool)
        if (self.fitted & ~self.is_control).any():
            raise ValueError(
                f"adata.obs[{fitted_key!r}] (`fitted_key`) marks rows that are not controls of `control_key`; it must "
                "mark the controls a correction was fitted on."
            )
        self.codes, self.batches = screen_batches(adata, batch_key)
        self.batch_key = batch_key
        labels, missing = canonical_keys(adata.obs[perturbation_key])
        bad = np.flatnonzero(missing & ~self.is_control)
        if bad.size:
            raise ValueError(
                f"adata.obs[{perturbation_key!r}] is missing in {bad.size} non-control row(s) (first: "
                f"{adata.obs_names[bad[0]]!r})."
            )
        self.labels = labels
        self.device = resolve_device(accelerator)
        self.x = torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.device)
        self.perturbation_key = perturbation_key
        self.control_key = control_key
        self.obs_names = np.asarray(adata.obs_names.astype(str), dtype=object)

    def groups(self, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Rows of the non-control perturbations ``names`` (sorted by group), their group index and group sizes."""
        codes = pd.Index(names).get_indexer(self.labels)
        codes[self.is_control] = -1
        rows = np.flatnonzero(codes >= 0)
        rows = rows[np.argsort(codes[rows], kind="stable")]
        sizes = np.bincount(codes[rows], minlength=len(names))
        return torch.as_tensor(rows, device=self.device), torch.as_tensor(codes[rows], device=self.device), sizes

    def split(self, null_perturbations: Sequence[str] | None, minimum: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Perturbations to score (at least ``minimum`` replicates), null perturbations, and the unscored ones."""
        if self.is_control.all():
            raise ValueError(
                f"Every row of adata is a control (adata.obs[{self.control_key!r}]): there is no perturbation to score."
            )
        perts = pd.unique(self.labels[~self.is_control])
        null = []
        if null_perturbations is not None:
            if isinstance(null_perturbations, str) or not isinstance(null_perturbations, Sequence | np.ndarray):
                raise TypeError(
                    "`null_perturbations` must be a list of perturbation labels, got "
                    f"{type(null_perturbations).__name__}."
                )
            null = [canonical_value(p) for p in null_perturbations]  # 29.0 names the label 29
            absent = sorted(set(null) - set(perts))
            if absent:
                raise ValueError(
                    f"`null_perturbations` names {len(absent)} label(s) that are not non-control perturbations of "
                    f"adata.obs[{self.perturbation_key!r}] (first: {absent[0]!r})."
                )
        candidates = np.sort(np.array([p for p in perts if p not in set(null)], dtype=object))
        counts = pd.Series(self.labels[~self.is_control]).value_counts()
        enough = counts.reindex(candidates).to_numpy() >= minimum
        if not enough.any():
            raise ValueError(
                f"No replicates: no perturbation of adata.obs[{self.perturbation_key!r}] has the {minimum} or more "
                "profiles this statistic needs."
            )
        return candidates[enough], np.array(null, dtype=object), [str(p) for p in candidates[~enough]]

    def controls(self, metric: str) -> np.ndarray:
        """Positions of the control rows; an error without any."""
        if self.control_key is not None and self.is_control.any():
            return np.flatnonzero(self.is_control)
        what = "no `control_key`" if self.control_key is None else f"adata.obs[{self.control_key!r}] marks no row"
        if metric == "magnitude":
            raise ValueError(
                f"No controls ({what}): the magnitude is the distance to the controls, which `null_perturbations` "
                "does not replace; mark the controls in `control_key` (`scsemiclip.pp.mark_controls`)."
            )
        raise ValueError(
            f"No controls ({what}): the null drawn from the controls needs them; mark them in `control_key` or give "
            "negative-control perturbations in `null_perturbations`."
        )

    def split_reference(self, pool: np.ndarray, max_controls: int, generator: np.random.Generator) -> np.ndarray:
        """The magnitude's reference controls: the fitted ones, else a random half of each batch's; at most ``max_controls``."""
        if self.fitted.any():
            reference = np.flatnonzero(self.fitted)
        else:
            reference = np.concatenate(
                [
                    np.sort(generator.choice(rows, size=rows.size // 2, replace=False))
                    for rows in (pool[self.codes[pool] == b] for b in range(len(self.batches)))
                ]
            )
        if reference.size > max_controls:
            reference = np.sort(generator.choice(reference, size=max_controls, replace=False))
        return reference

    def null_pools(self, held_out: np.ndarray, scored_rows: np.ndarray) -> list[np.ndarray]:
        """The held-out controls of every batch, checked: at least :data:`MIN_NULL_CONTROLS` where a perturbation is."""
        pools = [held_out[self.codes[held_out] == b] for b in range(len(self.batches))]
        needed = np.unique(self.codes[scored_rows])
        short = [b for b in needed if pools[b].size < MIN_NULL_CONTROLS]
        if short:
            b = short[0]
            where = (
                "the data"
                if self.batch_key is None
                else f"batch {self.batches.tolist()[b]!r} of adata.obs[{self.batch_key!r}]"
            )
            raise ValueError(
                f"{where} has {pools[b].size} control(s) for the permutation null (held out of `fitted_key` and of the "
                f"magnitude's reference); it needs at least {MIN_NULL_CONTROLS} in every batch with a scored "
                f"perturbation ({len(short)} batch(es) short). Add controls, merge small batches, or use "
                "`null_perturbations`."
            )
        return pools


def _layout_draws(
    rows: np.ndarray, codes: np.ndarray, pools: list[np.ndarray], null_size: int, generator: torch.Generator
) -> np.ndarray:
    """``(n, null_size, k)`` rows: each draw replaces the ``k`` rows of a perturbation by as many rows of each batch.

    ``rows`` is ``(n, k)``, the rows of ``n`` perturbations. In every batch of a perturbation the candidates are the
    batch's held-out controls (``pools``) and the perturbation's own rows there (an exact permutation test: the
    observed arrangement is one of the draws). Vectorised over the perturbations that have the same number of rows
    in a batch.
    """
    n, k = rows.shape
    order = np.argsort(codes[rows], axis=1, kind="stable")
    rows = np.take_along_axis(rows, order, axis=1)
    batch = codes[rows]
    # every run of equal batch codes is a cell (perturbation, batch): its start, length and batch
    start = np.ones((n, k), dtype=bool)
    start[:, 1:] = batch[:, 1:] != batch[:, :-1]
    cell_p, cell_start = np.nonzero(start)
    bounds = np.append(cell_start[1:], k)
    cell_len = np.where(np.append(cell_p[1:], n) == cell_p, bounds, k) - cell_start
    cell_batch = batch[cell_p, cell_start]
    out = np.empty((n, null_size, k), dtype=np.int64)
    for b, c in np.unique(np.stack([cell_batch, cell_len], axis=1), axis=0).tolist():
        cells = np.flatnonzero((cell_batch == b) & (cell_len == c))
        pool = pools[b]
        own = rows[cell_p[cells][:, None], cell_start[cells][:, None] + np.arange(c)]
        candidates = np.concatenate([np.broadcast_to(pool, (cells.size, pool.size)), own], axis=1)
        pick = random_subsets(pool.size + c, c, cells.size * null_size, generator).numpy()
        pick = pick.reshape(cells.size, null_size * c)
        drawn = np.take_along_axis(candidates, pick, axis=1).reshape(cells.size, null_size, c)
        out[cell_p[cells][:, None], :, cell_start[cells][:, None] + np.arange(c)] = drawn.transpose(0, 2, 1)
    return out


def _right_tail_p_values(values: np.ndarray, nulls: np.ndarray) -> np.ndarray:
    """``(1 + #(null >= value)) / (1 + n_null)`` per row of ``nulls`` (ties within :data:`TIE_TOLERANCE` count)."""
    at_least = (nulls >= values[:, None] - TIE_TOLERANCE * np.maximum(1.0, np.abs(values[:, None]))).sum(axis=1)
    return (1.0 + at_least) / (1.0 + nulls.shape[1])


def _efaar_p_values(
    values: np.ndarray, sizes: np.ndarray, nulls: dict[int | None, np.ndarray], side: str
) -> np.ndarray:
    """The efaar p-value ``1 - searchsorted(sorted null, value, side) / len(null)`` against each replicate count's null.

    ``nulls`` maps a replicate count to its sorted null, or ``None`` to the one null of every perturbation.
    """
    out = np.empty(values.size)
    for size, null in nulls.items():
        rows = np.arange(values.size) if size is None else np.flatnonzero(sizes == size)
        out[rows] = 1 - np.searchsorted(null, values[rows], side=side) / null.size
    return out


def _signal_table(
    adata: AnnData,
    *,
    metric: str,
    min_replicates: int,
    use_rep: str,
    perturbation_key: str,
    control_key: str | None,
    batch_key: str | None,
    null_perturbations: Sequence[str] | None,
    null: str,
    fitted_key: str | None,
    null_size: int,
    fdr: float,
    rng: RNGLike,
    accelerator: str,
    key_added: str,
    max_controls: int | None = None,
) -> pd.DataFrame:
    """Both signal metrics: the statistic per perturbation, its null, the p-values, BH, the stored table."""
    null_size, fdr = check_significance(null_size, fdr)
    check_choice(null, name="null", choices=NULLS)
    if null == "efaar" and fitted_key is not None:
        raise ValueError("`fitted_key` applies to `null='permutation'`; efaar's null takes no held-out controls.")
    timer = Timer(f"perturbation {metric} of {use_rep!r}")
    data = _Profiles(
        adata,
        use_rep=use_rep,
        perturbation_key=perturbation_key,
        control_key=control_key,
        batch_key=batch_key if null == "permutation" else None,
        fitted_key=fitted_key,
        accelerator=accelerator,
    )
    names, null_names, unscored = data.split(null_perturbations, min_replicates)
    generator = resolve_rng(rng)
    params: dict[str, object] = {
        "use_rep": use_rep,
        "perturbation_key": perturbation_key,
        "control_key": control_key,
        "batch_key": batch_key,
        "null": null,
        "fitted_key": fitted_key,
        "min_replicates": min_replicates,
    }
    needs_controls = metric == "magnitude" or null_perturbations is None
    controls = data.controls(metric) if needs_controls else np.zeros(0, dtype=np.int64)
    held_out = controls[~data.fitted[controls]]
    if metric == "consistency":
        x = unit_rows(data.x, what=f"obsm[{use_rep!r}]")

        def statistic(rows: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
            return mean_pairwise_cosine(x[rows], groups, n)

        reference = None
    else:
        x = data.x
        if null == "permutation" and null_perturbations is None:
            reference_rows = data.split_reference(controls, max_controls, generator)
            held_out = np.setdiff1d(held_out, reference_rows)
        else:  # the reference is a sample of the (fitted) controls; efaar's null draws from it
            reference_rows = controls[data.fitted[controls]] if data.fitted.any() else controls
            if reference_rows.size > max_controls:
                reference_rows = np.sort(generator.choice(reference_rows, size=max_controls, replace=False))
            held_out = reference_rows
        reference = x[torch.as_tensor(reference_rows, device=data.device)]
        params.update(max_controls=max_controls, reference_controls=list(data.obs_names[reference_rows]))

        def statistic(rows: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
            return energy_distances(x[rows], groups, n, reference)

    rows, groups, sizes = data.groups(names)
    values = statistic(rows, groups, len(names)).cpu().numpy()
    if null_perturbations is not None:
        null_rows, null_groups, null_sizes = data.groups(null_names)
        null_values = statistic(null_rows, null_groups, len(null_names)).cpu().numpy()
        null_values = np.sort(null_values[null_sizes >= min_replicates])
        if not null_values.size:
            raise ValueError(f"No null perturbation has the {min_replicates} or more profiles the {metric} needs.")
        n_null: object = int(null_values.size)
        if null == "efaar":
            p_values = _efaar_p_values(
                values, sizes, {None: null_values}, side="left" if metric == "consistency" else "right"
            )
        else:
            p_values = _right_tail_p_values(values, np.broadcast_to(null_values, (values.size, null_values.size)))
    elif null == "efaar":
        nulls = _efaar_nulls(data, metric, x, held_out, reference, sizes, null_size, generator, max_controls)
        n_null = {str(k): int(v.size) for k, v in nulls.items()}
        p_values = _efaar_p_values(values, sizes, nulls, side="left" if metric == "consistency" else "right")
    else:
        draw_generator = torch.Generator().manual_seed(torch_seed(generator))
        pools = data.null_pools(held_out, rows.cpu().numpy())
        nulls = _permutation_nulls(
            data, metric, x, reference, rows.cpu().numpy(), sizes, pools, null_size, draw_generator
        )
        n_null = null_size
        p_values = _right_tail_p_values(values, nulls)
    params.update(null_perturbations=list(null_names), null_size=null_size, fdr=fdr, n_null=n_null, unscored=unscored)
    index = pd.Index(names.astype(str), name=perturbation_key)
    table = pd.DataFrame({"value": values, **significance_columns(p_values, fdr), "n_replicates": sizes}, index=index)
    store_table(adata, key_added, table, params)
    timer.done(f"{int(table['significant'].sum())} of {len(table)} perturbations significant, added uns[{key_added!r}]")
    return table


def _efaar_nulls(
    data: _Profiles,
    metric: str,
    x: torch.Tensor,
    pool: np.ndarray,
    reference: torch.Tensor | None,
    sizes: np.ndarray,
    null_size: int,
    generator: np.random.Generator,
    max_controls: int | None,
) -> dict[int | None, np.ndarray]:
    """The efaar null: per replicate count, ``null_size`` random draws of that many controls (sorted values)."""
    draw_generator = torch.Generator().manual_seed(torch_seed(generator))
    largest = pool.size - (metric == "magnitude")  # magnitude: a draw is compared with the rest
    pool_t = torch.as_tensor(pool, device=data.device)
    nulls: dict[int | None, np.ndarray] = {}
    for size in np.unique(sizes).tolist():
        if size > largest:
            n_controls = int(data.is_control.sum())
            advice = (
                f"raise `max_controls` (now {max_controls}, {n_controls} controls exist)"
                if metric == "magnitude" and max_controls is not None and max_controls < n_controls
                else "add controls"
            )
            raise ValueError(
                f"A perturbation has {size} replicates but efaar's null draws them from {pool.size} controls; "
                f"{advice}, use `null='permutation'` or pass `null_perturbations`."
            )
        draws = random_subsets(pool.size, size, null_size, draw_generator).to(data.device)
        if metric == "consistency":
            which = torch.arange(null_size, device=data.device).repeat_interleave(size)
            null = mean_pairwise_cosine(x[pool_t[draws.flatten()]], which, null_size)
        else:
            null = subset_energy_distances(reference, draws)
        nulls[size] = np.sort(null.cpu().numpy())
    return nulls


def _permutation_nulls(
    data: _Profiles,
    metric: str,
    x: torch.Tensor,
    reference: torch.Tensor | None,
    rows: np.ndarray,
    sizes: np.ndarray,
    pools: list[np.ndarray],
    null_size: int,
    generator: torch.Generator,
) -> np.ndarray:
    """``(n_perturbations, null_size)`` statistics of within-batch permutations of each perturbation's replicates."""
    out = np.empty((sizes.size, null_size))
    if metric == "magnitude":
        # each row's summed distance to the reference, once: a draw's cross term is the sum over its rows
        candidates = np.union1d(rows, np.concatenate(pools))
        cross = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        step = max(1, _BLOCK_ELEMENTS // max(1, reference.shape[0] * x.shape[1]))
        for s in range(0, candidates.size, step):
            part = torch.as_tensor(candidates[s : s + step], device=x.device)
            cross[part] = _distances(x[part], reference).sum(dim=1)
        e_yy = _distances(reference, reference).mean()
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for k in np.unique(sizes).tolist():
        members = np.flatnonzero(sizes == k)
        step = max(1, _BLOCK_ELEMENTS // (null_size * k * max(k, x.shape[1])))
        for s in range(0, members.size, step):
            chunk = members[s : s + step]
            draws = _layout_draws(rows[starts[chunk][:, None] + np.arange(k)], data.codes, pools, null_size, generator)
            index = torch.as_tensor(draws.reshape(-1, k), device=x.device)
            block = x[index]
            if metric == "consistency":  # mean_pairwise_cosine's identity, on equal-sized groups
                total = block.sum(dim=1)
                null = ((total * total).sum(dim=1) - (block * block).sum(dim=(1, 2))) / (k * (k - 1))
            else:
                within = _distances(block, block).sum(dim=(1, 2))
                null = 2 * cross[index].sum(dim=1) / (k * reference.shape[0]) - within / (k * k) - e_yy
            out[chunk] = null.reshape(chunk.size, null_size).cpu().numpy()
    return out


@doc_params(
    doc_signal=doc_signal,
    doc_null_perturbations=doc_null_perturbations,
    doc_signal_options=doc_signal_options,
    doc_signal_returns=doc_signal_returns,
)
def perturbation_consistency(
    adata: AnnData,
    *,
    use_rep: str,
    perturbation_key: str = "perturbation",
    control_key: str | None = "is_control",
    batch_key: str | None = "batch",
    null_perturbations: Sequence[str] | None = None,
    min_replicates: int = MIN_REPLICATES["consistency"],
    null: str = "permutation",
    fitted_key: str | None = None,
    null_size: int = 1000,
    fdr: float = 0.05,
    rng: RNGLike = 0,
    accelerator: str = "auto",
    key_added: str = "perturbation_consistency",
) -> pd.DataFrame:
    """Perturbation signal consistency: the mean pairwise cosine similarity of each perturbation's replicates.

    The value equals ``efaar_benchmarking.benchmarking.pert_signal_consistency_benchmark``'s (its
    ``pert_signal_consistency_metric`` on every perturbation with at least 2 replicates); with ``null="efaar"`` so
    do the p-values (against the sorted null of the same statistic) on the same profiles and null perturbations.
    The default null is a within-batch permutation test, calibrated on pure noise with batch effects (see
    docs/evaluation.md, "How the p-values are calibrated").

    Parameters
    ----------
    {doc_signal}
    {doc_null_perturbations}
    min_replicates
        Fewest profiles of a scored (or null) perturbation (efaar: 2, at least 2).
    {doc_signal_options}

    Returns
    -------
    A table indexed by perturbation (sorted labels; perturbations with fewer than ``min_replicates`` profiles are
    not scored), columns

    ``value``
        Mean cosine similarity over the pairs of the perturbation's replicates.
    {doc_signal_returns}

    Also writes ``adata.uns[key_added]`` = ``{{"table": <the table>, "params": {{use_rep, perturbation_key,
    control_key, batch_key, null, fitted_key, min_replicates, null_perturbations, null_size, fdr, n_null,
    unscored}}, "version": ...}}``.

    Raises
    ------
    ValueError
        When no perturbation has ``min_replicates`` profiles, without controls (``null_perturbations=None``), for
        unknown null perturbations, for a batch with fewer than 2 held-out controls (permutation null), or for a
        profile of norm 0.
    """
    return _signal_table(
        adata,
        metric="consistency",
        min_replicates=check_int(min_replicates, name="min_replicates", minimum=2),
        use_rep=use_rep,
        perturbation_key=perturbation_key,
        control_key=control_key,
        batch_key=batch_key,
        null_perturbations=null_perturbations,
        null=null,
        fitted_key=fitted_key,
        null_size=null_size,
        fdr=fdr,
        rng=rng,
        accelerator=accelerator,
        key_added=key_added,
    )


@doc_params(
    doc_signal=doc_signal,
    doc_null_perturbations=doc_null_perturbations,
    doc_signal_options=doc_signal_options,
    doc_signal_returns=doc_signal_returns,
)
def perturbation_magnitude(
    adata: AnnData,
    *,
    use_rep: str,
    perturbation_key: str = "perturbation",
    control_key: str = "is_control",
    batch_key: str | None = "batch",
    null_perturbations: Sequence[str] | None = None,
    max_controls: int = 1000,
    min_replicates: int = MIN_REPLICATES["magnitude"],
    null: str = "permutation",
    fitted_key: str | None = None,
    null_size: int = 1000,
    fdr: float = 0.05,
    rng: RNGLike = 0,
    accelerator: str = "auto",
    key_added: str = "perturbation_magnitude",
) -> pd.DataFrame:
    """Perturbation signal magnitude: the energy distance between each perturbation's replicates and the controls.

    The reference is a random sample (``rng``) of up to ``max_controls`` controls; the energy distance is
    ``2 E|x - y| - E|x - x'| - E|y - y'|`` (``geomloss.SamplesLoss("energy")`` times 2, its distance floor
    included). The value equals ``efaar_benchmarking.benchmarking.pert_signal_magnitude_benchmark``'s (its
    ``pert_signal_magnitude_metric`` on every perturbation with at least 5 replicates) on the same profiles and
    control sample; with ``null="efaar"`` so do the p-values (a null draw is ``k`` controls of the reference,
    compared with the rest of it). With the default permutation null, the reference is the ``fitted_key`` controls
    or else a random half of each batch's controls, and the other controls form the null: a perturbation's
    replicates are permuted with them within batches, each draw compared with the same reference (calibrated, see
    docs/evaluation.md, "How the p-values are calibrated"). Every batch with a scored perturbation then needs at
    least 4 controls (2 in the reference, 2 in the null).

    Parameters
    ----------
    {doc_signal}
    {doc_null_perturbations}
    max_controls
        Largest number of controls in the reference sample (a random sample of them beyond it).
    min_replicates
        Fewest profiles of a scored (or null) perturbation (efaar: 5, at least 2).
    {doc_signal_options}

    Returns
    -------
    A table indexed by perturbation (sorted labels; perturbations with fewer than ``min_replicates`` profiles are
    not scored), columns

    ``value``
        Energy distance between the perturbation's replicates and the reference controls.
    {doc_signal_returns}

    Also writes ``adata.uns[key_added]`` = ``{{"table": <the table>, "params": {{use_rep, perturbation_key,
    control_key, batch_key, null, fitted_key, min_replicates, max_controls, reference_controls, null_perturbations,
    null_size, fdr, n_null, unscored}}, "version": ...}}`` (``reference_controls``: the obs names of the control
    sample).

    Raises
    ------
    ValueError
        When no perturbation has ``min_replicates`` profiles, without controls, for unknown null perturbations, or
        for a batch with fewer than 2 controls outside the reference (permutation null).
    """
    return _signal_table(
        adata,
        metric="magnitude",
        min_replicates=check_int(min_replicates, name="min_replicates", minimum=2),
        use_rep=use_rep,
        perturbation_key=perturbation_key,
        control_key=control_key,
        batch_key=batch_key,
        null_perturbations=null_perturbations,
        null=null,
        fitted_key=fitted_key,
        null_size=null_size,
        fdr=fdr,
        rng=rng,
        accelerator=accelerator,
        key_added=key_added,
        max_controls=check_int(max_controls, name="max_controls", minimum=2),
    )
