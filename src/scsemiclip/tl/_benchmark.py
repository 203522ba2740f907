"""Multi-method, multi-seed benchmark of distillation objectives with and without PEA (the paper's Table 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

from scsemiclip._utils import Timer, get_rep, logger
from scsemiclip.datasets import SOURCES
from scsemiclip.module import OBJECTIVES
from scsemiclip.pp import tvn

from ._interpretability import interpretability_preservation
from ._random import random_baseline
from ._recall import known_relationship_recall, resolve_sources
from ._semiclipped import apply_semiclipped, fit_semiclipped

if TYPE_CHECKING:
    from ._recall import SourcesLike

#: Baselines :func:`benchmark` can add: the student embedding itself, and a random embedding of its shape.
BASELINES = ("unimodal", "random")
#: Key of the embedding under evaluation in the working copies of the benchmark.
_EVAL_KEY = "X_benchmark"


def evaluate_representations(
    adata: ad.AnnData,
    reps: Mapping[str, str],
    *,
    perturbation_key: str = "perturbation",
    batch_key: str | None = "batch",
    control_key: str | None = "is_control",
    output_tvn: bool = True,
    interpretability: bool = True,
    layer: str | None = None,
    sources: SourcesLike = SOURCES,
    rng: int = 0,
    **interpretability_kwargs: object,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Recall (and interpretability) of several embeddings of one AnnData, as the paper evaluates them.

    Each embedding is TVN-corrected on the data's controls (when ``output_tvn`` and controls exist; efaar's PCA
    basis, with per-batch CORAL), aggregated per perturbation and scored against the relationship databases
    (:func:`~scsemiclip.tl.known_relationship_recall`); interpretability preservation
    (:func:`~scsemiclip.tl.interpretability_preservation`) is computed on the raw embedding, and only when the data
    has controls and batches (paper appendix A.2).

    Parameters
    ----------
    adata
        Per-sample data with the embeddings in ``obsm`` (and expression counts for interpretability).
    reps
        Row label -> ``obsm`` key of each embedding to evaluate.
    perturbation_key, batch_key, control_key
        ``obs`` columns (``control_key=None``: no controls, hence no output TVN and no interpretability).
    output_tvn
        TVN-correct each embedding before the recall.
    interpretability
        Also score interpretability preservation.
    layer
        Layer with the expression counts; ``None``: ``adata.X``.
    sources
        Relationship databases, see :func:`~scsemiclip.tl.known_relationship_recall`.
    rng
        Seed of the interpretability split and decoder.
    **interpretability_kwargs
        Decoder settings of :func:`~scsemiclip.tl.interpretability_preservation` (``max_epochs``, ``batch_size``,
        ``lr``, ``accelerator``, ...).

    Returns
    -------
    The summary table (one row per embedding: the recall of every database, ``"mean"``, and ``"interpretability"``
    when scored) and the per-database recall tables by label. Writes ``obsm[f"{rep}_tvn_eval"]``,
    ``uns[f"recall_{label}"]`` and ``uns["interpretability_preservation"]`` into ``adata``.
    """
    rows, tables = {}, {}
    for label, rep in reps.items():
        use = rep
        if output_tvn and control_key is not None:
            use = f"{rep}_tvn_eval"
            tvn(adata, use_rep=rep, batch_key=batch_key, control_key=control_key, key_added=use)
        table = known_relationship_recall(
            adata,
            use_rep=use,
            perturbation_key=perturbation_key,
            control_key=control_key,
            sources=sources,
            key_added=f"recall_{label}",
        )
        tables[label] = table
        row = table["recall"].to_dict()
        if interpretability and control_key is not None and batch_key is not None:
            score = interpretability_preservation(
                adata,
                use_rep=rep,
                layer=layer,
                batch_key=batch_key,
                perturbation_key=perturbation_key,
                control_key=control_key,
                rng=rng,
                **interpretability_kwargs,
            )
            row["interpretability"] = float(score["score"])
        rows[label] = row
    return pd.DataFrame(rows).T, tables


def _as_tuple(value: object, name: str, kind: type) -> tuple:
    """``value`` (one value or a sequence) as a non-empty tuple of ``kind`` (``str``, ``int`` or ``bool``)."""
    scalar = (str, bool, int, np.integer, np.bool_)
    values = (value,) if isinstance(value, scalar) else tuple(value)  # type: ignore[arg-type]
    if kind is int:
        ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in values)
    elif kind is bool:
        ok = all(isinstance(v, bool | np.bool_) for v in values)
    else:
        ok = all(isinstance(v, kind) for v in values)
    if not values or not ok:
        raise ValueError(f"`{name}` must be one {kind.__name__} or a non-empty sequence of them, got {value!r}.")
    return tuple(kind(v) for v in values)


