"""One call that evaluates perturbation maps with every metric (:func:`evaluate_map`).

Each representation is scored on a light working AnnData (the obs columns and that one embedding: the input is
not modified) by the metric functions of :mod:`scsemiclip.tl`, all with the same seed, so that their nulls are
paired across representations: the map-level metrics on the embedding TVN-corrected like the paper's evaluation,
the metrics that compare with the controls on the embedding standardised on each batch's controls, and
interpretability preservation on the embedding as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from scsemiclip._utils import RNGLike, Timer, check_obs_keys, control_mask, logger, storable, version_info
from scsemiclip._validate import check_key, check_real, check_threshold
from scsemiclip.datasets import SOURCES
from scsemiclip.pp import center, standardize, tvn

from ._interpretability import PROTOCOLS, interpretability_preservation
from ._map import AnnotationsLike, _annotation_sets, phenotypic_activity, phenotypic_consistency
from ._recall import SourcesLike, compute_ranks, resolve_sources
from ._signal import MIN_REPLICATES, perturbation_consistency, perturbation_magnitude

#: The metric families of :func:`evaluate_map`, in the order of its table.
METRICS = (
    "recall",
    "phenotypic_activity",
    "phenotypic_consistency",
    "perturbation_consistency",
    "perturbation_magnitude",
    "interpretability",
)
#: Columns of the tidy table.
COLUMNS = ["representation", "metric", "value", "n_hits", "n_total"]
#: Keys of the corrected embeddings in the working AnnData: map-level metrics, metrics against the controls.
_EVAL_REP, _PROFILE_REP = "X_eval", "X_profiles"
#: Corrections of the profiles compared with the controls (``profile_correction``).
_PROFILE_CORRECTIONS = {"standardize": standardize, "center": center, "tvn": tvn}


def _labelled(use_reps: Mapping[str, str] | Sequence[str] | str) -> dict[str, str]:
    """``use_reps`` as ``{label: obsm key}`` (a key alone is its own label); at least one, keys are strings."""
    if isinstance(use_reps, str):
        reps = {use_reps: use_reps}
    elif isinstance(use_reps, Mapping):
        reps = {str(label): rep for label, rep in use_reps.items()}
    else:
        reps = {rep: rep for rep in use_reps}
    if not reps:
        raise ValueError("`use_reps` is empty; give at least one obsm key to evaluate.")
    for rep in reps.values():
        if not isinstance(rep, str):
            raise TypeError(f"`use_reps` must name obsm keys (strings), got {rep!r}.")
    return reps


def _applicable(
    adata: ad.AnnData,
    *,
    perturbation_key: str,
    batch_key: str | None,
    control_key: str | None,
    null_perturbations: Sequence[str] | None,
    annotations: AnnotationsLike,
    layer: str | None,
) -> dict[str, str]:
    """``{metric: why it cannot run}`` for the metric families the data do not allow."""
    check_obs_keys(adata, [perturbation_key, batch_key, control_key])
    is_ctrl = control_mask(adata, control_key) if control_key is not None else np.zeros(adata.n_obs, dtype=bool)
    most = int(adata.obs[perturbation_key][~is_ctrl].value_counts().max()) if (~is_ctrl).any() else 0
    skipped = {}
    if most < 2:
        reason = f"no perturbation of adata.obs[{perturbation_key!r}] has 2 replicates"
        skipped["phenotypic_activity"] = skipped["perturbation_consistency"] = reason
    if most < MIN_REPLICATES["magnitude"]:
        skipped["perturbation_magnitude"] = (
            f"no perturbation has {MIN_REPLICATES['magnitude']} replicates (efaar's minimum)"
        )
    if not is_ctrl.any():
        reason = "no controls" if control_key is None else f"adata.obs[{control_key!r}] marks no control"
        for family in ("phenotypic_activity", "perturbation_magnitude", "interpretability"):
            skipped.setdefault(family, reason)
        if null_perturbations is None:
            skipped.setdefault("perturbation_consistency", f"{reason} and no `null_perturbations` for its null")
    labels = _annotation_sets(adata, annotations, perturbation_key, control_key)
    perts = adata.obs[perturbation_key][~is_ctrl].astype(str).unique()
    shared = pd.Series([label for p in perts for label in labels.get(p, ())]).value_counts()
    if not (shared >= 2).any():
        skipped["phenotypic_consistency"] = "fewer than 2 perturbations share an annotation label of `annotations`"
    if batch_key is None or adata.obs[batch_key].nunique() < 2:
        skipped.setdefault("interpretability", "fewer than 2 batches (its split holds out whole batches)")
    if adata.X is None and layer is None:
        skipped.setdefault("interpretability", "no expression in adata.X (give it, or `layer`)")
    return skipped


def _recall_rows(
    work: ad.AnnData, *, perturbation_key: str, control_key: str | None, sources: SourcesLike, threshold: float
) -> tuple[list[tuple], pd.DataFrame]:
    """Two-sided and right-tail recall (mean over sources) and the per-source table of both."""
    ranks = compute_ranks(
        work, use_rep=_EVAL_REP, perturbation_key=perturbation_key, control_key=control_key, sources=sources
    )
    table = ranks.table([threshold]).drop(columns="threshold").set_index("source")
    right = {name: src.retrieved(threshold, ranks.n_null)[1] for name, src in ranks.sources.items()}
    n_right = pd.Series({name: int(hit.sum()) for name, hit in right.items()})
    per_source = n_right / table["n_pairs"].drop("mean").replace(0, np.nan)
    table["n_retrieved_right"] = [*n_right, n_right.sum()]
    table["recall_right"] = [*per_source, per_source.mean()]
    mean = table.loc["mean"]
    rows = [
        ("recall", mean["recall"], mean["n_retrieved"], mean["n_pairs"]),
        ("recall_right", mean["recall_right"], mean["n_retrieved_right"], mean["n_pairs"]),
    ]
    return rows, table


def _expression(adata: ad.AnnData, work: ad.AnnData, *, rep: str, layer: str | None) -> ad.AnnData:
    """A working AnnData with ``work``'s obs, the raw embedding and the expression of ``adata`` (not copied)."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"`layer={layer!r}` is not in adata.layers (available: {list(adata.layers.keys())}).")
    layers = {} if layer is None else {layer: adata.layers[layer]}
    expr = ad.AnnData(X=adata.X if layer is None else None, obs=work.obs, var=pd.DataFrame(index=adata.var_names))
    for name, values in layers.items():
        expr.layers[name] = values
    expr.obsm[rep] = adata.obsm[rep]
    return expr


