"""One call that evaluates perturbation maps with every metric (:func:`evaluate_map`).

Each representation is scored on a light working AnnData (the obs columns and that one embedding: the input is
not modified) by the metric functions of :mod:`scsemiclip.tl`, all with the same seed, so that their nulls are
paired across representations: the map-level metrics on the embedding TVN-corrected like the paper's evaluation,
the metrics that compare with the controls on the embedding standardised on each batch's controls, and
interpretability preservation on the embedding as given.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from scsemiclip._keys import canonical_keys
from scsemiclip._settings import settings
from scsemiclip._utils import (
    RNGLike,
    Timer,
    check_obs_keys,
    control_mask,
    get_rep,
    logger,
    storable,
    version_info,
)
from scsemiclip._validate import check_key, check_real, check_threshold
from scsemiclip.datasets import SOURCES
from scsemiclip.pp import tvn

from ._calibration import CONTROL_FAMILIES, PROFILE_CORRECTIONS, TooFewControls, calibration_check, cross_fit
from ._interpretability import PROTOCOLS, interpretability_preservation
from ._map import AnnotationsLike, _annotation_sets, phenotypic_activity, phenotypic_consistency
from ._random_levels import RANDOM_LEVELS
from ._recall import MIN_GENES, SourcesLike, compute_ranks, resolve_sources
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
#: Columns of the tidy table (defined in the Returns section of :func:`evaluate_map`).
COLUMNS = [
    "representation",
    "metric",
    "value",
    "unit",
    "n_significant",
    "n_total",
    "counted",
    "mean_statistic",
    "random_level",
    "fair_across_spaces",
    "note",
]
#: Keys of the embeddings in the private working AnnData (never the user's keys): the embedding as given, the
#: map-level metrics' correction, the correction of the metrics against the controls.
_RAW_REP, _EVAL_REP, _PROFILE_REP = "raw", "map_corrected", "profiles_corrected"
#: What ``n_significant`` and ``n_total`` count, per metric.
_COUNTED = {
    "recall": "known pairs",
    "recall_right": "known pairs",
    "phenotypic_activity": "perturbations",
    "phenotypic_consistency": "annotation labels",
    "perturbation_consistency": "perturbations",
    "perturbation_magnitude": "perturbations",
    "interpretability": "test samples",
}
#: Why a metric does not compare representations of different spaces (e.g. a map distilled into the teacher's
#: space against the student's own embedding); the metrics not listed do.
_UNFAIR = (
    "compares profiles with the controls in the representation's own space, so it depends on how tightly that "
    "space packs the controls; compare it only between representations of the same space (a distilled map lives "
    "in the teacher's space)"
)
_NOTES = {
    "recall": "unweighted mean over the sources of each source's fraction retrieved (both tails)",
    "recall_right": "unweighted mean over the sources of each source's fraction retrieved (top tail)",
    "phenotypic_activity": _UNFAIR,
    "phenotypic_consistency": "ranks perturbations against each other within the map",
    "perturbation_consistency": _UNFAIR,
    "perturbation_magnitude": _UNFAIR,
    "interpretability": "decoder scored on held-out batches and perturbations (their samples and controls)",
}


_CALIBRATION_NOTE = "false-positive rate on pseudo-perturbations formed from controls; nominal: at most `fdr`"


def _progress(message: str) -> None:
    """Report a step of :func:`evaluate_map` on one line.

    Logged at info level where the ``"scsemiclip"`` logger shows it (``settings.verbosity = "info"`` and a logging
    handler), else written to stderr while ``settings.progress_bar`` is on (the default, so a notebook shows it).
    """
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(message)
    elif settings.progress_bar:
        print(message, file=sys.stderr, flush=True)


def _shown(row: Mapping[str, object]) -> str:
    """A row's value as the progress line shows it: fractions in %, scores as they are."""
    value = float(row["value"])
    return f"{100 * value:.1f} %" if row["unit"] == "fraction" else f"{value:.1f}"


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
    sources: SourcesLike,
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
    perts = pd.unique(canonical_keys(adata.obs[perturbation_key])[0][~is_ctrl])  # the labels' canonical texts
    shared = pd.Series([label for p in perts for label in labels.get(p, ())]).value_counts()
    if not (shared >= 2).any():
        skipped["phenotypic_consistency"] = "fewer than 2 perturbations share an annotation label of `annotations`"
    if len(perts) < MIN_GENES:
        skipped["recall"] = f"{len(perts)} perturbation label(s) besides the controls; recall needs {MIN_GENES} genes"
    elif not any(
        (t["entity1"].isin(perts) & t["entity2"].isin(perts)).any() for t in resolve_sources(sources).values()
    ):
        skipped["recall"] = "no two perturbation labels form a known relationship of `sources` (gene symbols needed)"
    if batch_key is None or adata.obs[batch_key].nunique() < 2:
        skipped.setdefault("interpretability", "fewer than 2 batches (its split holds out whole batches)")
    if adata.X is None and layer is None:
        skipped.setdefault("interpretability", "no expression in adata.X (give it, or `layer`)")
    return skipped


