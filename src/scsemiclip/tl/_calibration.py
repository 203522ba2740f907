"""Cross-fitted profile corrections and the calibration check on a screen's own controls.

A correction fitted on the controls that then form a null centres those controls exactly, while every other
profile of the batch keeps the error of the estimated mean (shared by a perturbation's replicates): pure noise
looks significant, the more so the fewer the controls. :func:`cross_fit` fits the correction on a random half of
each batch's controls and leaves the other half for the nulls; :func:`calibration_check` forms pseudo-perturbations
from controls with the screen's replicate and batch layout and measures how often the metrics call them
significant (as SCEPTRE's ``run_calibration_check``). See docs/evaluation.md, "How the p-values are calibrated".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import kstest

from scsemiclip._keys import canonical_keys
from scsemiclip._utils import (
    RNGLike,
    Timer,
    batch_codes,
    check_obs_keys,
    control_mask,
    resolve_rng,
    storable,
    version_info,
)
from scsemiclip._validate import check_choice, check_int, check_key, check_real
from scsemiclip.pp import center, standardize, tvn

from ._map import phenotypic_activity
from ._signal import MIN_NULL_CONTROLS, MIN_REPLICATES, NULLS, perturbation_consistency, perturbation_magnitude

#: Corrections of the profiles compared with the controls (``profile_correction``).
PROFILE_CORRECTIONS = {"standardize": standardize, "center": center, "tvn": tvn}
#: Fewest controls per batch for a cross-fitted correction: 2 to fit it, 2 for the nulls.
MIN_CONTROLS_PER_BATCH = 2 + MIN_NULL_CONTROLS
#: The metric families whose null is drawn from the controls (the ones the check runs).
CONTROL_FAMILIES = ("phenotypic_activity", "perturbation_consistency", "perturbation_magnitude")
#: Fewest pseudo-perturbations for a check to be run.
MIN_PSEUDO = 10
#: Working obs column marking the controls a cross-fitted correction was fitted on.
FITTED_COLUMN = "_scsemiclip_fitted"
#: Label prefix of the pseudo-perturbations.
PSEUDO_PREFIX = "pseudo_"
#: Binomial standard deviations of slack before a false-positive rate counts as above its nominal rate.
SLACK_SDS = 3.0


class TooFewControls(ValueError):
    """The controls do not allow :data:`MIN_PSEUDO` pseudo-perturbations (the check cannot run)."""


def _short_batch(counts: np.ndarray, labels: pd.Index, batch_key: str | None, minimum: int, why: str) -> None:
    """Raise, naming the first batch with fewer than ``minimum`` controls."""
    bad = np.flatnonzero(counts < minimum)
    if bad.size:
        where = "the data" if batch_key is None else f"batch {labels.tolist()[bad[0]]!r} of adata.obs[{batch_key!r}]"
        raise ValueError(
            f"{where} has {counts[bad[0]]} control(s); {why} needs at least {minimum} per batch ({bad.size} "
            "batch(es) short). Add controls, merge small batches, or use `null='efaar'` (not calibrated)."
        )


def cross_fit(
    work: ad.AnnData,
    *,
    use_rep: str,
    key_added: str,
    correction: str | None,
    batch_key: str | None,
    control_key: str,
    null: str,
    rng: RNGLike,
) -> str | None:
    """Correct ``obsm[use_rep]`` into ``obsm[key_added]``, fitted on a random half of each batch's controls.

    With ``null="permutation"`` the correction is fitted on ``n_b // 2`` random controls of each batch (marked in
    ``work.obs[FITTED_COLUMN]``) and the others are left for the nulls; with ``null="efaar"`` it is fitted on all
    controls (efaar's and copairs' numbers). ``correction=None`` copies the embedding.

    Returns
    -------
    The obs column of the fitted controls (the metrics' ``fitted_key``), or ``None`` when none was set aside.

    Raises
    ------
    ValueError
        For a batch with fewer than :data:`MIN_CONTROLS_PER_BATCH` controls (``null="permutation"``).
    """
    is_ctrl = control_mask(work, control_key)
    codes, labels = batch_codes(work, batch_key)
    if null == "efaar" or correction is None:
        if correction is None:
            work.obsm[key_added] = work.obsm[use_rep]
        else:
            PROFILE_CORRECTIONS[correction](
                work, use_rep=use_rep, key_added=key_added, batch_key=batch_key, control_key=control_key
            )
        return None
    counts = np.bincount(codes[is_ctrl], minlength=len(labels))
    _short_batch(
        counts, labels, batch_key, MIN_CONTROLS_PER_BATCH, "a cross-fitted correction (2 to fit, 2 for the null)"
    )
    generator = resolve_rng(rng)
    fitted = np.zeros(work.n_obs, dtype=bool)
    for b in range(len(labels)):
        rows = np.flatnonzero(is_ctrl & (codes == b))
        fitted[generator.choice(rows, size=rows.size // 2, replace=False)] = True
    work.obs[FITTED_COLUMN] = fitted
    PROFILE_CORRECTIONS[correction](
        work, use_rep=use_rep, key_added=key_added, batch_key=batch_key, control_key=FITTED_COLUMN
    )
    return FITTED_COLUMN


def _pseudo_perturbations(
    adata: ad.AnnData,
    *,
    perturbation_key: str,
    batch_key: str | None,
    control_key: str,
    n_pseudo: int,
    generator: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Control rows grouped into pseudo-perturbations with the batch layouts of real perturbations.

    Layouts (batch of each replicate) are taken from randomly ordered real perturbations with at least 2 profiles;
    a layout is used while every batch keeps :data:`MIN_CONTROLS_PER_BATCH` controls and at most half of its
    controls become pseudo-replicates.

    Returns
    -------
    The rows used (``(m,)`` positions in ``adata``) and their pseudo-perturbation index (``(m,)``).
    """
    is_ctrl = control_mask(adata, control_key)
    codes, labels = batch_codes(adata, batch_key)
    perts, _ = canonical_keys(adata.obs[perturbation_key])
    frame = pd.DataFrame({"pert": perts[~is_ctrl], "batch": codes[~is_ctrl]})
    layouts = [np.bincount(g.to_numpy(), minlength=len(labels)) for _, g in frame.groupby("pert", sort=True)["batch"]]
    layouts = [layout for layout in layouts if layout.sum() >= 2]
    available = [generator.permutation(np.flatnonzero(is_ctrl & (codes == b))) for b in range(len(labels))]
    budget = np.array([min(rows.size // 2, rows.size - MIN_CONTROLS_PER_BATCH) for rows in available])
    used = np.zeros(len(labels), dtype=np.int64)
    rows = []
    for i in generator.permutation(len(layouts)):
        if len(rows) == n_pseudo:
            break
        layout = layouts[i]
        if (used + layout > budget).any():
            continue
        rows.append(np.concatenate([available[b][used[b] : used[b] + layout[b]] for b in np.flatnonzero(layout)]))
        used += layout
    group = np.repeat(np.arange(len(rows)), [r.size for r in rows])
    return (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)), group


def calibration_check(
    adata: ad.AnnData,
    *,
    use_rep: str,
    perturbation_key: str = "perturbation",
    batch_key: str | None = "batch",
    control_key: str = "is_control",
    metrics: Sequence[str] = CONTROL_FAMILIES,
    profile_correction: str | None = "standardize",
    null: str = "permutation",
    n_pseudo: int = 100,
    max_controls: int = 1000,
    null_size: int = 10000,
    signal_null_size: int = 1000,
    fdr: float = 0.05,
    rng: RNGLike = 0,
    accelerator: str = "auto",
    key_added: str = "calibration_check",
    warn: bool = True,
) -> pd.DataFrame:
    """How often the metrics call pseudo-perturbations made of controls significant (a check on the user's data).

    As SCEPTRE's ``run_calibration_check``: up to ``n_pseudo`` pseudo-perturbations are formed from control
    profiles, each with the batch layout (replicates per batch) of a random real perturbation; they are held out
    of every correction fit. The data reduced to the other controls and the pseudo-perturbations then go through
    the same corrections and metrics as in :func:`~scsemiclip.tl.evaluate_map` (``profile_correction``
    cross-fitted, ``null``). Nothing distinguishes a pseudo-perturbation from a control, so each metric should
    call about ``fdr`` of them significant at ``p < fdr`` and, after Benjamini-Hochberg, none (at most ``fdr``).
    A rate above its nominal value (beyond ``3`` binomial standard deviations) warns: the metric's p-values are
    not to be trusted on these data.

    Parameters
    ----------
    adata
        Per-sample data (one row per profile, controls included) with the embedding in ``obsm``.
    use_rep
        Key of the embedding in ``adata.obsm``.
    perturbation_key, batch_key, control_key
        Columns of ``adata.obs``: perturbation labels, batch (``None``: one batch), boolean control mark.
    metrics
        Families among ``"phenotypic_activity"``, ``"perturbation_consistency"``, ``"perturbation_magnitude"``.
    profile_correction
        ``"standardize"``, ``"center"``, ``"tvn"`` or ``None``, as in :func:`~scsemiclip.tl.evaluate_map`.
    null
        ``"permutation"`` (cross-fitted correction, calibrated nulls) or ``"efaar"`` (efaar's and copairs' nulls,
        correction fitted on all controls), as in :func:`~scsemiclip.tl.evaluate_map`.
    n_pseudo
        Largest number of pseudo-perturbations (fewer when the controls do not allow them; at least 10).
    max_controls, null_size, signal_null_size, fdr, rng, accelerator
        As in :func:`~scsemiclip.tl.evaluate_map`.
    key_added
        Key of the result in ``adata.uns``.
    warn
        Issue a :class:`UserWarning` for a metric whose false-positive rate is above its nominal rate.

    Returns
    -------
    A table indexed by metric, columns

    ``n_pseudo``
        Pseudo-perturbations scored.
    ``false_positive_rate``
        Fraction of them with ``p_value < fdr`` (nominal: ``fdr``).
    ``upper_bound``
        ``fdr + 3 sqrt(fdr (1 - fdr) / n_pseudo)``: a calibrated metric stays below it but by chance.
    ``fraction_significant``
        Fraction with ``q_value < fdr`` (nominal: 0; at most ``fdr`` in expectation).
    ``ks_p_value``
        Kolmogorov-Smirnov test of the p-values against the uniform distribution (small: not uniform; the
        permutation p-values are discrete, so this is conservative only for many controls).
    ``calibrated``
        ``false_positive_rate <= upper_bound`` and ``fraction_significant <= fdr``.

    Also writes ``adata.uns[key_added]`` = ``{"table": <the table>, "params": {use_rep, perturbation_key,
    batch_key, control_key, profile_correction, null, n_pseudo, fdr, seed}, "version": ...}``.

    Raises
    ------
    ValueError
        When the controls allow fewer than 10 pseudo-perturbations (each batch keeping 4 controls), or for a
        metric not in the list.
    """
    check_key(use_rep, name="use_rep")
    for key, name in ((perturbation_key, "perturbation_key"), (batch_key, "batch_key"), (control_key, "control_key")):
        check_key(key, name=name, none_ok=name == "batch_key")
    check_key(key_added, name="key_added")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for metric in metrics:
        check_choice(metric, name="metrics", choices=CONTROL_FAMILIES)
    if profile_correction is not None:
        check_choice(profile_correction, name="profile_correction", choices=tuple(PROFILE_CORRECTIONS))
    check_choice(null, name="null", choices=NULLS)
    n_pseudo = check_int(n_pseudo, name="n_pseudo", minimum=MIN_PSEUDO)
    fdr = check_real(fdr, name="fdr", low=0, high=1, low_open=True)
    if use_rep not in adata.obsm:
        raise KeyError(f"`use_rep={use_rep!r}` is not in adata.obsm (available: {list(adata.obsm.keys())}).")
    check_obs_keys(adata, [perturbation_key, batch_key, control_key])
    timer = Timer(f"calibration check of {use_rep!r}")
    generator = resolve_rng(rng)
    seed = int(generator.integers(2**62))
    rows, group = _pseudo_perturbations(
        adata,
        perturbation_key=perturbation_key,
        batch_key=batch_key,
        control_key=control_key,
        n_pseudo=n_pseudo,
        generator=generator,
    )
    n_formed = int(group.max()) + 1 if group.size else 0
    if n_formed < MIN_PSEUDO:
        raise TooFewControls(
            f"The controls allow only {n_formed} pseudo-perturbation(s) with the screen's layouts (each batch keeps "
            f"{MIN_CONTROLS_PER_BATCH} controls and gives at most half); the calibration check needs {MIN_PSEUDO}."
        )
    is_ctrl = control_mask(adata, control_key)
    rest = np.setdiff1d(np.flatnonzero(is_ctrl), rows)
    keep = np.concatenate([rest, rows])
    obs_cols = [c for c in dict.fromkeys([perturbation_key, batch_key, control_key]) if c is not None]
    obs = adata.obs.iloc[keep][obs_cols].copy()
    obs[perturbation_key] = np.concatenate(
        [obs[perturbation_key].astype(str).to_numpy()[: rest.size], [f"{PSEUDO_PREFIX}{g}" for g in group]]
    )
    obs[control_key] = np.arange(keep.size) < rest.size
    obs.index = obs.index.astype(str)
    work = ad.AnnData(obs=obs)
    work.obsm[use_rep] = np.asarray(adata.obsm[use_rep])[keep]
    scores = profile_families(
        work,
        metrics=metrics,
        use_rep=use_rep,
        perturbation_key=perturbation_key,
        batch_key=batch_key,
        control_key=control_key,
        profile_correction=profile_correction,
        null=null,
        max_controls=max_controls,
        null_size=null_size,
        signal_null_size=signal_null_size,
        fdr=fdr,
        seed=seed,
        accelerator=accelerator,
    )
    records = {}
    for metric, table in scores.items():
        n = len(table)
        upper = fdr + SLACK_SDS * np.sqrt(fdr * (1 - fdr) / n)
        rate = float((table["p_value"] < fdr).mean())
        significant = float(table["significant"].mean())
        records[metric] = {
            "n_pseudo": n,
            "false_positive_rate": rate,
            "upper_bound": upper,
            "fraction_significant": significant,
            "ks_p_value": float(kstest(table["p_value"].to_numpy(), "uniform").pvalue),
            "calibrated": bool(rate <= upper and significant <= fdr),
        }
    out = pd.DataFrame.from_dict(records, orient="index")
    out.index.name = "metric"
    params = {
        "use_rep": use_rep,
        "perturbation_key": perturbation_key,
        "batch_key": batch_key,
        "control_key": control_key,
        "profile_correction": profile_correction,
        "null": null,
        "n_pseudo": n_formed,
        "fdr": fdr,
        "seed": seed,
    }
    adata.uns[key_added] = {"table": out.copy(), "params": storable(params), "version": version_info()}
    if warn:
        for metric, row in out[~out["calibrated"]].iterrows():
            warnings.warn(
                f"Calibration check of {use_rep!r}: {metric} calls {row['false_positive_rate']:.1%} of "
                f"{row['n_pseudo']} pseudo-perturbations made of controls significant at p < {fdr} (nominal {fdr:.0%}"
                f", {row['fraction_significant']:.1%} at q < {fdr}); its p-values are not calibrated on these data"
                + (" (use `null='permutation'`)." if null == "efaar" else "."),
                UserWarning,
                stacklevel=2,
            )
    timer.done(f"{n_formed} pseudo-perturbations, added uns[{key_added!r}]")
    return out


def profile_families(
    work: ad.AnnData,
    *,
    metrics: Sequence[str],
    use_rep: str,
    perturbation_key: str,
    batch_key: str | None,
    control_key: str,
    profile_correction: str | None,
    null: str,
    max_controls: int,
    null_size: int,
    signal_null_size: int,
    fdr: float,
    seed: int,
    accelerator: str,
    corrected_rep: str = "X_profiles",
) -> dict[str, pd.DataFrame]:
    """The tables of the metric families that compare profiles with the controls, on a cross-fitted correction.

    ``work`` is a working AnnData (its obs gets :data:`FITTED_COLUMN` and its obsm ``corrected_rep``).
    """
    fitted_key = cross_fit(
        work,
        use_rep=use_rep,
        key_added=corrected_rep,
        correction=profile_correction,
        batch_key=batch_key,
        control_key=control_key,
        null=null,
        rng=seed,
    )
    common = {"use_rep": corrected_rep, "perturbation_key": perturbation_key, "control_key": control_key}
    sig = {"fdr": fdr, "rng": seed, "accelerator": accelerator, "fitted_key": fitted_key}
    sig["batch_key"] = batch_key if null == "permutation" else None  # efaar / copairs: every control a negative
    signal = {**sig, "null_size": signal_null_size, "null": null}
    out = {}
    for metric in metrics:
        if metric == "phenotypic_activity":
            out[metric] = phenotypic_activity(work, **common, **sig, null_size=null_size)
        elif metric == "perturbation_consistency":
            out[metric] = perturbation_consistency(work, **common, **signal)
        elif (
            work.obs[perturbation_key][~control_mask(work, control_key)].value_counts() >= MIN_REPLICATES["magnitude"]
        ).any():
            out[metric] = perturbation_magnitude(work, **common, **signal, max_controls=max_controls)
    return out
