"""Did distillation help here? The student against the distilled map on held-out perturbations (:func:`distillation_gain`).

Both maps are scored by the same criterion on the same perturbations, each after TVN on its own controls, and their
difference gets a paired bootstrap interval over perturbations:

- ``"recall"``: known-relationship recall of the held-out perturbations' map (the null: every pair of held-out
  genes), when they are genes of the relationship databases. Recall is invariant to the space a map lives in
  (it ranks each map's cosines within that map's own null), so a student and its distilled map compare fairly.
- ``"teacher_agreement"``: when they are not, the agreement of each map's perturbation-similarity structure with the
  teacher's on the held-out perturbations (per perturbation, the Spearman correlation between its cosines to the
  other held-out perturbations in the map and in the teacher; averaged). It is space-free too, and asks whether
  the teacher's structure transfers to perturbations the adapter has not seen.

The held-out phenotypic-activity mAP is not offered: it scores how well a map separates replicates from controls,
which an adapter of the student can only preserve or lose, so it ranks recipes of one space but cannot compare the
student with a distilled map.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

from scsemiclip._keys import SEP, canonical_keys, pair_key_strings
from scsemiclip._utils import (
    RNGLike,
    Timer,
    check_obs_keys,
    control_mask,
    get_rep,
    logger,
    resolve_rng,
    storable,
    version_info,
)
from scsemiclip._validate import check_choice, check_int, check_key, check_real, check_threshold
from scsemiclip.datasets import SOURCES
from scsemiclip.pp import aggregate, tvn

from ._random_levels import RECALL_THRESHOLD
from ._recall import MIN_GENES, SourcesLike, local_sources, rank_relationships, resolve_sources

#: Criteria of :func:`distillation_gain` (``"auto"`` picks the first that applies).
CRITERIA = ("recall", "teacher_agreement")
#: Fewest known relationships among the held-out genes for ``"recall"`` to apply under ``criterion="auto"``.
MIN_PAIRS = 20
#: Fewest held-out perturbations shared with the teacher for ``"teacher_agreement"``.
MIN_PERTURBATIONS = 10
_REP = "X_distillation_gain"

PerturbationsLike = Sequence[object] | np.ndarray | str | None


def _held_out_rows(
    adata: ad.AnnData, perturbations: PerturbationsLike, *, distilled_rep: str, perturbation_key: str
) -> tuple[np.ndarray, str]:
    """Boolean mask of the held-out rows and where it came from (for the record)."""
    n = adata.n_obs
    if perturbations is None:
        record = adata.uns.get(distilled_rep, {})
        record = record if isinstance(record, dict) else {}
        keys = record.get("validation_keys")
        if keys is not None and len(keys):
            pair_keys = list(np.atleast_1d(record.get("params", {}).get("pair_keys", [perturbation_key])))
            rows, _ = pair_key_strings(adata.obs, pair_keys, what="adata")
            # a recorded key is the joint key string (one entry) or its values, one per pairing column
            held = {SEP.join(canonical_keys(pd.Series(list(np.atleast_1d(key))))[0]) for key in keys}
            return np.isin(rows, list(held)), f"uns[{distilled_rep!r}]['validation_keys']"
        if "pair_counts" in record:
            raise ValueError(
                f"obsm[{distilled_rep!r}] was trained on this data and uns[{distilled_rep!r}] records no held-out keys, "
                "so every perturbation was seen in training; pass `perturbations=` (labels the adapter was not "
                "trained on), fit with `validation_size > 0`, or compare on a screen the model was applied to."
            )
        return np.ones(n, dtype=bool), "all (the map was not trained on this data)"
    if isinstance(perturbations, str):
        check_obs_keys(adata, [perturbations])
        column = adata.obs[perturbations]
        if not pd.api.types.is_bool_dtype(column) or column.isna().any():
            raise ValueError(f"`perturbations={perturbations!r}` names an obs column that is not boolean.")
        return column.to_numpy(dtype=bool), f"obs[{perturbations!r}]"
    values = np.asarray(perturbations)
    if values.dtype == bool:
        if values.shape != (n,):
            raise ValueError(f"A boolean `perturbations` mask must have one value per row ({n}), got {values.shape}.")
        return values.copy(), "mask"
    wanted = set(canonical_keys(pd.Series(list(values)))[0])
    labels = canonical_keys(adata.obs[perturbation_key])[0]
    mask = np.isin(labels, list(wanted))
    missing = wanted - set(labels[mask])
    if missing:
        raise ValueError(
            f"{len(missing)} of the `perturbations` are not in obs[{perturbation_key!r}] "
            f"(e.g. {sorted(missing)[:3]}); give labels of that column."
        )
    return mask, "labels"


def _corrected(adata: ad.AnnData, rep: str, *, batch_key: str | None, control_key: str | None, what: str) -> ad.AnnData:
    """A light AnnData (obs and the map) whose ``obsm[_REP]`` is the map after TVN on its own controls."""
    work = ad.AnnData(obs=adata.obs.copy())
    work.obsm["X_raw"] = np.asarray(get_rep(adata, rep, what=what), dtype=np.float64)
    if control_key is None:
        work.obsm[_REP] = work.obsm["X_raw"]
    else:
        tvn(work, use_rep="X_raw", batch_key=batch_key, control_key=control_key, key_added=_REP)
    return work


def _profiles(work: ad.AnnData, rows: np.ndarray, *, perturbation_key: str, control_key: str | None) -> pd.DataFrame:
    """Mean profile of every held-out perturbation (controls dropped), indexed by canonical label."""
    agg = aggregate(work[rows], use_rep=_REP, by=perturbation_key, control_key=control_key)
    return pd.DataFrame(np.asarray(agg.X, dtype=np.float64), index=canonical_keys(agg.obs_names)[0])


def _recall_counts(x: np.ndarray, genes: pd.Index, tables: dict, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per gene and source, the known relationships it is in and those retrieved: ``(hits, pairs)``, ``(n, S)``.

    A pair counts for both of its genes, so summing a source's column over all genes gives twice its recall's
    numerator and denominator: the ratio is the recall, and a bootstrap over genes reweights whole genes.
    """
    ranks = rank_relationships(x, genes, tables)
    hits = np.zeros((len(genes), len(ranks.sources)))
    pairs = np.zeros_like(hits)
    for s, src in enumerate(ranks.sources.values()):
        left, right = src.retrieved(threshold, ranks.n_null)
        for entity in (src.entity1, src.entity2):
            idx = genes.get_indexer(entity)
            np.add.at(pairs[:, s], idx, 1.0)
            np.add.at(hits[:, s], idx, (left | right).astype(float))
    return hits, pairs


