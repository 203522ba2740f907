"""Perturbation signal: consistency and magnitude of each perturbation's replicates (efaar_benchmarking 1.0; SPEC §6).

``efaar_benchmarking.benchmarking.pert_signal_consistency_benchmark`` / ``pert_signal_magnitude_benchmark`` with
the same statistics and p-values, vectorised in torch (CPU or GPU): the mean pairwise cosine of all perturbations
from one scatter-add of unit rows, the energy distances to the controls from one distance matrix per block of
replicates. Differences from efaar, on purpose: the control sample is drawn with ``rng`` (efaar's
``DataFrame.sample`` has no seed), null perturbations with too few replicates are left out of the null (efaar
keeps them as NaN, which still count in the length of the null), and without ``null_perturbations`` the null is
drawn from the controls for each replicate count.
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
from scsemiclip._docs import doc_params
from scsemiclip._keys import canonical_keys
from scsemiclip._utils import RNGLike, Timer, check_obs_keys, control_mask, get_rep, resolve_rng, torch_seed
from scsemiclip._validate import check_int, check_key

from ._map import check_significance, significance_columns, store_table

if TYPE_CHECKING:
    from anndata import AnnData

#: Fewest replicates efaar scores (the ``min_replicates`` defaults): 2 for consistency, 5 for magnitude.
MIN_REPLICATES = {"consistency": 2, "magnitude": 5}

doc_signal = """\
adata
    Annotated data, one row per profile (replicate), controls included.
use_rep
    Key of the embedding in ``adata.obsm`` (``"X"`` for ``adata.X``).
perturbation_key
    Column of ``adata.obs`` with the perturbation labels.