def _row(
    metric: str,
    value: float,
    n_significant: float,
    n_total: int,
    *,
    mean_statistic: float = np.nan,
    random_level: float = np.nan,
    unit: str = "fraction",
    counted: str | None = None,
    note: str | None = None,
) -> dict[str, object]:
    """One row of the tidy table (without its representation); ``counted`` and ``note`` default to the metric's."""
    return {
        "metric": metric,
        "value": float(value),
        "unit": unit,
        "n_significant": n_significant,
        "n_total": int(n_total),
        "counted": _COUNTED[metric] if counted is None else counted,
        "mean_statistic": float(mean_statistic),
        "random_level": float(random_level),
        "fair_across_spaces": _NOTES.get(metric) != _UNFAIR,
        "note": _NOTES.get(metric, "") if note is None else note,
    }


def _recall_rows(
    work: ad.AnnData, *, perturbation_key: str, control_key: str | None, sources: SourcesLike, threshold: float
) -> tuple[list[dict], pd.DataFrame]:
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
        _row("recall", mean["recall"], mean["n_retrieved"], mean["n_pairs"], random_level=2 * threshold),
        _row("recall_right", mean["recall_right"], mean["n_retrieved_right"], mean["n_pairs"], random_level=threshold),
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
    expr.obsm[_RAW_REP] = adata.obsm[rep]
    return expr


