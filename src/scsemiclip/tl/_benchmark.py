"""Multi-method, multi-seed benchmark of distillation objectives with and without PEA (the paper's Table 1).

:func:`benchmark` runs in named steps: :func:`_plan` validates the grid and expands it into runs (seed by seed: the
baselines, then every method x PEA setting), :class:`_Training` trains one run and applies it to every evaluation
set, :class:`_Scoring` scores one representation (:func:`evaluate_representations`), and :func:`_run_grid`
assembles the rows of the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, NamedTuple

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

from scsemiclip._docs import doc_eval_layer, doc_eval_perturbation_key, doc_eval_sources, doc_params
from scsemiclip._utils import Timer, get_rep, logger
from scsemiclip._validate import check_flag, check_int, check_key
from scsemiclip.datasets import SOURCES
from scsemiclip.pp import tvn

from ._interpretability import interpretability_preservation
from ._random import random_baseline
from ._recall import known_relationship_recall, resolve_sources
from ._semiclipped import apply_semiclipped, fit_semiclipped

if TYPE_CHECKING:
    from scsemiclip.model import SemiClipped

    from ._recall import SourcesLike

#: Baselines :func:`benchmark` can add: the student embedding itself, and a random embedding of its shape.
BASELINES = ("unimodal", "random")
#: Key of the embedding under evaluation in the working copies of the benchmark.
_EVAL_KEY = "X_benchmark"
#: Parameter texts shared by :func:`evaluate_representations` and :func:`benchmark`.
_DOCS = {
    "doc_eval_layer": doc_eval_layer,
    "doc_eval_perturbation_key": doc_eval_perturbation_key,
    "doc_eval_sources": doc_eval_sources,
}


def _labelled(use_reps: Mapping[str, str] | Sequence[str] | str) -> dict[str, str]:
    """``use_reps`` as a mapping from row label to ``obsm`` key (a key alone is its own label)."""
    if isinstance(use_reps, str):
        return {use_reps: use_reps}
    if isinstance(use_reps, Mapping):
        return dict(use_reps)
    return {rep: rep for rep in use_reps}


def _scores_interpretability(*, interpretability: bool, batch_key: str | None, control_key: str | None) -> bool:
    """Whether interpretability preservation is scored: asked for, and the data has controls and batches."""
    return interpretability and control_key is not None and batch_key is not None


@doc_params(**_DOCS)
def evaluate_representations(
    adata: ad.AnnData,
    *,
    use_reps: Mapping[str, str] | Sequence[str] | str,
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
    basis, with per-batch CORAL, :func:`~scsemiclip.pp.tvn`), aggregated per perturbation and scored against the
    relationship databases (:func:`~scsemiclip.tl.known_relationship_recall`); interpretability preservation
    (:func:`~scsemiclip.tl.interpretability_preservation`) is computed on the raw embedding, and only when the data
    has controls and batches (paper appendix A.2).

    Parameters
    ----------
    adata
        Per-sample data with the embeddings in ``obsm`` (and expression counts for interpretability).
    use_reps
        Row label -> ``obsm`` key of each embedding to evaluate; a sequence of keys (or one key) labels each
        row by its key.
    {doc_eval_perturbation_key}
    batch_key
        ``obs`` column with the experimental batch (``None``: one batch, hence no interpretability).
    control_key
        Boolean ``obs`` column marking the controls (``None``: no controls, hence no output TVN and no
        interpretability).
    output_tvn
        TVN-correct each embedding on the controls before the recall.
    interpretability
        Also score interpretability preservation (needs controls and batches).
    {doc_eval_layer}
    {doc_eval_sources}
    rng
        Seed of the interpretability split and decoder.
    **interpretability_kwargs
        Decoder settings of :func:`~scsemiclip.tl.interpretability_preservation` (``max_epochs``, ``batch_size``,
        ``lr``, ``accelerator``, ...).

    Returns
    -------
    summary : pandas.DataFrame
        One row per label of ``use_reps`` (in their order) with the columns

        ``<database>``
            Recall of each database of ``sources`` (``recall`` of
            :func:`~scsemiclip.tl.known_relationship_recall`), in the order of ``sources``.
        ``mean``
            Unweighted mean recall over the databases with pairs in the map.
        ``interpretability``
            Interpretability preservation score (0-100); only when it is scored.
    tables : dict of str to pandas.DataFrame
        Label -> table of :func:`~scsemiclip.tl.known_relationship_recall` (index ``source``; columns ``recall``,
        ``n_retrieved``, ``n_pairs``, ``n_genes``).

    Also writes into ``adata``: ``obsm[f"{rep}_tvn_eval"]`` and ``uns[f"{rep}_tvn_eval"]`` (with output TVN),
    ``uns[f"recall_{label}"]`` and, when scored, ``uns["interpretability_preservation"]`` (of the last label).
    """
    check_flag(output_tvn, name="output_tvn")
    check_flag(interpretability, name="interpretability")
    check_key(perturbation_key, name="perturbation_key")
    scored = _scores_interpretability(interpretability=interpretability, batch_key=batch_key, control_key=control_key)
    rows, tables = {}, {}
    for label, rep in _labelled(use_reps).items():
        use = rep
        if output_tvn and control_key is not None:
            use = f"{rep}_tvn_eval"
            tvn(adata, use_rep=rep, batch_key=batch_key, control_key=control_key, key_added=use)
        tables[label] = known_relationship_recall(
            adata,
            use_rep=use,
            perturbation_key=perturbation_key,
            control_key=control_key,
            sources=sources,
            key_added=f"recall_{label}",
        )
        rows[label] = tables[label]["recall"].to_dict()
        if scored:
            keys = {"batch_key": batch_key, "perturbation_key": perturbation_key, "control_key": control_key}
            score = interpretability_preservation(
                adata, use_rep=rep, layer=layer, rng=rng, **keys, **interpretability_kwargs
            )
            rows[label]["interpretability"] = float(score["score"])
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