control_key
    Boolean column of ``adata.obs`` marking the controls (never scored)."""

doc_null_perturbations = """\
null_perturbations
    Labels of negative-control perturbations (e.g. genes not expressed in the cell line): the null is the
    statistic of each of them (efaar's ``neg_ctrl_perts``; they are not scored). ``None``: the null of a
    perturbation with ``k`` replicates is the statistic of ``null_size`` random draws of ``k`` controls."""

doc_signal_options = """\
null_size
    Number of control draws per replicate count when ``null_perturbations`` is ``None``.
fdr
    False discovery rate of the ``significant`` flag (Benjamini-Hochberg q-value below it).
rng
    Seed or :class:`numpy.random.Generator` of the random control draws (and of the magnitude's control sample).
accelerator
    Where the statistics are computed: ``"auto"`` (a GPU when torch sees one), ``"cpu"``, ``"gpu"`` ...
key_added
    Key of the result in ``adata.uns``."""

doc_signal_returns = """\
``p_value``
    Share of the null at or above the value (consistency) / above it (magnitude), as efaar.
``q_value``
    Benjamini-Hochberg adjusted p-value.
``significant``
    ``q_value < fdr``.
``n_replicates``
    Number of profiles of the perturbation."""


class _Profiles:
    """The rows of an AnnData grouped by perturbation label (controls apart), on a torch device."""

    def __init__(
        self, adata: AnnData, *, use_rep: str, perturbation_key: str, control_key: str | None, accelerator: str
    ) -> None:
        check_key(perturbation_key, name="perturbation_key")
        check_key(control_key, name="control_key", none_ok=True)
        x = get_rep(adata, use_rep)
        check_obs_keys(adata, [perturbation_key])
        self.is_control = (
            control_mask(adata, control_key) if control_key is not None else np.zeros(adata.n_obs, dtype=bool)
        )
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
        perts = pd.unique(self.labels[~self.is_control])
        null = []
        if null_perturbations is not None:
            if isinstance(null_perturbations, str) or not isinstance(null_perturbations, Sequence | np.ndarray):
                raise TypeError(
                    "`null_perturbations` must be a list of perturbation labels, got "
                    f"{type(null_perturbations).__name__}."
                )
            null = [str(p) for p in null_perturbations]
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

    def controls(self, control_key: str | None) -> torch.Tensor:
        """Indices of the control rows; an error without any."""
        if control_key is None or not self.is_control.any():
            raise ValueError(
                "No controls: the null drawn from controls (`null_perturbations=None`) and the magnitude's reference "
                "need rows marked in `control_key` (or pass `null_perturbations`)."
            )
        return torch.as_tensor(np.flatnonzero(self.is_control), device=self.device)


def _p_values(values: np.ndarray, sizes: np.ndarray, nulls: dict[int | None, np.ndarray], side: str) -> np.ndarray:
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
    null_perturbations: Sequence[str] | None,
    null_size: int,
    fdr: float,
    rng: RNGLike,
    accelerator: str,
    key_added: str,
    max_controls: int | None = None,
) -> pd.DataFrame:
    """Both signal metrics: the statistic per perturbation, its null, efaar's p-values, BH, the stored table."""
    null_size, fdr = check_significance(null_size, fdr)
    timer = Timer(f"perturbation {metric} of {use_rep!r}")
    data = _Profiles(
        adata, use_rep=use_rep, perturbation_key=perturbation_key, control_key=control_key, accelerator=accelerator
    )
    names, null_names, unscored = data.split(null_perturbations, min_replicates)
    generator = resolve_rng(rng)
    params: dict[str, object] = {
        "use_rep": use_rep,
        "perturbation_key": perturbation_key,
        "control_key": control_key,
        "min_replicates": min_replicates,
    }
    if metric == "consistency":
        x = unit_rows(data.x, what=f"obsm[{use_rep!r}]")

        def statistic(rows: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
            return mean_pairwise_cosine(x[rows], groups, n)

        pool = data.controls(control_key) if null_perturbations is None else None
    else:
        x, pool = data.x, data.controls(control_key)
        if pool.numel() > max_controls:
            pick = np.sort(generator.choice(pool.numel(), size=max_controls, replace=False))
            pool = pool[torch.as_tensor(pick, device=data.device)]
        reference = x[pool]
        params.update(max_controls=max_controls, reference_controls=list(data.obs_names[pool.cpu().numpy()]))

        def statistic(rows: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
            return energy_distances(x[rows], groups, n, reference)

    rows, groups, sizes = data.groups(names)
    values = statistic(rows, groups, len(names)).cpu().numpy()
    nulls: dict[int | None, np.ndarray] = {}
    if null_perturbations is not None:
        null_rows, null_groups, null_sizes = data.groups(null_names)
        null = statistic(null_rows, null_groups, len(null_names)).cpu().numpy()
        null = np.sort(null[null_sizes >= min_replicates])
        if not null.size:
            raise ValueError(f"No null perturbation has the {min_replicates} or more profiles the {metric} needs.")
        nulls[None] = null
    else:
        draw_generator = torch.Generator().manual_seed(torch_seed(generator))
        largest = pool.numel() - (metric == "magnitude")  # magnitude: a draw is compared with the rest
        for size in np.unique(sizes).tolist():
            if size > largest:
                raise ValueError(
                    f"A perturbation has {size} replicates but there are only {pool.numel()} controls to draw its "
                    "null from; pass `null_perturbations`."
                )
            draws = random_subsets(pool.numel(), size, null_size, draw_generator).to(data.device)
            if metric == "consistency":
                which = torch.arange(null_size, device=data.device).repeat_interleave(size)
                null = statistic(pool[draws.flatten()], which, null_size)
            else:
                null = subset_energy_distances(reference, draws)
            nulls[size] = np.sort(null.cpu().numpy())
    params.update(
        null_perturbations=list(null_names),
        null_size=null_size,
        fdr=fdr,
        n_null={("all" if k is None else str(k)): int(v.size) for k, v in nulls.items()},
        unscored=unscored,
    )
    p_values = _p_values(values, sizes, nulls, side="left" if metric == "consistency" else "right")
    index = pd.Index(names.astype(str), name=perturbation_key)
    table = pd.DataFrame({"value": values, **significance_columns(p_values, fdr), "n_replicates": sizes}, index=index)
    store_table(adata, key_added, table, params)
    timer.done(f"{int(table['significant'].sum())} of {len(table)} perturbations significant, added uns[{key_added!r}]")
    return table


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
    null_perturbations: Sequence[str] | None = None,
    min_replicates: int = MIN_REPLICATES["consistency"],
    null_size: int = 1000,
    fdr: float = 0.05,
    rng: RNGLike = 0,
    accelerator: str = "auto",
    key_added: str = "perturbation_consistency",
) -> pd.DataFrame:
    """Perturbation signal consistency: the mean pairwise cosine similarity of each perturbation's replicates.

    Equal to ``efaar_benchmarking.benchmarking.pert_signal_consistency_benchmark`` (its
    ``pert_signal_consistency_metric`` on every perturbation with at least 2 replicates, p-value against the
    sorted null of the same statistic) on the same profiles and null perturbations.

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
    control_key, min_replicates, null_perturbations, null_size, fdr, n_null, unscored}}, "version": ...}}``.

    Raises
    ------
    ValueError
        When no perturbation has ``min_replicates`` profiles, without controls (``null_perturbations=None``), for
        unknown null perturbations, or for a profile of norm 0.
    """
    return _signal_table(
        adata,
        metric="consistency",
        min_replicates=check_int(min_replicates, name="min_replicates", minimum=2),
        use_rep=use_rep,
        perturbation_key=perturbation_key,
        control_key=control_key,
        null_perturbations=null_perturbations,
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
    null_perturbations: Sequence[str] | None = None,
    max_controls: int = 1000,
    min_replicates: int = MIN_REPLICATES["magnitude"],
    null_size: int = 1000,
    fdr: float = 0.05,
    rng: RNGLike = 0,
    accelerator: str = "auto",
    key_added: str = "perturbation_magnitude",
) -> pd.DataFrame:
    """Perturbation signal magnitude: the energy distance between each perturbation's replicates and the controls.

    The reference is a random sample (``rng``) of up to ``max_controls`` controls; the energy distance is
    ``2 E|x - y| - E|x - x'| - E|y - y'|`` (``geomloss.SamplesLoss("energy")`` times 2, its distance floor
    included). Equal to ``efaar_benchmarking.benchmarking.pert_signal_magnitude_benchmark`` (its
    ``pert_signal_magnitude_metric`` on every perturbation with at least 5 replicates) on the same profiles, control
    sample and null perturbations. Without ``null_perturbations`` a null draw is ``k`` controls of the reference,
    compared with the rest of the reference.

    Parameters
    ----------
    {doc_signal}
    {doc_null_perturbations}
    max_controls
        Largest number of controls in the reference sample.
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
    control_key, min_replicates, max_controls, reference_controls, null_perturbations, null_size, fdr, n_null,
    unscored}}, "version": ...}}`` (``reference_controls``: the obs names of the control sample).

    Raises
    ------
    ValueError
        When no perturbation has ``min_replicates`` profiles, without controls, or for unknown null perturbations.
    """
    return _signal_table(
        adata,
        metric="magnitude",
        min_replicates=check_int(min_replicates, name="min_replicates", minimum=2),
        use_rep=use_rep,
        perturbation_key=perturbation_key,
        control_key=control_key,
        null_perturbations=null_perturbations,
        null_size=null_size,
        fdr=fdr,
        rng=rng,
        accelerator=accelerator,
        key_added=key_added,
        max_controls=check_int(max_controls, name="max_controls", minimum=2),
    )