def _significance_row(name: str, table: pd.DataFrame, value: str, fdr: float) -> dict[str, object]:
    """Fraction of rows with ``q_value < fdr``, with the mean of ``value`` over the rows of a metric's table."""
    hits = int((table["q_value"] < fdr).sum())
    return _row(name, hits / len(table), hits, len(table), mean_statistic=table[value].mean())


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
    null: str = "permutation",
    calibration: bool = True,
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
        (magnitude 5), phenotypic consistency 2 perturbations sharing a label, recall 20 perturbation labels of
        which two form a known relationship (gene symbols), interpretability controls, 2 batches and expression);
        the others are listed in ``uns[key_added]["skipped"]`` with the reason, and reported. A family named
        explicitly must run (else a :class:`ValueError` says why it cannot); each family at most once.
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
        Cross-fitted: fitted on a random half of each batch's controls, the other half form the nulls (at least 4
        controls per batch, else an error names the batch); see docs/evaluation.md, "How the p-values are
        calibrated".
    null
        ``"permutation"`` (calibrated: cross-fitted correction, within-batch permutation nulls of the perturbation
        signal, activity negatives from the batches of the positives) or ``"efaar"`` (the correction fitted on all
        controls, efaar's nulls and copairs' negatives: their numbers, not calibrated on small screens).
    calibration
        Run :func:`~scsemiclip.tl.calibration_check` on each representation when the controls allow 10
        pseudo-perturbations (else it is skipped and said in the log): rows ``<family>_calibration`` with the
        share of pseudo-perturbations at ``p < fdr``, and a :class:`UserWarning` above the nominal rate.
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
    A tidy table, one row per representation and metric (in the order of ``use_reps`` and of the metrics above),
    with the columns

    ``representation``
        The label of the representation (a key of ``use_reps``).
    ``metric``
        ``recall``, ``recall_right``, ``phenotypic_activity``, ``phenotypic_consistency``,
        ``perturbation_consistency``, ``perturbation_magnitude``, ``interpretability`` (the families that ran),
        and ``<family>_calibration`` for each family of the calibration check.
    ``value``
        The headline number, in ``unit``: for ``recall`` (``recall_right``) the unweighted mean over the sources of
        the fraction of each source's known pairs retrieved in either tail (the top tail); for the four
        significance metrics the fraction of the scored perturbations (annotation labels for phenotypic
        consistency) with a Benjamini-Hochberg q-value below ``fdr``; for ``interpretability`` the score (0-100);
        for a calibration row the fraction of pseudo-perturbations called significant (the false-positive rate).
    ``unit``
        ``"fraction"`` (0-1; the CLI and the plots show it in %) or ``"score (0-100)"``.
    ``n_significant``
        The count behind a fraction: known pairs retrieved, summed over the sources (the ``value`` of recall is
        a mean of per-source fractions, so it is not exactly ``n_significant / n_total``), perturbations (labels,
        pseudo-perturbations) with a q-value below ``fdr``; missing (``<NA>``) for ``interpretability``.
    ``n_total``
        What was scored, in the units of ``counted``: the known pairs with both genes in the map, summed over the
        sources; the perturbations (annotation labels) scored, i.e. with enough replicates (2, or 5 for the
        magnitude) and, for phenotypic consistency, the labels shared by 2 perturbations of the map; the
        pseudo-perturbations of a calibration row; for ``interpretability``, the samples the decoder is scored
        on: every sample, controls included, of the held-out batches whose perturbation is held out as well (the
        split keeps ``train_fraction`` of the batches and of the perturbations for training).
    ``counted``
        What ``n_significant`` and ``n_total`` count: ``"known pairs"``, ``"perturbations"``,
        ``"annotation labels"``, ``"test samples"`` or ``"pseudo-perturbations"``.
    ``mean_statistic``
        The mean over the scored perturbations (labels) of the statistic tested: the mAP (phenotypic activity
        and consistency), the mean cosine of the replicates (perturbation consistency), the energy distance to
        the controls (perturbation magnitude); missing (NaN) for the other metrics.
    ``random_level``
        What a map without information scores: ``2 * threshold`` (``recall``), ``threshold`` (``recall_right``),
        25 (``interpretability``, see :data:`~scsemiclip.tl.RANDOM_LEVELS`); NaN for the significance fractions,
        whose expected value on noise is about 0 (at most ``fdr`` of the perturbations on average).
    ``fair_across_spaces``
        Whether the metric compares representations that live in different spaces. ``False`` for phenotypic
        activity, perturbation consistency and perturbation magnitude: they compare a perturbation's profiles with
        the controls *in the representation's own space*, so they depend on how tightly that space packs the
        controls, and a map distilled into the teacher's space (Semi-Clipped) inherits the teacher's separation
        of perturbations from controls (an activity many times the student's own embedding's).
        Compare those only between representations of one space. ``True`` for recall, phenotypic consistency
        (perturbations ranked against each other within the map) and interpretability (a decoder fitted to each
        representation), and for the calibration rows.
    ``note``
        One line on how to read the row (the reason of ``fair_across_spaces = False``, for example).

    Also writes ``adata.uns[key_added]`` = ``{"table": <the table>, "details": {label: {family: <its table>}},
    "skipped": {family: reason}, "params": {...}, "version": ...}`` (h5ad-storable). Progress is reported on one
    line per representation and metric, and one line per skipped metric with its reason (see
    :data:`scsemiclip.settings`: ``verbosity`` and ``progress_bar``).
    """
    reps = _labelled(use_reps)
    missing = [rep for rep in reps.values() if rep not in adata.obsm]
    if missing:
        raise KeyError(f"{missing[0]!r} (of `use_reps`) is not in adata.obsm (available: {list(adata.obsm.keys())}).")
    check_key(key_added, name="key_added")
    threshold = check_threshold(threshold, name="threshold")
    fdr = check_real(fdr, name="fdr", low=0, high=1, low_open=True)
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {sorted(PROTOCOLS)}, got {protocol!r}.")
    if profile_correction is not None and profile_correction not in PROFILE_CORRECTIONS:
        raise ValueError(
            f"`profile_correction` must be one of {list(PROFILE_CORRECTIONS)} or None, got {profile_correction!r}."
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
        sources=sources,
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
        if not chosen:
            raise ValueError(f"`metrics` is empty; name at least one of {list(METRICS)}, or pass None for all.")
        repeated = [m for m in dict.fromkeys(chosen) if chosen.count(m) > 1]
        if repeated:
            raise ValueError(f"`metrics` names {repeated[0]!r} more than once; name each metric once.")
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
    for family, reason in skipped.items():
        _progress(f"evaluate_map: skipping {family}: {reason}")
    obs_cols = [c for c in dict.fromkeys([perturbation_key, batch_key, control_key]) if c is not None]
    if isinstance(annotations, str) and annotations in adata.obs.columns:
        obs_cols.append(annotations)
    rows, details = [], {}
    for n_rep, (label, rep) in enumerate(reps.items(), start=1):
        work = ad.AnnData(obs=adata.obs[obs_cols].copy())
        work.obsm[_RAW_REP] = get_rep(adata, rep)  # private keys: a user's key never collides with them
        work.obsm[_EVAL_REP] = work.obsm[_PROFILE_REP] = work.obsm[_RAW_REP]
        keys = {"batch_key": batch_key, "control_key": control_key}
        if output_tvn and control_key is not None:
            tvn(work, use_rep=_RAW_REP, key_added=_EVAL_REP, **keys)
        fitted_key = None
        if control_key is not None and control_families:  # cross-fitted: the null controls are out of the fit
            fitted_key = cross_fit(
                work,
                use_rep=_RAW_REP,
                key_added=_PROFILE_REP,
                correction=profile_correction,
                null=null,
                rng=seed,
                **keys,
            )
        common = {"use_rep": _EVAL_REP, "perturbation_key": perturbation_key}
        # the metrics against the controls
        raw = {
            "use_rep": _PROFILE_REP,
            "perturbation_key": perturbation_key,
            "fitted_key": fitted_key,
            "batch_key": batch_key if null == "permutation" else None,  # efaar / copairs: every control a negative
        }
        sig = {"null_size": null_size, "fdr": fdr, "rng": seed, "accelerator": accelerator}
        signal = {**sig, "null_size": signal_null_size, "null": null}
        details[label] = {}
        for step, family in enumerate(chosen, start=1):
            start = time.perf_counter()
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
                family_rows = [_significance_row(family, table, "mean_average_precision", fdr)]
            elif family == "phenotypic_consistency":
                table = phenotypic_consistency(work, annotations=annotations, control_key=control_key, **common, **sig)
                family_rows = [_significance_row(family, table, "mean_average_precision", fdr)]
            elif family == "perturbation_consistency":
                table = perturbation_consistency(
                    work, control_key=control_key, null_perturbations=null_perturbations, **raw, **signal
                )
                family_rows = [_significance_row(family, table, "value", fdr)]
            elif family == "perturbation_magnitude":
                table = perturbation_magnitude(
                    work,
                    control_key=control_key,
                    null_perturbations=null_perturbations,
                    max_controls=max_controls,
                    **raw,
                    **signal,
                )
                family_rows = [_significance_row(family, table, "value", fdr)]
            else:
                expr = _expression(adata, work, rep=rep, layer=layer)
                score = interpretability_preservation(
                    expr,
                    use_rep=_RAW_REP,
                    layer=layer,
                    protocol=protocol,
                    rng=seed,
                    accelerator=accelerator,
                    perturbation_key=perturbation_key,
                    **keys,
                    **dict(interpretability_kwargs or {}),
                )
                n_test = expr.uns["interpretability_preservation"]["n_test"]
                level = RANDOM_LEVELS["interpretability"]
                family_rows = [_row(family, score["score"], pd.NA, n_test, random_level=level, unit="score (0-100)")]
                table = score.to_frame("value")
            rows += [{"representation": label, **row} for row in family_rows]
            details[label][family] = table.set_axis(table.index.astype(str))
            done = ", ".join(f"{row['metric']} {_shown(row)}" for row in family_rows)
            _progress(
                f"evaluate_map: {label} [{n_rep}/{len(reps)}], {family} [{step}/{len(chosen)}]: {done} "
                f"({time.perf_counter() - start:.1f} s)"
            )
        checked = [
            m
            for m in CONTROL_FAMILIES
            if m in control_families and (null_perturbations is None or m == "phenotypic_activity")
        ]
        if calibration and control_key is not None and checked:
            start = time.perf_counter()
            try:
                check = calibration_check(
                    work,
                    use_rep=_RAW_REP,
                    metrics=checked,
                    perturbation_key=perturbation_key,
                    profile_correction=profile_correction,
                    null=null,
                    max_controls=max_controls,
                    null_size=null_size,
                    signal_null_size=signal_null_size,
                    fdr=fdr,
                    rng=seed,
                    accelerator=accelerator,
                    **keys,
                )
            except TooFewControls as err:
                _progress(f"evaluate_map: skipping the calibration check of {label}: {err}")
            else:
                rates = check["false_positive_rate"] * check["n_pseudo"]
                rows += [
                    {
                        "representation": label,
                        **_row(
                            f"{m}_calibration",
                            r["false_positive_rate"],
                            round(rates[m]),
                            r["n_pseudo"],
                            counted="pseudo-perturbations",
                            note=_CALIBRATION_NOTE,
                        ),
                    }
                    for m, r in check.iterrows()
                ]
                details[label]["calibration"] = check
                fpr = ", ".join(f"{m} {100 * r:.1f} %" for m, r in check["false_positive_rate"].items())
                _progress(
                    f"evaluate_map: {label} [{n_rep}/{len(reps)}], calibration check (false-positive rates): {fpr} "
                    f"({time.perf_counter() - start:.1f} s)"
                )
    out = pd.DataFrame(rows, columns=COLUMNS).astype({"n_significant": "Int64", "fair_across_spaces": bool})
    params = {
        "use_reps": reps,
        "metrics": chosen,
        "perturbation_key": perturbation_key,
        "batch_key": batch_key,
        "control_key": control_key,
        "output_tvn": output_tvn,
        "profile_correction": profile_correction,
        "null": null,
        "calibration": calibration,
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
