"""Mean average precision: phenotypic activity and consistency (copairs 0.5.5, cytomining; docs/evaluation.md).

A query profile ranks its candidates (positives and negatives) by cosine similarity; its average precision (AP) is
the mean over its positives of the precision at each positive's rank. Similarities, rank keys and ties follow
copairs exactly (see :mod:`scsemiclip._core._ranking`), so the values equal ``copairs.map.average_precision`` /
``copairs.map.multilabel.average_precision`` followed by ``copairs.map.mean_average_precision`` on the same
pairs. The work is one matrix product and one sort per block of query rows (torch, CPU or GPU) instead of
copairs' pair lists; the null of AP is drawn once per ``(n_positives, n_candidates)`` configuration, and the null
of a group's mAP is the draw-wise mean of its members' nulls (copairs' ``get_map_pvalue``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from scsemiclip._core import (
    average_precision,
    benjamini_hochberg,
    exceedance_p_values,
    random_ap_null,
    rank_keys,
    resolve_device,
    unit_rows,
)
from scsemiclip._docs import doc_params
from scsemiclip._keys import canonical_keys, canonical_value, is_missing
from scsemiclip._utils import (
    RNGLike,
    Timer,
    batch_codes,
    check_obs_keys,
    control_mask,
    get_rep,
    storable,
    torch_seed,
    version_info,
)
from scsemiclip._validate import check_int, check_key, check_real
from scsemiclip.datasets import gene_sets

from ._recall import gene_map

if TYPE_CHECKING:
    from anndata import AnnData

#: Elements of a similarity block (query rows x candidates) processed at once.
BLOCK_ELEMENTS = 2**24

AnnotationsLike = str | os.PathLike | Mapping[str, str | Iterable[str]]

doc_significance = """\
null_size
    Number of random rankings in the null of each ``(n_positives, n_candidates)`` configuration.
fdr
    False discovery rate of the ``significant`` flag (Benjamini-Hochberg q-value below it, as copairs'
    ``below_corrected_p``).
rng
    Seed or :class:`numpy.random.Generator` of the null draws (drawn on the CPU: the same on every device).