def _first_unknown(names: Sequence[str], known: Sequence[str] | Mapping[str, object]) -> str | None:
    """The first of ``names`` that is not in ``known``, or ``None``."""
    return next((name for name in names if name not in known), None)


class _Run(NamedTuple):
    """One cell of the benchmark grid: a method (or a baseline, without PEA) with its PEA setting and seed."""

    method: str
    pea: bool
    seed: int

    def row(self, dataset: str) -> dict[str, object]:
        """The identifying columns of this run's row for one evaluation set."""
        return {"method": self.method, "pea": self.pea, "seed": self.seed, "dataset": dataset}


@dataclass(frozen=True)
class _Plan:
    """The validated grid of :func:`benchmark`, expanded into runs seed by seed."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    pea: tuple[bool, ...]
    baselines: tuple[str, ...]

    def baseline_runs(self, seed: int) -> list[_Run]:
        """The baselines of one seed (evaluated first, without training)."""
        return [_Run(method=name, pea=False, seed=seed) for name in self.baselines]

    def training_runs(self, seed: int) -> list[_Run]:
        """The trainings of one seed: every method with every PEA setting."""
        return [_Run(method=m, pea=p, seed=seed) for m, p in product(self.methods, self.pea)]

    def describe(self, n_sets: int) -> str:
        """The size of the grid, for the log."""
        return (
            f"{len(self.methods)} method(s) x {len(self.pea)} PEA setting(s) x {len(self.seeds)} seed(s) on "
            f"{n_sets} set(s)"
        )


def _plan(
    *,
    methods: str | Sequence[str],
    seeds: int | Sequence[int],
    pea: bool | Sequence[bool],
    baselines: str | Sequence[str],
    method_kwargs: Mapping[str, object],
    ood_sets: Mapping[str, ad.AnnData],
) -> _Plan:
    """Validate the grid of :func:`benchmark` (an error names the argument at fault) and expand it into runs."""
    from scsemiclip.module import OBJECTIVES

    plan = _Plan(
        methods=_as_tuple(methods, "methods", str),
        seeds=_as_tuple(seeds, "seeds", int),
        pea=_as_tuple(pea, "pea", bool),
        baselines=(baselines,) if isinstance(baselines, str) else tuple(baselines),
    )
    if (name := _first_unknown(plan.methods, OBJECTIVES)) is not None:
        raise ValueError(f"Unknown method {name!r} in `methods`; choose from {sorted(OBJECTIVES)}.")
    if (name := _first_unknown(plan.baselines, BASELINES)) is not None:
        raise ValueError(f"Unknown baseline {name!r} in `baselines`; choose from {list(BASELINES)}.")
    if (name := _first_unknown(list(method_kwargs), plan.methods)) is not None:
        raise ValueError(f"`method_kwargs` names {name!r}, which is not in `methods` {list(plan.methods)}.")
    if not isinstance(ood_sets, Mapping) or not ood_sets:
        raise ValueError("`ood_sets` must be a non-empty mapping from a name to an evaluation AnnData.")
    return plan


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


@dataclass(frozen=True)
class _Training:
    """How every run of the grid gets its representation of an evaluation set: trained and applied, or a baseline."""

    train: ad.AnnData
    student_rep: str
    batch_key: str | None
    control_key: str | None
    fit_args: Mapping[str, object]
    """Further arguments of :func:`~scsemiclip.tl.fit_semiclipped` that are the same for every run (the teacher,
    its embedding, the pair keys, the accelerator)."""
    fit_kwargs: Mapping[str, object]
    """Settings of every method (``max_epochs`` and :func:`benchmark`'s ``**fit_kwargs``)."""
    method_kwargs: Mapping[str, Mapping[str, object]]

    def fit(self, run: _Run) -> SemiClipped | None:
        """Train the run's method on the training copy, with ``rng=run.seed``; ``None`` (a warning) if it diverged."""
        from scsemiclip.model import TrainingDivergedError

        logger.info("benchmark: %s, pea=%s, seed %d", run.method, run.pea, run.seed)
        kwargs = {**self.fit_kwargs, **dict(self.method_kwargs.get(run.method, {}))}
        try:
            return fit_semiclipped(
                self.train,
                student_rep=self.student_rep,
                batch_key=self.batch_key,
                control_key=self.control_key,
                objective=run.method,
                pea=run.pea,
                rng=run.seed,
                key_added=_EVAL_KEY,
                **self.fit_args,
                **kwargs,
            )
        except TrainingDivergedError as err:
            logger.warning(
                "benchmark: %s (pea=%s, seed %d) stopped with a non-finite loss (%s); its scores are NaN.",
                run.method,
                run.pea,
                run.seed,
                err,
            )
            return None

    def apply(self, run: _Run, model: SemiClipped, name: str, data: ad.AnnData) -> bool:
        """Embed one evaluation set into ``obsm[_EVAL_KEY]``; ``False`` (and a warning) if it is not finite."""
        apply_semiclipped(
            data, model=model, batch_key=self.batch_key, control_key=self.control_key, key_added=_EVAL_KEY
        )
        if np.isfinite(data.obsm[_EVAL_KEY]).all():
            return True
        logger.warning(
            "benchmark: %s (pea=%s, seed %d) embeds %r with non-finite values (the training diverged; try a lower "
            "learning rate); its scores are NaN.",
            run.method,
            run.pea,
            run.seed,
            name,
        )
        return False

    def baseline(self, run: _Run, data: ad.AnnData) -> str:
        """The ``obsm`` key of a baseline's representation of one evaluation set (the random one is drawn here)."""
        if run.method != "random":
            return self.student_rep
        random_baseline(data, use_rep=self.student_rep, control_key=self.control_key, key_added=_EVAL_KEY, rng=run.seed)
        return _EVAL_KEY


@dataclass(frozen=True)
class _Scoring:
    """How every representation is scored: :func:`evaluate_representations` with the benchmark's settings."""

    keys: Mapping[str, str | None]
    """``perturbation_key``, ``batch_key`` and ``control_key``."""
    output_tvn: bool
    interpretability: bool
    layer: str | None
    sources: SourcesLike
    decoder: Mapping[str, object]

    def __call__(self, data: ad.AnnData, rep: str, seed: int) -> dict[str, float]:
        """The score columns of one representation of one evaluation set."""
        summary, _ = evaluate_representations(
            data,
            use_reps={"eval": rep},
            output_tvn=self.output_tvn,
            interpretability=self.interpretability,
            layer=self.layer,
            sources=self.sources,
            rng=seed,
            **self.keys,
            **self.decoder,
        )
        scores = summary.loc["eval"]
        row = {f"recall_{k}": float(v) for k, v in scores.items() if k != "interpretability"}
        row["recall_mean_raw"] = row["recall_mean"]
        if self.output_tvn and self.keys["control_key"] is not None:
            plain, _ = evaluate_representations(
                data,
                use_reps={"eval": rep},
                output_tvn=False,
                interpretability=False,
                sources=self.sources,
                **self.keys,
            )
            row["recall_mean_raw"] = float(plain.loc["eval", "mean"])
        row["interpretability"] = float(scores.get("interpretability", np.nan))
        return row


def _run_grid(
    plan: _Plan, *, training: _Training, scoring: _Scoring, evaluation: Mapping[str, ad.AnnData]
) -> list[dict[str, object]]:
    """The rows of the table, seed by seed: every baseline on every set, then every training on every set."""
    records = []
    for seed in plan.seeds:
        for name, data in evaluation.items():
            for run in plan.baseline_runs(seed):
                records.append(run.row(name) | scoring(data, training.baseline(run, data), seed))
        for run in plan.training_runs(seed):
            model = training.fit(run)
            for name, data in evaluation.items():
                finite = model is not None and training.apply(run, model, name, data)
                records.append(run.row(name) | (scoring(data, _EVAL_KEY, seed) if finite else {}))
    return records


def _columns(sources: SourcesLike) -> list[str]:
    """The columns of :func:`benchmark`'s table."""
    recalls = [f"recall_{name}" for name in resolve_sources(sources)]
    return ["method", "pea", "seed", "dataset", *recalls, "recall_mean", "recall_mean_raw", "interpretability"]


@doc_params(**_DOCS)
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
    student_rep, teacher_rep, pair_keys
        See :func:`~scsemiclip.tl.fit_semiclipped`.
    {doc_eval_perturbation_key}
    batch_key, control_key
        See :func:`~scsemiclip.tl.fit_semiclipped`; they also apply to the evaluation sets (``control_key=None``: no
        controls, so no PEA, no output TVN and no interpretability).
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
    {doc_eval_layer}
    {doc_eval_sources}
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
    check_int(max_epochs, name="max_epochs", minimum=1)
    for name, value in (("output_tvn", output_tvn), ("interpretability", interpretability)):
        check_flag(value, name=name)
    check_key(student_rep, name="student_rep")
    check_key(teacher_rep, name="teacher_rep")
    check_key(perturbation_key, name="perturbation_key")
    plan = _plan(
        methods=methods,
        seeds=seeds,
        pea=pea,
        baselines=baselines,
        method_kwargs=method_kwargs or {},
        ood_sets=ood_sets,
    )
    columns = _columns(sources)  # checks the sources before any training
    scored = _scores_interpretability(interpretability=interpretability, batch_key=batch_key, control_key=control_key)
    evaluation = {
        name: _working_copy(
            data, student_rep=student_rep, layer=layer, with_expression=scored, what=f"ood_sets[{name!r}]"
        )
        for name, data in ood_sets.items()
    }
    training = _Training(
        train=_working_copy(student, student_rep=student_rep, layer=None, with_expression=False, what="student"),
        student_rep=student_rep,
        batch_key=batch_key,
        control_key=control_key,
        fit_args={"teacher": teacher, "teacher_rep": teacher_rep, "pair_keys": pair_keys, "accelerator": accelerator},
        fit_kwargs={"max_epochs": max_epochs, **fit_kwargs},
        method_kwargs=method_kwargs or {},
    )
    scoring = _Scoring(
        keys={"perturbation_key": perturbation_key, "batch_key": batch_key, "control_key": control_key},
        output_tvn=output_tvn,
        interpretability=scored,
        layer=layer,
        sources=sources,
        decoder={"accelerator": accelerator, **dict(interpretability_kwargs or {})},
    )
    timer = Timer(f"benchmarking {plan.describe(len(evaluation))}")
    records = _run_grid(plan, training=training, scoring=scoring, evaluation=evaluation)
    timer.done(f"{len(records)} rows")
    return pd.DataFrame.from_records(records, columns=columns)


def _wilcoxon(with_pea: pd.Series, without: pd.Series, *, alternative: str) -> float:
    """Wilcoxon signed-rank p-value of paired values (zero differences dropped; 1 when none is left)."""
    diff = (with_pea - without).dropna()
    diff = diff[diff != 0]
    if diff.empty:
        return 1.0
    return float(stats.wilcoxon(diff.to_numpy(), alternative=alternative).pvalue)


def _summary_statistics(df: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """The frame of :func:`benchmark_summary` with ``mean``, ``std`` and ``n`` filled in (``p_value`` NaN)."""
    methods = list(dict.fromkeys(df["method"]))
    methods = [m for m in BASELINES if m in methods] + [m for m in methods if m not in BASELINES]
    datasets = list(dict.fromkeys(df["dataset"]))
    grouped = df.groupby(["method", "pea", "dataset"], sort=False)[list(metrics)]
    agg = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"}, level=1)
    present = set(zip(df["method"], df["pea"], strict=True))
    index = pd.MultiIndex.from_tuples(
        [(m, p) for m in methods for p in (False, True) if (m, p) in present], names=["method", "pea"]
    )
    columns = pd.MultiIndex.from_product(
        [datasets, list(metrics), ["mean", "std", "n", "p_value"]], names=["dataset", "metric", "statistic"]
    )
    out = pd.DataFrame(np.nan, index=index, columns=columns)
    for (method, use_pea, dataset), row in agg.iterrows():
        for metric, stat in product(metrics, ("mean", "std", "n")):
            out.loc[(method, use_pea), (dataset, metric, stat)] = row[(metric, stat)]
    return out


def _add_p_values(out: pd.DataFrame, df: pd.DataFrame, metrics: tuple[str, ...], *, alternative: str) -> None:
    """Write into ``out`` the Wilcoxon p-values of every method trained both with and without PEA."""
    methods = dict.fromkeys(out.index.get_level_values("method"))
    paired = [m for m in methods if (m, True) in out.index and (m, False) in out.index]
    for method, dataset in product(paired, dict.fromkeys(df["dataset"])):
        sub = df[(df["method"] == method) & (df["dataset"] == dataset)]
        by_seed = {p: sub[sub["pea"] == p].set_index("seed") for p in (False, True)}
        for metric in metrics:
            p_value = _wilcoxon(by_seed[True][metric], by_seed[False][metric], alternative=alternative)
            out.loc[(method, True), (dataset, metric, "p_value")] = p_value


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
    out = _summary_statistics(df, metrics)
    _add_p_values(out, df, metrics, alternative=alternative)
    return out