def _working_copy(
    adata: ad.AnnData, *, student_rep: str, layer: str | None, with_expression: bool, what: str
) -> ad.AnnData:
    """A light AnnData holding ``obs``, the student embedding and (if needed) the expression of ``adata``."""
    counts = None
    if with_expression:
        counts = adata.X if layer is None else adata.layers.get(layer)
        if counts is None:
            where = "X" if layer is None else f"layers[{layer!r}]"
            raise ValueError(
                f"{what} has no expression in {where}, which interpretability preservation decodes; pass "
                "`interpretability=False` or give the counts."
            )
    out = ad.AnnData(X=counts if layer is None else None, obs=adata.obs.copy())
    if layer is not None and counts is not None:
        out.layers[layer] = counts
    out.obsm[student_rep] = get_rep(adata, student_rep, what=what)
    return out


def benchmark(
    student: ad.AnnData,
    *,
    teacher: ad.AnnData,
    ood_sets: Mapping[str, ad.AnnData],
    methods: str | Sequence[str] = ("semiclipped",),
    seeds: int | Sequence[int] = (0, 1, 2),
    pea: bool | Sequence[bool] = (False, True),
    baselines: str | Sequence[str] = BASELINES,
    student_rep: str = "X_scVI",
    teacher_rep: str = "X_phenom",
    pair_keys: str | Sequence[str] = ("perturbation",),
    perturbation_key: str = "perturbation",
    batch_key: str | None = "batch",
    control_key: str | None = "is_control",
    max_epochs: int = 150,
    output_tvn: bool = True,
    interpretability: bool = True,
    interpretability_kwargs: Mapping[str, object] | None = None,
    layer: str | None = None,
    sources: SourcesLike = SOURCES,
    method_kwargs: Mapping[str, Mapping[str, object]] | None = None,
    accelerator: str = "auto",
    **fit_kwargs: object,
) -> pd.DataFrame:
    """Train every method with and without PEA for every seed and evaluate it on out-of-distribution sets.

    For every seed, method (a registered objective, see :func:`~scsemiclip.tl.fit_semiclipped`) and PEA setting,
    an adapter is trained on ``student`` and ``teacher`` with ``rng=seed``, applied to every set of ``ood_sets``
    (:func:`~scsemiclip.tl.apply_semiclipped`: TVN on the set's own controls, adapter) and evaluated as in the paper
    (appendix A.2): known-relationship recall of the adapter output after TVN on the set's controls and
    aggregation per perturbation, and transcriptomic interpretability preservation of the raw output. The
    baselines are evaluated the same way: ``"unimodal"`` the student embedding itself (its recall does not depend
    on the seed; the interpretability decoder does), ``"random"`` uniform noise of its shape
    (:func:`~scsemiclip.tl.random_baseline`, ``rng=seed``).

    Nothing of the inputs is modified: training and evaluation run on light copies (``obs``, the student
    embedding, the expression).

    Parameters
    ----------
    student
        Student (transcriptomics) AnnData to train on, with ``obsm[student_rep]``.
    teacher
        Teacher (microscopy) AnnData with ``obsm[teacher_rep]``.
    ood_sets
        Name -> evaluation AnnData with ``obsm[student_rep]`` (same encoder), the ``obs`` columns and, for
        interpretability, expression counts. Include ``student`` to evaluate in distribution.
    methods
        Objectives to train (``"semiclipped"``, ``"clip"``, ``"siglip"``, ``"vicreg"``, ``"dcca"``, ``"kd"``,
        ``"shake"``, ``"c2kd"``).
    seeds
        Training (and evaluation) seeds.
    pea
        PEA settings to train each method with.
    baselines
        Baselines to add, among ``"unimodal"`` and ``"random"`` (empty: none).
    student_rep, teacher_rep, pair_keys, batch_key, control_key
        See :func:`~scsemiclip.tl.fit_semiclipped`; ``batch_key`` and ``control_key`` also apply to the evaluation
        sets (``control_key=None``: no controls, so no PEA, no output TVN and no interpretability).
    perturbation_key
        ``obs`` column with the gene labels the recall aggregates by.
    max_epochs
        Training epochs of every method.
    output_tvn
        TVN-correct the outputs before the recall (the paper's evaluation); the recall without it is reported too.
    interpretability
        Score interpretability preservation (needs controls, batches and expression counts in every set).
    interpretability_kwargs
        Decoder settings of :func:`~scsemiclip.tl.interpretability_preservation` (``max_epochs``, ``batch_size``,
        ``lr``, ...; the defaults follow Tx-Evaluation, whose 512-sample minibatches leave a decoder on a few
        thousand samples with a handful of steps: give small data more, e.g. ``batch_size=32``, ``lr=1e-3``,
        ``max_epochs=100``).
    layer
        Layer of the evaluation sets with the counts; ``None``: ``X``.
    sources
        Relationship databases of the recall, see :func:`~scsemiclip.tl.known_relationship_recall`.
    method_kwargs
        Method -> keyword arguments of :func:`~scsemiclip.tl.fit_semiclipped` for that method only (e.g. the
        paper's per-method learning rates and epochs, ``objective_kwargs``); they override ``fit_kwargs``.
    accelerator
        Lightning accelerator of the training and (unless ``interpretability_kwargs`` sets it) of the decoder.
    **fit_kwargs
        Further keyword arguments of :func:`~scsemiclip.tl.fit_semiclipped` for every method (``batch_size``,
        ``lr``, ``optimizer``, ``hidden_dims``, ``teacher_tvn``, ``enable_progress_bar``, ...).

    Returns
    -------
    A tidy table, one row per method, PEA setting, seed and evaluation set (baselines with ``pea=False``), with
    columns ``method``, ``pea``, ``seed``, ``dataset``, ``recall_<database>`` for every database,
    ``recall_mean`` (their unweighted mean), ``recall_mean_raw`` (the mean without output TVN; equal to
    ``recall_mean`` without controls or with ``output_tvn=False``) and ``interpretability`` (0-100; NaN when
    not scored). A run whose training diverged (non-finite outputs) is logged as a warning and gets NaN scores.
    """
    methods = _as_tuple(methods, "methods", str)
    seeds = _as_tuple(seeds, "seeds", int)
    pea_settings = _as_tuple(pea, "pea", bool)
    baselines = (baselines,) if isinstance(baselines, str) else tuple(baselines)
    for method in methods:
        if method not in OBJECTIVES:
            raise ValueError(f"Unknown method {method!r} in `methods`; choose from {sorted(OBJECTIVES)}.")
    for name in baselines:
        if name not in BASELINES:
            raise ValueError(f"Unknown baseline {name!r} in `baselines`; choose from {list(BASELINES)}.")
    for name in method_kwargs or {}:
        if name not in methods:
            raise ValueError(f"`method_kwargs` names {name!r}, which is not in `methods` {list(methods)}.")
    if not isinstance(ood_sets, Mapping) or not ood_sets:
        raise ValueError("`ood_sets` must be a non-empty mapping from a name to an evaluation AnnData.")
    columns = ["method", "pea", "seed", "dataset", *(f"recall_{name}" for name in resolve_sources(sources))]
    columns += ["recall_mean", "recall_mean_raw", "interpretability"]
    scored = interpretability and control_key is not None and batch_key is not None
    evaluation = {
        name: _working_copy(
            data, student_rep=student_rep, layer=layer, with_expression=scored, what=f"ood_sets[{name!r}]"
        )
        for name, data in ood_sets.items()
    }
    train = _working_copy(student, student_rep=student_rep, layer=None, with_expression=False, what="student")
    timer = Timer(
        f"benchmarking {len(methods)} method(s) x {len(pea_settings)} PEA setting(s) x {len(seeds)} seed(s) on "
        f"{len(evaluation)} set(s)"
    )

    decoder = {"accelerator": accelerator, **dict(interpretability_kwargs or {})}

    def evaluate(data: ad.AnnData, rep: str, seed: int) -> dict[str, float]:
        keys = {"perturbation_key": perturbation_key, "batch_key": batch_key, "control_key": control_key}
        summary, _ = evaluate_representations(
            data,
            {"eval": rep},
            output_tvn=output_tvn,
            interpretability=scored,
            layer=layer,
            sources=sources,
            rng=seed,
            **keys,
            **decoder,
        )
        row = {f"recall_{k}": float(v) for k, v in summary.loc["eval"].items() if k != "interpretability"}
        raw = row["recall_mean"]
        if output_tvn and control_key is not None:
            plain, _ = evaluate_representations(
                data, {"eval": rep}, output_tvn=False, interpretability=False, sources=sources, **keys
            )
            raw = float(plain.loc["eval", "mean"])
        row["recall_mean_raw"] = raw
        row["interpretability"] = float(summary.loc["eval"].get("interpretability", np.nan))
        return row

    records = []
    for seed in seeds:
        for name, data in evaluation.items():
            for baseline in baselines:
                rep = student_rep
                if baseline == "random":
                    rep = _EVAL_KEY
                    random_baseline(data, use_rep=student_rep, control_key=control_key, key_added=rep, rng=seed)
                records.append(
                    {"method": baseline, "pea": False, "seed": seed, "dataset": name} | evaluate(data, rep, seed)
                )
        for method in methods:
            for use_pea in pea_settings:
                logger.info("benchmark: %s, pea=%s, seed %d", method, use_pea, seed)
                kwargs = {"max_epochs": max_epochs, **fit_kwargs, **dict((method_kwargs or {}).get(method, {}))}
                model = fit_semiclipped(
                    train,
                    teacher=teacher,
                    student_rep=student_rep,
                    teacher_rep=teacher_rep,
                    pair_keys=pair_keys,
                    batch_key=batch_key,
                    control_key=control_key,
                    objective=method,
                    pea=use_pea,
                    accelerator=accelerator,
                    rng=seed,
                    key_added=_EVAL_KEY,
                    **kwargs,
                )
                for name, data in evaluation.items():
                    apply_semiclipped(
                        data, model=model, batch_key=batch_key, control_key=control_key, key_added=_EVAL_KEY
                    )
                    record = {"method": method, "pea": use_pea, "seed": seed, "dataset": name}
                    if np.isfinite(data.obsm[_EVAL_KEY]).all():
                        record |= evaluate(data, _EVAL_KEY, seed)
                    else:
                        logger.warning(
                            "benchmark: %s (pea=%s, seed %d) embeds %r with non-finite values (the training "
                            "diverged; try a lower learning rate); its scores are NaN.",
                            method,
                            use_pea,
                            seed,
                            name,
                        )
                    records.append(record)
    timer.done(f"{len(records)} rows")
    return pd.DataFrame.from_records(records, columns=columns)