accelerator
    Where the similarities are ranked: ``"auto"`` (a GPU when torch sees one), ``"cpu"``, ``"gpu"`` ...
    (Lightning's accelerator names).
key_added
    Key of the result in ``adata.uns``."""

doc_map_returns = """\
``mean_average_precision``
    Mean of the members' average precisions.
``p_value``
    ``(1 + #(null > mAP)) / (1 + null_size)``, the null being the draw-wise mean of the members' AP nulls.
``q_value``
    Benjamini-Hochberg adjusted p-value.
``significant``
    ``q_value < fdr``."""


def check_significance(null_size: int, fdr: float) -> tuple[int, float]:
    """Validated ``null_size`` (at least 1) and ``fdr`` (in ``(0, 1]``)."""
    return check_int(null_size, name="null_size", minimum=1), check_real(fdr, name="fdr", low=0, high=1, low_open=True)


def significance_columns(p_values: np.ndarray, fdr: float) -> dict[str, np.ndarray]:
    """``p_value``, BH ``q_value`` and ``significant`` (``q_value < fdr``) columns of a result table."""
    q_values = benjamini_hochberg(p_values)
    return {"p_value": p_values, "q_value": q_values, "significant": q_values < fdr}


def screen_batches(adata: AnnData, batch_key: str | None) -> tuple[np.ndarray, pd.Index]:
    """Batch codes and labels of ``obs[batch_key]``; a missing column is an error that names ``batch_key``."""
    if batch_key is not None and batch_key not in adata.obs.columns:
        raise KeyError(
            f"adata.obs has no column {batch_key!r} (`batch_key`); pass the batch column, or `batch_key=None` when "
            "the data are one batch."
        )
    return batch_codes(adata, batch_key)


def store_table(adata: AnnData, key_added: str, table: pd.DataFrame, params: dict[str, object]) -> None:
    """Write ``adata.uns[key_added] = {"table", "params", "version"}`` (h5ad-storable: string index)."""
    check_key(key_added, name="key_added")
    stored = table.set_axis(table.index.astype(str)).copy()
    adata.uns[key_added] = {"table": stored, "params": storable(params), "version": version_info()}


def _map_table(
    ap: np.ndarray,
    configs: np.ndarray,
    member_group: np.ndarray,
    groups: pd.Index,
    *,
    null_size: int,
    fdr: float,
    rng: RNGLike,
) -> pd.DataFrame:
    """Per-group mAP, p-value, q-value and flag from the members' APs and ``(n_pos, n_total)`` configurations."""
    unique, member_config = np.unique(configs, axis=0, return_inverse=True)
    generator = torch.Generator().manual_seed(torch_seed(rng))
    nulls = random_ap_null(unique, null_size, generator)
    sizes = np.bincount(member_group, minlength=len(groups))
    means = np.bincount(member_group, weights=ap, minlength=len(groups)) / sizes
    p_values = group_p_values(means, nulls, member_config.ravel(), member_group)
    table = pd.DataFrame({"mean_average_precision": means, **significance_columns(p_values, fdr)}, index=groups)
    table["n_positives"] = np.bincount(member_group, weights=configs[:, 0], minlength=len(groups)) / sizes
    table["n_candidates"] = np.bincount(member_group, weights=configs[:, 1], minlength=len(groups)) / sizes
    return table


def group_p_values(
    means: np.ndarray, nulls: torch.Tensor, member_config: np.ndarray, member_group: np.ndarray
) -> np.ndarray:
    """p-value of every group's mAP against the mean of its members' configuration nulls (in group blocks)."""
    n_groups, null_size = len(means), nulls.shape[1]
    pairs, counts = np.unique(np.stack([member_group, member_config], axis=1), axis=0, return_counts=True)
    sizes = np.bincount(member_group, minlength=n_groups)
    step = max(1, BLOCK_ELEMENTS // null_size)
    out = np.empty(n_groups)
    bounds = np.searchsorted(pairs[:, 0], np.arange(0, n_groups + step, step))
    for b, g0 in enumerate(range(0, n_groups, step)):
        g1 = min(g0 + step, n_groups)
        sums = torch.zeros((g1 - g0, null_size), dtype=torch.float64)
        for s in range(bounds[b], bounds[b + 1], step):
            e = min(s + step, bounds[b + 1])
            weight = torch.as_tensor(counts[s:e], dtype=torch.float64)[:, None]
            sums.index_add_(0, torch.as_tensor(pairs[s:e, 0] - g0), nulls[torch.as_tensor(pairs[s:e, 1])] * weight)
        null = sums / torch.as_tensor(sizes[g0:g1], dtype=torch.float64)[:, None]
        out[g0:g1] = exceedance_p_values(means[g0:g1], null)
    return out


def _other_members(member_group: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by group: the positions of the other rows of each row's group (the positives), and a mask.

    Returns ``(n_rows, max(sizes) - 1)`` positions (0 where the mask is False) and the mask of the real ones.
    """
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    position = np.arange(member_group.size) - starts[member_group]
    t = np.arange(int(sizes.max()) - 1)
    valid = t < (sizes[member_group] - 1)[:, None]
    return np.where(valid, starts[member_group][:, None] + t + (t >= position[:, None]), 0), valid


@doc_params(doc_significance=doc_significance, doc_map_returns=doc_map_returns)
def phenotypic_activity(
    adata: AnnData,
    *,
    use_rep: str,
    perturbation_key: str = "perturbation",
    control_key: str = "is_control",
    batch_key: str | None = "batch",
    fitted_key: str | None = None,
    null_size: int = 10000,
    fdr: float = 0.05,
    rng: RNGLike = 0,
    accelerator: str = "auto",
    key_added: str = "phenotypic_activity",
) -> pd.DataFrame:
    """Phenotypic activity: how well a perturbation's replicates retrieve each other against the controls (mAP).

    Every non-control profile is a query; its positives are the other replicates of its perturbation, its
    negatives all the controls. The AP of each query (cosine similarity, ties as copairs) is averaged per
    perturbation. Equal to copairs 0.5.5 (``average_precision`` with ``pos_sameby=[perturbation, reference]``,
    ``neg_diffby=[perturbation, reference]``, controls getting distinct reference indices, then
    ``mean_average_precision``) on the same profiles with ``batch_key=None``; p-values agree within Monte-Carlo
    error. The null (random rankings) is valid when the positives are exchangeable with the negatives relative to
    the query, so by default a query's negatives are the controls of the batches that hold its positives (a query
    whose replicates share its batch is not compared with the controls of other batches, which batch effects set
    apart), and no negative may have entered the fit of a correction of the embedding (``fitted_key``); see
    docs/evaluation.md, "How the p-values are calibrated".

    Parameters
    ----------
    adata
        Annotated data, one row per profile (well, replicate), controls included.
    use_rep
        Key of the embedding in ``adata.obsm`` (``"X"`` for ``adata.X``).
    perturbation_key
        Column of ``adata.obs`` with the perturbation labels.
    control_key
        Boolean column of ``adata.obs`` marking the negative controls (the negatives of every query).
    batch_key
        Column of ``adata.obs`` with the batch: a query's negatives are the controls of the batches of its
        positives. ``None``: every control is a negative of every query (copairs' definition).
    fitted_key
        Boolean column of ``adata.obs`` marking the controls a correction of the embedding was fitted on (as
        :func:`~scsemiclip.tl.evaluate_map` cross-fits): they are not negatives (a correction makes its own
        controls look more alike than any other profile). ``None``: every control is a negative.
    {doc_significance}

    Returns
    -------
    A table indexed by perturbation (sorted labels; perturbations with a single profile are not scored), columns

    {doc_map_returns}
    ``n_replicates``
        Number of profiles of the perturbation.
    ``n_positives``, ``n_candidates``
        Positives (``n_replicates - 1``) and mean number of candidates (positives plus negatives) of its queries.

    Also writes ``adata.uns[key_added]`` = ``{{"table": <the table>, "params": {{use_rep, perturbation_key,
    control_key, batch_key, fitted_key, null_size, fdr, n_controls, unscored}}, "version": ...}}``
    (``n_controls``: the controls that can be negatives; ``unscored``: the single-profile perturbations).

    Raises
    ------
    ValueError
        Without controls (outside ``fitted_key``), when every row is a control, when no perturbation has at least
        2 profiles (no replicates), or for a profile of norm 0.
    """
    check_key(perturbation_key, name="perturbation_key")
    check_key(control_key, name="control_key")
    check_key(batch_key, name="batch_key", none_ok=True)
    check_key(fitted_key, name="fitted_key", none_ok=True)
    null_size, fdr = check_significance(null_size, fdr)
    timer = Timer(f"phenotypic activity of {use_rep!r}")
    batch, batch_labels = screen_batches(adata, batch_key)
    x = get_rep(adata, use_rep)
    is_control = control_mask(adata, control_key)
    fitted = control_mask(adata, fitted_key) if fitted_key is not None else np.zeros(adata.n_obs, dtype=bool)
    if (fitted & ~is_control).any():
        raise ValueError(
            f"adata.obs[{fitted_key!r}] (`fitted_key`) marks rows that are not controls of `control_key`; it must "
            "mark the controls a correction was fitted on."
        )
    check_obs_keys(adata, [perturbation_key])
    if not (is_control & ~fitted).any():
        raise ValueError(
            f"adata.obs[{control_key!r}] marks no control"
            + (" outside `fitted_key`" if fitted.any() else "")
            + "; phenotypic activity ranks replicates against the controls (mark them with "
            "`scsemiclip.pp.mark_controls`)."
        )
    if is_control.all():
        raise ValueError(
            f"Every row of adata is a control (adata.obs[{control_key!r}]): there is no perturbation to score."
        )
    labels, missing = canonical_keys(adata.obs[perturbation_key])
    bad = np.flatnonzero(missing & ~is_control)
    if bad.size:
        raise ValueError(
            f"adata.obs[{perturbation_key!r}] is missing in {bad.size} non-control row(s) (first: "
            f"{adata.obs_names[bad[0]]!r})."
        )
    rows = np.flatnonzero(~is_control)
    codes, perts = pd.factorize(labels[rows], sort=True)
    counts = np.bincount(codes, minlength=len(perts))
    if not (counts >= 2).any():
        raise ValueError(
            f"No replicates: every perturbation of adata.obs[{perturbation_key!r}] has a single non-control "
            "profile, so none has a positive to retrieve. Phenotypic activity needs per-replicate profiles."
        )
    scored = np.flatnonzero(counts >= 2)
    group_of = np.full(len(perts), -1)
    group_of[scored] = np.arange(scored.size)
    order = np.argsort(codes, kind="stable")
    order = order[counts[codes[order]] >= 2]
    query_rows, member_group = rows[order], group_of[codes[order]]
    sizes = counts[scored]
    pos_index, pos_valid = _other_members(member_group, sizes)

    device = resolve_device(accelerator)
    unit = unit_rows(torch.as_tensor(np.asarray(x, dtype=np.float64), device=device), what=f"obsm[{use_rep!r}]")
    negative_rows = np.flatnonzero(is_control & ~fitted)
    queries, controls = (
        unit[torch.as_tensor(query_rows, device=device)],
        unit[torch.as_tensor(negative_rows, device=device)],
    )
    # a query's negatives: the controls of the batches of its positives
    allowed = np.zeros((query_rows.size, int(batch.max()) + 1), dtype=bool)
    where = np.nonzero(pos_valid)
    allowed[where[0], batch[query_rows[pos_index[where]]]] = True
    n_negatives = allowed.astype(np.int64) @ np.bincount(batch[negative_rows], minlength=allowed.shape[1])
    if not (n_negatives > 0).all():
        first = np.flatnonzero(n_negatives == 0)[0]
        where = batch_labels.tolist()[batch[query_rows[pos_index[first, 0]]]]
        raise ValueError(
            f"Batch {where!r} of adata.obs[{batch_key!r}] holds replicates of {labels[query_rows[first]]!r} but no control "
            "(outside `fitted_key`) to rank them against; add controls to every batch with perturbations, or pass "
            "`batch_key=None` to rank against the controls of every batch."
        )
    ap = np.empty(query_rows.size)
    step = max(1, BLOCK_ELEMENTS // (controls.shape[0] + pos_index.shape[1] * unit.shape[1]))
    for s in range(0, query_rows.size, step):
        block = queries[s : s + step]
        idx = torch.as_tensor(pos_index[s : s + step], device=device)
        cos = torch.einsum("bd,bkd->bk", block, queries[idx])
        pos_keys = (1 - cos.to(torch.float32)).masked_fill(
            ~torch.as_tensor(pos_valid[s : s + step], device=device), torch.inf
        )
        excluded = torch.as_tensor(~allowed[s : s + step][:, batch[negative_rows]], device=device)
        negative_keys = rank_keys(block, controls).masked_fill(excluded, torch.inf)
        ap[s : s + step] = average_precision(negative_keys, pos_keys).cpu().numpy()
    n_pos = sizes[member_group] - 1
    configs = np.stack([n_pos, n_pos + n_negatives], axis=1)
    table = _map_table(
        ap, configs, member_group, pd.Index(perts[scored], name=perturbation_key), null_size=null_size, fdr=fdr, rng=rng
    )
    table.insert(4, "n_replicates", sizes)
    unscored = [str(p) for p in perts[counts < 2]]
    params = {
        "use_rep": use_rep,
        "perturbation_key": perturbation_key,
        "control_key": control_key,
        "batch_key": batch_key,
        "fitted_key": fitted_key,
        "null_size": null_size,
        "fdr": fdr,
        "n_controls": int((is_control & ~fitted).sum()),
        "unscored": unscored,
    }
    store_table(adata, key_added, table, params)
    timer.done(f"{int(table['significant'].sum())} of {len(table)} perturbations active, added uns[{key_added!r}]")
    return table


def _label_set(value: object) -> set[str]:
    """Canonical annotation labels of one perturbation of a mapping: a label or an iterable of labels (missing: none)."""
    values = [value] if isinstance(value, str) or not isinstance(value, Iterable) else value
    return {canonical_value(v) for v in values if not is_missing(v)}


def _annotation_sets(
    adata: AnnData, annotations: AnnotationsLike, perturbation_key: str | None, control_key: str | None
) -> dict[str, set[str]]:
    """``{perturbation label: set of annotation labels}`` from an obs column, a mapping or a gene-set collection.

    Perturbations and labels are canonical texts (:mod:`scsemiclip._keys`), as the labels of the map, so that a
    mapping keyed by ``29`` annotates the label ``29.0``; missing values (``None``, NaN) are no label.
    """
    if isinstance(annotations, str) and annotations in adata.obs.columns:
        perts, _ = canonical_keys(adata.obs_names if perturbation_key is None else adata.obs[perturbation_key])
        keep = ~control_mask(adata, control_key) if control_key is not None else np.ones(adata.n_obs, dtype=bool)
        labels, missing = canonical_keys(adata.obs[annotations])
        keep &= ~missing
        frame = pd.DataFrame({"pert": perts[keep], "label": labels[keep]}).drop_duplicates()
        return {p: set(group) for p, group in frame.groupby("pert", sort=False)["label"]}
    out: dict[str, set[str]] = {}
    if isinstance(annotations, Mapping):
        for pert, value in annotations.items():
            out.setdefault(canonical_value(pert), set()).update(_label_set(value))
        return out
    if isinstance(annotations, str | os.PathLike):
        for name, genes in gene_sets(annotations).items():
            for gene in genes:
                out.setdefault(canonical_value(gene), set()).add(name)
        return out
    raise TypeError(
        "`annotations` must be an adata.obs column, a {perturbation: labels} mapping, a gene-set name of "
        f"`scsemiclip.datasets.gene_sets` or the path of a GMT file, got {type(annotations).__name__}."
    )


@doc_params(doc_significance=doc_significance, doc_map_returns=doc_map_returns)
def phenotypic_consistency(
    adata: AnnData,
    *,
    use_rep: str,
    annotations: AnnotationsLike = "CORUM",
    perturbation_key: str | None = "perturbation",
    control_key: str | None = "is_control",
    null_size: int = 10000,
    fdr: float = 0.05,
    rng: RNGLike = 0,
    accelerator: str = "auto",
    key_added: str = "phenotypic_consistency",
) -> pd.DataFrame:
    """Phenotypic consistency: how well perturbations sharing an annotation retrieve each other (mAP per label).

    On the consensus map (controls dropped, mean per perturbation), restricted to the perturbations with at least
    one annotation label: for a label (a CORUM complex, a target), every perturbation carrying it is a query, its
    positives are the other perturbations with that label and its negatives the perturbations sharing no label
    with it. Equal to copairs 0.5.5 (``multilabel.average_precision`` with ``pos_sameby=neg_diffby=[labels]``,
    then ``mean_average_precision`` by label) on the same consensus profiles; p-values agree within Monte-Carlo
    error.

    Parameters
    ----------
    adata
        Annotated data: per profile (mean-aggregated by ``perturbation_key``, controls dropped) or already one row
        per perturbation.
    use_rep
        Key of the embedding in ``adata.obsm`` (``"X"`` for ``adata.X``).
    annotations
        An ``adata.obs`` column with each row's label (missing: none), a mapping from perturbation label to a label
        or a list of labels, or a gene-set collection of :func:`scsemiclip.datasets.gene_sets` (``"CORUM"``,
        ``"reactome"`` or a GMT path; each set is a label of its genes).
    perturbation_key
        Column of ``adata.obs`` with the perturbation labels; ``None`` uses ``obs_names`` of a per-perturbation
        map.
    control_key
        Boolean column of ``adata.obs`` marking the controls (dropped); ``None`` when there are none.
    {doc_significance}

    Returns
    -------
    A table indexed by annotation label (labels carried by at least 2 perturbations of the map; a query that shares
    a label with every annotated perturbation has no negative and is left out), columns

    {doc_map_returns}
    ``n_perturbations``
        Number of perturbations of the map with the label (its queries).
    ``n_positives``, ``n_candidates``
        Mean number of positives and of candidates (positives plus negatives) of its queries.

    Also writes ``adata.uns[key_added]`` = ``{{"table": <the table>, "params": {{use_rep, annotations,
    perturbation_key, control_key, null_size, fdr, n_annotated}}, "version": ...}}``.

    Raises
    ------
    ValueError
        When fewer than 2 perturbations of the map share an annotation label, or for a profile of norm 0.
    """
    check_key(perturbation_key, name="perturbation_key", none_ok=True)
    check_key(control_key, name="control_key", none_ok=True)
    null_size, fdr = check_significance(null_size, fdr)
    timer = Timer(f"phenotypic consistency of {use_rep!r}")
    x, perts = gene_map(adata, use_rep=use_rep, perturbation_key=perturbation_key, control_key=control_key)
    sets = _annotation_sets(adata, annotations, perturbation_key, control_key)
    annotated = np.array([i for i, p in enumerate(perts) if sets.get(str(p))], dtype=np.int64)
    pairs = [(a, label) for a, i in enumerate(annotated) for label in sets[str(perts[i])]]
    label_codes, labels = pd.factorize(pd.Index([label for _, label in pairs]), sort=True)
    member = np.array([a for a, _ in pairs], dtype=np.int64)
    label_sizes = np.bincount(label_codes, minlength=len(labels)) if pairs else np.zeros(0, dtype=np.int64)
    if not (label_sizes >= 2).any():
        raise ValueError(
            f"Fewer than 2 perturbations with an annotation: of the {len(perts)} perturbations of the map, "
            f"{annotated.size} carry a label of `annotations` and no label is shared by 2 of them; check that the "
            "perturbation labels match the annotation's (e.g. gene symbols)."
        )
    device = resolve_device(accelerator)
    unit = unit_rows(torch.as_tensor(x[annotated], device=device), what=f"the consensus map of {use_rep!r}")
    incidence = torch.zeros((annotated.size, len(labels)), dtype=torch.float32, device=device)
    incidence[torch.as_tensor(member, device=device), torch.as_tensor(label_codes, device=device)] = 1
    shares = (incidence @ incidence.T) > 0
    n_negatives = (~shares).sum(dim=1).cpu().numpy()

    scored = np.flatnonzero(label_sizes >= 2)
    keep = label_sizes[label_codes] >= 2
    order = np.lexsort([member[keep], label_codes[keep]])
    row_query, row_label = member[keep][order], label_codes[keep][order]
    group_of = np.full(len(labels), -1)
    group_of[scored] = np.arange(scored.size)
    member_group = group_of[row_label]
    sizes = label_sizes[scored]
    pos_index, pos_valid = _other_members(member_group, sizes)
    pos_index = row_query[pos_index]
    ap = np.empty(row_query.size)
    step = max(1, BLOCK_ELEMENTS // max(annotated.size, pos_index.shape[1]))
    for s in range(0, row_query.size, step):
        q = torch.as_tensor(row_query[s : s + step], device=device)
        keys = rank_keys(unit[q], unit)
        pos_keys = keys.gather(1, torch.as_tensor(pos_index[s : s + step], device=device))
        pos_keys = pos_keys.masked_fill(~torch.as_tensor(pos_valid[s : s + step], device=device), torch.inf)
        ap[s : s + step] = average_precision(keys.masked_fill(shares[q], torch.inf), pos_keys).cpu().numpy()
    # a query sharing a label with every perturbation has no negative: its AP of 1 tests nothing, it is left out
    has_negatives = n_negatives[row_query] > 0
    if not has_negatives.any():
        raise ValueError(
            "Every annotated perturbation shares a label with every other one: no query has a negative to rank."
        )
    kept, member_group = np.unique(member_group[has_negatives], return_inverse=True)
    n_pos = sizes[kept][member_group] - 1
    configs = np.stack([n_pos, n_pos + n_negatives[row_query[has_negatives]]], axis=1)
    index = pd.Index(labels[scored][kept], name="label")
    table = _map_table(ap[has_negatives], configs, member_group, index, null_size=null_size, fdr=fdr, rng=rng)
    table.insert(4, "n_perturbations", sizes[kept])
    params = {
        "use_rep": use_rep,
        "annotations": "mapping" if isinstance(annotations, Mapping) else os.fspath(annotations),
        "perturbation_key": perturbation_key,
        "control_key": control_key,
        "null_size": null_size,
        "fdr": fdr,
        "n_annotated": int(annotated.size),
    }
    store_table(adata, key_added, table, params)
    timer.done(f"{int(table['significant'].sum())} of {len(table)} labels consistent, added uns[{key_added!r}]")
    return table