def _recall(hits: np.ndarray, pairs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean recall over sources for each row of gene ``weights`` (``(B, n)``): ``(B,)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        per_source = (weights @ hits) / (weights @ pairs)
    usable = pairs.sum(0) > 0
    return np.nanmean(per_source[:, usable], axis=1)


def _agreement(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per perturbation, Spearman correlation of its cosines to the others in ``x`` and in ``reference``."""

    def cosines(m: np.ndarray) -> np.ndarray:
        unit = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), np.finfo(float).tiny)
        return unit @ unit.T

    a, b = cosines(x), cosines(reference)
    n = a.shape[0]
    off = ~np.eye(n, dtype=bool)
    ra = stats.rankdata(a[off].reshape(n, n - 1), axis=1)
    rb = stats.rankdata(b[off].reshape(n, n - 1), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denom = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return np.where(denom > 0, (ra * rb).sum(1) / np.where(denom > 0, denom, 1.0), 0.0)


def validation_recall(perturbations: Sequence[object]) -> Callable[[np.ndarray, np.ndarray], float | None] | None:
    """The ``validation_recall`` metric of :func:`~scsemiclip.tl.fit_semiclipped`, for a screen of genes.

    Known-relationship recall (two-sided, :data:`~scsemiclip.tl.RECALL_THRESHOLD`, mean over the databases) of the
    held-out perturbations' map: their mean profiles (a gene's keys averaged, e.g. its doses), each pair of held-out
    genes the null. Only the databases already on this machine are used (nothing is downloaded during a fit).

    Parameters
    ----------
    perturbations
        The perturbation of every pairing key, by key code.

    Returns
    -------
    A ``(profiles, key codes) -> recall`` scorer (``None`` on a held-out set with fewer than 20 database genes or
    no known relationship among them), or ``None`` when fewer than 20 perturbations are genes of the local databases.
    """
    tables = local_sources()
    known = set().union(*(set(t[c].cat.categories) for t in tables.values() for c in ("entity1", "entity2")))
    labels = np.asarray([str(p) for p in perturbations], dtype=object)
    in_db = np.isin(labels, list(known))
    if len(np.unique(labels[in_db])) < MIN_GENES:
        return None

    def score(profiles: np.ndarray, keys: np.ndarray) -> float | None:
        keep = in_db[keys]
        genes = pd.DataFrame(profiles[keep]).groupby(labels[keys][keep]).mean()
        if len(genes) < MIN_GENES:
            return None
        try:
            hits, pairs = _recall_counts(genes.to_numpy(), pd.Index(genes.index), tables, RECALL_THRESHOLD)
        except ValueError:  # no known relationship among the held-out genes
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # databases without a held-out pair
            return float(_recall(hits, pairs, np.ones((1, len(genes))))[0])

    return score


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def distillation_gain(
    adata: ad.AnnData,
    *,
    teacher: ad.AnnData | None = None,
    student_rep: str,
    distilled_rep: str = "X_semiclipped",
    teacher_rep: str = "X_phenom",
    perturbations: PerturbationsLike = None,
    perturbation_key: str = "perturbation",
    batch_key: str | None = "batch",
    control_key: str | None = "is_control",
    teacher_batch_key: str | None = None,
    teacher_control_key: str | None = None,
    criterion: str = "auto",
    sources: SourcesLike = SOURCES,
    threshold: float = 0.05,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    rng: RNGLike = 0,
    key_added: str = "distillation_gain",
) -> pd.Series:
    """Did distillation help here? The student against the distilled map on held-out perturbations.

    Both maps are TVN-corrected on their own controls (``pp.tvn``; skipped with ``control_key=None``), restricted
    to the held-out perturbations and mean-aggregated per perturbation, then scored by one criterion:

    - ``"recall"``: known-relationship recall (as :func:`~scsemiclip.tl.known_relationship_recall`) among the
      held-out genes, whose pairs form the null. It applies when the held-out perturbations are at least 20 genes
      with at least 20 known relationships among them.
    - ``"teacher_agreement"``: per held-out perturbation, the Spearman correlation between its cosine similarities
      to the other held-out perturbations in the map and in the teacher (TVN-corrected on the teacher's controls),
      averaged. It needs ``teacher`` and at least 10 held-out perturbations it shares.

    Both compare maps that live in different spaces fairly (each map is ranked against itself). The held-out
    phenotypic-activity mAP is deliberately not a criterion: it measures how well replicates stand out from the
    controls, which an adapter of the student can keep or lose but hardly gain, so it cannot rank the student
    against a distilled map (see docs/validation.md). The interval is a percentile bootstrap over perturbations
    (paired: both maps see the same resamples); the verdict is ``"helped"`` when the whole interval is above 0,
    ``"hurt"`` when it is below, ``"did not help"`` when it covers 0 and ``"cannot tell"`` when no criterion
    applies. One line saying so is logged (at the ``"info"`` verbosity) and returned as ``message``.

    Parameters
    ----------
    adata
        Data holding both maps: ``obsm[student_rep]`` and ``obsm[distilled_rep]`` (e.g. written by
        :func:`~scsemiclip.tl.fit_semiclipped` or :func:`~scsemiclip.tl.apply_semiclipped`).
    teacher
        The teacher AnnData, for ``"teacher_agreement"``; ``None`` rules that criterion out.
    student_rep, distilled_rep, teacher_rep
        Keys of the maps in ``obsm``.
    perturbations
        The held-out perturbations: labels of ``obs[perturbation_key]``, a boolean mask of the rows or the name of a
        boolean obs column. ``None``: the held-out keys recorded in ``uns[distilled_rep]["validation_keys"]`` by a
        fit with a validation split; else every perturbation when ``obsm[distilled_rep]`` was not trained on this
        data (e.g. an out-of-distribution screen); a map trained on every perturbation of ``adata`` is an error.
    perturbation_key
        Column of ``obs`` with the perturbation labels (gene symbols for ``"recall"``); also in ``teacher.obs``.
    batch_key, control_key
        Batch and boolean control columns of ``adata`` for the TVN of both maps; ``control_key=None``: no TVN.
    teacher_batch_key, teacher_control_key
        The teacher's; ``None``: the student's.
    criterion
        ``"auto"`` (``"recall"`` when it applies, else ``"teacher_agreement"`` when it applies, else no verdict),
        ``"recall"`` or ``"teacher_agreement"`` (an error when it does not apply).
    sources
        Relationship databases of ``"recall"`` (as in :func:`~scsemiclip.tl.known_relationship_recall`).
    threshold
        Recall threshold (share of the null in each tail).
    n_bootstrap
        Bootstrap resamples of the perturbations.
    confidence
        Level of the interval, in ``(0, 1)``.
    rng
        Seed or generator of the bootstrap.
    key_added
        Key of the result in ``adata.uns``.

    Returns
    -------
    A :class:`pandas.Series` with

    ``criterion``
        ``"recall"``, ``"teacher_agreement"`` or ``""`` (none applies).
    ``student``, ``distilled``
        The criterion on each map (NaN without a criterion).
    ``difference``, ``ci_low``, ``ci_high``
        ``distilled - student`` and its bootstrap interval.
    ``n_perturbations``
        Held-out perturbations scored (for ``"recall"``: genes in at least one known relationship).
    ``n_pairs``
        Known relationships among them (``"recall"``; 0 otherwise).
    ``verdict``, ``message``
        ``"helped"``, ``"did not help"``, ``"hurt"`` or ``"cannot tell"``, and the sentence logged.

    Also writes ``adata.uns[key_added]`` = ``{"result": <the series as a dict>, "params": {student_rep,
    distilled_rep, teacher_rep, perturbations (where the held-out set came from), perturbation_key, batch_key,
    control_key, criterion, threshold, n_bootstrap, confidence}, "version": ...}``.
    """
    for name, value in (("student_rep", student_rep), ("distilled_rep", distilled_rep), ("teacher_rep", teacher_rep)):
        check_key(value, name=name)
    check_key(perturbation_key, name="perturbation_key")
    for name, value in (
        ("batch_key", batch_key),
        ("control_key", control_key),
        ("teacher_batch_key", teacher_batch_key),
        ("teacher_control_key", teacher_control_key),
    ):
        check_key(value, name=name, none_ok=True)
    check_choice(criterion, name="criterion", choices=("auto", *CRITERIA))
    threshold = check_threshold(threshold, name="threshold")
    check_int(n_bootstrap, name="n_bootstrap", minimum=10)
    confidence = check_real(confidence, name="confidence", low=0, high=1, low_open=True, high_open=True)
    check_key(key_added, name="key_added")
    if student_rep == distilled_rep:
        raise ValueError("`student_rep` and `distilled_rep` name the same map; nothing to compare.")
    gen = resolve_rng(rng)
    check_obs_keys(adata, [perturbation_key])
    timer = Timer(f"distillation gain of obsm[{distilled_rep!r}] over obsm[{student_rep!r}]")
    held, origin = _held_out_rows(adata, perturbations, distilled_rep=distilled_rep, perturbation_key=perturbation_key)
    if control_key is not None:
        held = held & ~control_mask(adata, control_key)
    if not held.any():
        raise ValueError(f"No held-out perturbation rows ({origin}) outside the controls; nothing to compare.")
    maps = {
        name: _profiles(
            _corrected(adata, rep, batch_key=batch_key, control_key=control_key, what="adata"),
            held,
            perturbation_key=perturbation_key,
            control_key=control_key,
        )
        for name, rep in (("student", student_rep), ("distilled", distilled_rep))
    }
    labels = maps["student"].index
    scored = _score(
        maps,
        teacher,
        criterion=criterion,
        sources=sources,
        threshold=threshold,
        teacher_rep=teacher_rep,
        perturbation_key=perturbation_key,
        batch_key=batch_key if teacher_batch_key is None else teacher_batch_key,
        control_key=control_key if teacher_control_key is None else teacher_control_key,
    )
    result = _verdict(scored, n_labels=len(labels), n_bootstrap=n_bootstrap, confidence=confidence, gen=gen)
    params = {
        "student_rep": student_rep,
        "distilled_rep": distilled_rep,
        "teacher_rep": teacher_rep if teacher is not None else None,
        "perturbations": origin,
        "perturbation_key": perturbation_key,
        "batch_key": batch_key,
        "control_key": control_key,
        "criterion": criterion,
        "threshold": threshold,
        "n_bootstrap": n_bootstrap,
        "confidence": confidence,
    }
    adata.uns[key_added] = storable({"result": result.to_dict(), "params": params, "version": version_info()})
    logger.info("%s", result["message"])
    timer.done(f"added uns[{key_added!r}]")
    return result


def _score(
    maps: dict[str, pd.DataFrame],
    teacher: ad.AnnData | None,
    *,
    criterion: str,
    sources: SourcesLike,
    threshold: float,
    teacher_rep: str,
    perturbation_key: str,
    batch_key: str | None,
    control_key: str | None,
) -> dict[str, object] | str:
    """Per-perturbation contributions of both maps under the chosen criterion, or why none applies."""
    genes = pd.Index(maps["student"].index)
    reasons = []
    if criterion in ("auto", "recall"):
        tables = resolve_sources(sources)
        try:
            counts = {name: _recall_counts(m.to_numpy(), genes, tables, threshold) for name, m in maps.items()}
        except ValueError as err:  # too few genes, or none in a known relationship
            counts, reason = None, str(err).rstrip(".")
        else:
            n_pairs = int(counts["student"][1].sum() // 2)
            reason = f"only {n_pairs} known relationship(s) among the held-out genes (at least {MIN_PAIRS} needed)"
            if n_pairs < MIN_PAIRS:
                counts = None
        if counts is not None:
            in_pair = counts["student"][1].sum(1) > 0
            return {
                "criterion": "recall",
                "unit": "held-out genes",
                "n_pairs": n_pairs,
                "parts": {name: (h[in_pair], p[in_pair]) for name, (h, p) in counts.items()},
            }
        if criterion == "recall":
            raise ValueError(f"`criterion='recall'` does not apply: {reason}.")
        reasons.append(f"recall does not apply ({reason})")
    if teacher is None:
        if criterion == "teacher_agreement":
            raise ValueError("`criterion='teacher_agreement'` needs `teacher`.")
        return "; ".join([*reasons, "no teacher was given for teacher agreement"])
    check_obs_keys(teacher, [perturbation_key], what="teacher")
    reference = _profiles(
        _corrected(teacher, teacher_rep, batch_key=batch_key, control_key=control_key, what="teacher"),
        np.ones(teacher.n_obs, dtype=bool),
        perturbation_key=perturbation_key,
        control_key=control_key,
    )
    shared = genes.intersection(reference.index)
    if len(shared) < MIN_PERTURBATIONS:
        reason = f"the teacher shares {len(shared)} held-out perturbation(s) (at least {MIN_PERTURBATIONS} needed)"
        if criterion == "teacher_agreement":
            raise ValueError(f"`criterion='teacher_agreement'` does not apply: {reason}.")
        return "; ".join([*reasons, reason])
    ref = reference.loc[shared].to_numpy()
    return {
        "criterion": "teacher_agreement",
        "unit": "held-out perturbations",
        "n_pairs": 0,
        "parts": {name: _agreement(m.loc[shared].to_numpy(), ref) for name, m in maps.items()},
    }


def _verdict(
    scored: dict[str, object] | str, *, n_labels: int, n_bootstrap: int, confidence: float, gen: np.random.Generator
) -> pd.Series:
    """The values, the paired bootstrap interval of the difference and the verdict."""
    if isinstance(scored, str):
        message = f"Cannot tell whether distillation helped: {scored} ({n_labels} held-out perturbations)."
        return pd.Series(
            {
                "criterion": "",
                "student": np.nan,
                "distilled": np.nan,
                "difference": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "n_perturbations": n_labels,
                "n_pairs": 0,
                "verdict": "cannot tell",
                "message": message,
            },
            name="distillation_gain",
        )
    parts = scored["parts"]
    n = len(next(iter(parts.values()))[0] if scored["criterion"] == "recall" else next(iter(parts.values())))
    weights = np.vstack([np.ones(n), gen.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap)])
    if scored["criterion"] == "recall":
        values = {name: _recall(hits, pairs, weights) for name, (hits, pairs) in parts.items()}
    else:
        values = {name: weights @ per / n for name, per in parts.items()}
    diff = values["distilled"] - values["student"]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diff[1:], [alpha, 1 - alpha])
    verdict = "helped" if low > 0 else "hurt" if high < 0 else "did not help"
    head = {"helped": "Distillation helped", "hurt": "Distillation hurt", "did not help": "Distillation did not help"}
    name = scored["criterion"].replace("_", " ")
    message = (
        f"{head[verdict]}: {name} {values['distilled'][0]:.3f} vs {values['student'][0]:.3f} "
        f"({_signed(diff[0])}, {confidence:.0%} CI {_signed(low)}..{_signed(high)}) over {n} {scored['unit']}."
    )
    return pd.Series(
        {
            "criterion": scored["criterion"],
            "student": float(values["student"][0]),
            "distilled": float(values["distilled"][0]),
            "difference": float(diff[0]),
            "ci_low": float(low),
            "ci_high": float(high),
            "n_perturbations": n,
            "n_pairs": scored["n_pairs"],
            "verdict": verdict,
            "message": message,
        },
        name="distillation_gain",
    )