def _significance_rows(name: str, table: pd.DataFrame, value: str, fdr: float) -> list[tuple]:
    """Fraction of rows with ``q_value < fdr`` and the mean of ``value`` over the rows of a metric's table."""
    hits = int((table["q_value"] < fdr).sum())
    return [
        (name, hits / len(table), hits, len(table)),
        (f"{name}_mean", float(table[value].mean()), np.nan, len(table)),
    ]


def evaluate_map(
    adata: ad.AnnData,
    *,
    use_reps: Mapping[str, str] | Sequence[str] | str,
    metrics: Sequence[str] | None = None,
    perturbation_key: str = "perturbation",
    batch_key: str | None = "batch",
    control_key: str | None = "is_control",
    output_tvn: bool = True,
    profile_correction: str | None = "standardize",
    sources: SourcesLike = SOURCES,
    threshold: float = 0.05,
    annotations: AnnotationsLike = "CORUM",
    null_perturbations: Sequence[str] | None = None,
    max_controls: int = 1000,
    null_size: int = 10000,
    signal_null_size: int = 1000,
    fdr: float = 0.05,
    interpretability: bool = True,
    layer: str | None = None,
    protocol: str = "auto",
    interpretability_kwargs: Mapping[str, object] | None = None,
    rng: RNGLike = 0,
    accelerator: str = "auto",
    key_added: str = "evaluate_map",
) -> pd.DataFrame:
    """Evaluate perturbation maps with every metric at once: recall, mAP, perturbation signal, interpretability.

    For each representation of ``use_reps``, scored by

    - :func:`~scsemiclip.tl.known_relationship_recall`: two-sided at ``threshold`` (``recall``; random about
      ``2 * threshold``) and the right tail alone (``recall_right``: pairs among the top ``threshold`` most
      similar; random about ``threshold``), each the unweighted mean over ``sources``;
    - :func:`~scsemiclip.tl.phenotypic_activity` (replicates against the controls) and
      :func:`~scsemiclip.tl.phenotypic_consistency` (perturbations sharing an ``annotations`` label, CORUM
      complexes by default), copairs' mAP;
    - :func:`~scsemiclip.tl.perturbation_consistency` and :func:`~scsemiclip.tl.perturbation_magnitude`
      (efaar's perturbation signal);
    - :func:`~scsemiclip.tl.interpretability_preservation` of the raw embedding, when the data hold expression.

    The map-level metrics (recall, phenotypic consistency) score the embedding TVN-corrected on the controls
    (``output_tvn``; :func:`~scsemiclip.pp.tvn`, efaar's basis, per-batch CORAL when ``batch_key`` is given), as
    the paper does before aggregating. The metrics that compare profiles with the controls (phenotypic activity,
    perturbation consistency and magnitude) score the embedding standardised on each batch's controls
    (``profile_correction``, as JUMP normalises to the controls): a whitening fitted on the same controls makes
    them stand apart from every other profile when they are few for the dimension (with 32 controls per batch in
    32 dimensions, every perturbation of a random embedding has a "significant" magnitude after TVN), while an
    uncorrected embedding with batch effects hides its replicates behind the batches.

    Every metric gets the same seed, so the nulls are the same for all representations (a paired comparison).
    The input is not modified except ``uns[key_added]``: each representation is corrected and scored on a working
    AnnData holding only the ``obs`` columns and that embedding (and, for interpretability, the expression).

    Parameters
    ----------
    adata
        Per-sample data (one row per profile, controls included) with the embeddings in ``obsm``; a gene-level
        map without controls gets the metrics that need neither controls nor replicates.
    use_reps
        Label -> ``obsm`` key of each representation; a sequence of keys (or one key) labels each by its key.
    metrics
        Metric families among ``"recall"``, ``"phenotypic_activity"``, ``"phenotypic_consistency"``,
        ``"perturbation_consistency"``, ``"perturbation_magnitude"``, ``"interpretability"``. ``None``: all that
        the data allow (activity and magnitude need controls, activity and perturbation consistency replicates
        (magnitude 5), phenotypic consistency 2 perturbations sharing a label, interpretability controls, 2 batches
        and expression); the others are listed in ``uns[key_added]["skipped"]`` with the reason. A family named
        explicitly must run (else a :class:`ValueError` says why it cannot).
    perturbation_key
        Column of ``adata.obs`` with the perturbation (gene) labels.
    batch_key
        Column of ``adata.obs`` with the batch (``None``: one batch, hence no interpretability).
    control_key
        Boolean column of ``adata.obs`` marking the negative controls (``None``: none).
    output_tvn
        TVN-correct each embedding on the controls before the recall and the phenotypic consistency (when
        ``control_key`` is given).
    profile_correction
        Correction on each batch's controls of the profiles of the phenotypic activity and the perturbation signal:
        ``"standardize"`` (:func:`~scsemiclip.pp.standardize`), ``"center"``, ``"tvn"`` or ``None`` (as given).
    sources
        Relationship databases of the recall, see :func:`~scsemiclip.tl.known_relationship_recall`.
    threshold
        Share of the null in each tail of the recall, in ``(0, 0.5]``.
    annotations
        Labels of the phenotypic consistency, see :func:`~scsemiclip.tl.phenotypic_consistency`.
    null_perturbations
        Negative-control perturbations of the perturbation-signal nulls, see
        :func:`~scsemiclip.tl.perturbation_consistency`.
    max_controls
        Controls compared with each perturbation by :func:`~scsemiclip.tl.perturbation_magnitude`.
    null_size
        Random rankings of each mAP null.
    signal_null_size
        Control draws of each perturbation-signal null (without ``null_perturbations``).
    fdr
        A perturbation (label) counts as a hit when its Benjamini-Hochberg q-value is below ``fdr``.
    interpretability
        Score interpretability preservation (with ``metrics=None``; it trains a decoder, the slowest metric on a
        CPU).
    layer
        Layer with the expression counts of interpretability preservation (``None``: ``X``).
    protocol
        Decoder budget of interpretability preservation (``"auto"`` or ``"paper"``, see
        :func:`~scsemiclip.tl.interpretability_preservation`).
    interpretability_kwargs
        Other settings of :func:`~scsemiclip.tl.interpretability_preservation` (``min_steps``, ``batch_size``,
        ``lr``, ``train_fraction``, ...).
    rng
        Seed (or :class:`numpy.random.Generator`, from which one seed is drawn) of every metric.
    accelerator
        Device of the mAP ranking, the energy distances and the decoder (``"auto"``: a GPU when there is one).
    key_added
        Key of the result in ``adata.uns``.

    Returns
    -------
    A tidy table, one row per representation and metric, columns ``representation``, ``metric``, ``value``,
    ``n_hits``, ``n_total``. The metrics (rows present for the families that ran):

    ``recall``, ``recall_right``
        Mean recall over the sources (two-sided; right tail); ``n_hits`` retrieved pairs, ``n_total`` pairs.
    ``phenotypic_activity``, ``phenotypic_consistency``, ``perturbation_consistency``, ``perturbation_magnitude``
        Fraction of scored perturbations (labels for consistency) with q-value below ``fdr``; ``n_hits`` of them,
        ``n_total`` scored.
    ``phenotypic_activity_mean``, ``phenotypic_consistency_mean``
        Mean of the mAP over the scored perturbations (labels); ``n_total`` scored.
    ``perturbation_consistency_mean``, ``perturbation_magnitude_mean``
        Mean of the statistic (mean cosine; energy distance) over the scored perturbations.
    ``interpretability``
        Interpretability preservation score (0-100); ``n_total`` scored test samples.

    Also writes ``adata.uns[key_added]`` = ``{"table": <the table>, "details": {label: {family: <its table>}},
    "skipped": {family: reason}, "params": {...}, "version": ...}`` (h5ad-storable).
    """
    reps = _labelled(use_reps)
    threshold = check_threshold(threshold, name="threshold")
    fdr = check_real(fdr, name="fdr", low=0, high=1, low_open=True)
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {sorted(PROTOCOLS)}, got {protocol!r}.")
    if profile_correction is not None and profile_correction not in _PROFILE_CORRECTIONS:
        raise ValueError(
            f"`profile_correction` must be one of {list(_PROFILE_CORRECTIONS)} or None, got {profile_correction!r}."
        )
    for key, name in ((perturbation_key, "perturbation_key"), (batch_key, "batch_key"), (control_key, "control_key")):
        check_key(key, name=name, none_ok=name != "perturbation_key")
    skipped = _applicable(
        adata,
        perturbation_key=perturbation_key,
        batch_key=batch_key,
        control_key=control_key,
        null_perturbations=null_perturbations,
        annotations=annotations,
        layer=layer,
    )
    if not interpretability:
        skipped.pop("interpretability", None)
    if metrics is None:
        chosen = [m for m in METRICS if m not in skipped and (interpretability or m != "interpretability")]
    else:
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in chosen if m not in METRICS]
        if unknown:
            raise ValueError(f"Unknown metric {unknown[0]!r} in `metrics`; choose among {list(METRICS)}.")
        if not interpretability and "interpretability" in chosen:
            raise ValueError("`metrics` names 'interpretability' but `interpretability=False`; drop one of them.")
        impossible = [m for m in chosen if m in skipped]
        if impossible:
            raise ValueError(f"`metrics` asks for {impossible[0]!r}, which cannot run: {skipped[impossible[0]]}.")
        skipped = {}
    seed = (
        rng if isinstance(rng, int) and not isinstance(rng, bool) else int(np.random.default_rng(rng).integers(2**62))
    )
    control_families = {"phenotypic_activity", "perturbation_consistency", "perturbation_magnitude"} & set(chosen)
    timer = Timer(f"evaluating {len(reps)} representation(s) with {', '.join(chosen)}")
    obs_cols = [c for c in dict.fromkeys([perturbation_key, batch_key, control_key]) if c is not None]
    if isinstance(annotations, str) and annotations in adata.obs.columns:
        obs_cols.append(annotations)
    rows, details = [], {}
    for label, rep in reps.items():
        work = ad.AnnData(obs=adata.obs[obs_cols].copy())
        if rep not in adata.obsm:
            raise KeyError(f"{rep!r} (of `use_reps`) is not in adata.obsm (available: {list(adata.obsm.keys())}).")
        work.obsm[rep] = adata.obsm[rep]
        work.obsm[_EVAL_REP] = work.obsm[_PROFILE_REP] = work.obsm[rep]
        keys = {"batch_key": batch_key, "control_key": control_key}
        if output_tvn and control_key is not None:
            tvn(work, use_rep=rep, key_added=_EVAL_REP, **keys)
        if profile_correction is not None and control_key is not None and control_families:
            _PROFILE_CORRECTIONS[profile_correction](work, use_rep=rep, key_added=_PROFILE_REP, **keys)
        common = {"use_rep": _EVAL_REP, "perturbation_key": perturbation_key}
        raw = {"use_rep": _PROFILE_REP, "perturbation_key": perturbation_key}  # the metrics against the controls
        sig = {"null_size": null_size, "fdr": fdr, "rng": seed, "accelerator": accelerator}
        signal = {**sig, "null_size": signal_null_size}
        details[label] = {}
        for family in chosen:
            if family == "recall":
                family_rows, table = _recall_rows(
                    work,
                    perturbation_key=perturbation_key,
                    control_key=control_key,
                    sources=sources,
                    threshold=threshold,
                )
            elif family == "phenotypic_activity":
                table = phenotypic_activity(work, control_key=control_key, **raw, **sig)
                family_rows = _significance_rows(family, table, "mean_average_precision", fdr)
            elif family == "phenotypic_consistency":
                table = phenotypic_consistency(work, annotations=annotations, control_key=control_key, **common, **sig)
                family_rows = _significance_rows(family, table, "mean_average_precision", fdr)
            elif family == "perturbation_consistency":
                table = perturbation_consistency(
                    work, control_key=control_key, null_perturbations=null_perturbations, **raw, **signal
                )
                family_rows = _significance_rows(family, table, "value", fdr)
            elif family == "perturbation_magnitude":
                table = perturbation_magnitude(
                    work,
                    control_key=control_key,
                    null_perturbations=null_perturbations,
                    max_controls=max_controls,
                    **raw,
                    **signal,
                )
                family_rows = _significance_rows(family, table, "value", fdr)
            else:
                expr = _expression(adata, work, rep=rep, layer=layer)
                score = interpretability_preservation(
                    expr,
                    use_rep=rep,
                    layer=layer,
                    protocol=protocol,
                    rng=seed,
                    accelerator=accelerator,
                    perturbation_key=perturbation_key,
                    **keys,
                    **dict(interpretability_kwargs or {}),
                )
                n_test = expr.uns["interpretability_preservation"]["n_test"]
                family_rows = [("interpretability", float(score["score"]), np.nan, n_test)]
                table = score.to_frame("value")
            rows += [(label, *row) for row in family_rows]
            details[label][family] = table.set_axis(table.index.astype(str))
    for family, reason in skipped.items():
        logger.info("evaluate_map: %s skipped (%s)", family, reason)
    out = pd.DataFrame(rows, columns=COLUMNS).astype({"value": float, "n_hits": float, "n_total": float})
    params = {
        "use_reps": reps,
        "metrics": chosen,
        "perturbation_key": perturbation_key,
        "batch_key": batch_key,
        "control_key": control_key,
        "output_tvn": output_tvn,
        "profile_correction": profile_correction,
        "sources": list(resolve_sources(sources)),
        "threshold": threshold,
        "annotations": annotations if isinstance(annotations, str) else "mapping",
        "null_size": null_size,
        "signal_null_size": signal_null_size,
        "max_controls": max_controls,
        "fdr": fdr,
        "protocol": protocol,
        "interpretability_kwargs": dict(interpretability_kwargs or {}),
        "seed": seed,
    }
    adata.uns[key_added] = {
        "table": out.copy(),
        "details": details,
        "skipped": dict(skipped),
        "params": storable(params),
        "version": version_info(),
    }
    timer.done(f"added uns[{key_added!r}]")
    return out