def _wilcoxon(with_pea: pd.Series, without: pd.Series, *, alternative: str) -> float:
    """Wilcoxon signed-rank p-value of paired values (zero differences dropped; 1 when none is left)."""
    diff = (with_pea - without).dropna()
    diff = diff[diff != 0]
    if diff.empty:
        return 1.0
    return float(stats.wilcoxon(diff.to_numpy(), alternative=alternative).pvalue)


def benchmark_summary(
    df: pd.DataFrame,
    *,
    metrics: str | Sequence[str] = ("interpretability", "recall_mean"),
    alternative: str = "two-sided",
) -> pd.DataFrame:
    """The paper's Table 1: mean and standard deviation over seeds per method and dataset, PEA against no PEA.

    For every method trained both with and without PEA, a Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`)
    compares the two settings paired by seed; zero differences are dropped (no difference at all gives p = 1).
    With ``n`` seeds the exact test cannot give less than ``2 / 2**n`` two-sided (``1 / 2**n`` one-sided): with
    fewer than 6 seeds a two-sided p-value is never below 0.05 (fewer than 5 for one-sided); the paper uses 15.

    Parameters
    ----------
    df
        The table returned by :func:`benchmark`.
    metrics
        Columns of ``df`` to summarise.
    alternative
        ``"two-sided"``, ``"greater"`` (PEA better) or ``"less"``.

    Returns
    -------
    One row per method and PEA setting (index ``method``, ``pea``; baselines first, then the methods in the order
    of ``df``, each without then with PEA) and columns ``(dataset, metric, statistic)`` with the statistics
    ``mean``, ``std`` (ddof 1), ``n`` (seeds) and ``p_value`` (on the PEA rows; NaN elsewhere).
    """
    metrics = _as_tuple(metrics, "metrics", str)
    missing = [c for c in ("method", "pea", "seed", "dataset", *metrics) if c not in df.columns]
    if missing:
        raise KeyError(f"`df` lacks the column(s) {missing}; pass the table returned by `tl.benchmark`.")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"`alternative` must be 'two-sided', 'greater' or 'less', got {alternative!r}.")
    methods = list(dict.fromkeys(df["method"]))
    methods = [m for m in BASELINES if m in methods] + [m for m in methods if m not in BASELINES]
    datasets = list(dict.fromkeys(df["dataset"]))
    grouped = df.groupby(["method", "pea", "dataset"], sort=False)[list(metrics)]
    agg = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"}, level=1)
    index = pd.MultiIndex.from_tuples(
        [(m, p) for m in methods for p in (False, True) if (m, p) in set(zip(df["method"], df["pea"], strict=True))],
        names=["method", "pea"],
    )
    columns = pd.MultiIndex.from_product(
        [datasets, list(metrics), ["mean", "std", "n", "p_value"]], names=["dataset", "metric", "statistic"]
    )
    out = pd.DataFrame(np.nan, index=index, columns=columns)
    for (method, use_pea, dataset), row in agg.iterrows():
        for metric in metrics:
            for stat in ("mean", "std", "n"):
                out.loc[(method, use_pea), (dataset, metric, stat)] = row[(metric, stat)]
    for method in methods:
        if (method, True) not in index or (method, False) not in index:
            continue
        for dataset in datasets:
            sub = df[(df["method"] == method) & (df["dataset"] == dataset)]
            by_seed = {p: sub[sub["pea"] == p].set_index("seed") for p in (False, True)}
            for metric in metrics:
                p_value = _wilcoxon(by_seed[True][metric], by_seed[False][metric], alternative=alternative)
                out.loc[(method, True), (dataset, metric, "p_value")] = p_value
    return out
