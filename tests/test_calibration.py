"""Calibration: every p-value the package reports holds its nominal rate on pure noise with batch effects.

Pure-noise screens (Gaussian profiles, a random shift per batch, perturbations with no effect) over the number of
controls per batch, batches, dimensions, replicates, replicate layouts and profile corrections: the fraction
flagged significant stays at most the FDR. Each p-value is valid, but the perturbations of a batch are compared
with the same held-out controls, so within one screen their p-values are dependent and the share below ``alpha``
scatters more than a binomial: uniformity (Kolmogorov-Smirnov) and the share at ``p < alpha`` (within 3 binomial
standard deviations) are checked where the controls are many. The property tests are derandomized (the same
examples on every run) and use small nulls.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import kstest

import scsemiclip as ssc
from scsemiclip.tl._calibration import MIN_CONTROLS_PER_BATCH

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
sys.path.insert(0, BENCHMARKS)  # benchmarks/calibration.py imports its _common by name
try:
    from calibration import FAMILIES, noise_screen  # the screen and metrics of the calibration benchmark
finally:
    sys.path.remove(BENCHMARKS)

ALPHA = 0.05


def _bound(rate: float, n: int) -> float:
    return rate + 3 * np.sqrt(rate * (1 - rate) / n)


def _evaluate(adata: ad.AnnData, **kwargs) -> dict[str, pd.DataFrame]:
    ssc.tl.evaluate_map(
        adata,
        use_reps="X_noise",
        metrics=kwargs.pop("metrics", FAMILIES),
        null_size=300,
        signal_null_size=100,
        calibration=False,
        **kwargs,
    )
    return adata.uns["evaluate_map"]["details"]["X_noise"]


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    n_controls=st.integers(MIN_CONTROLS_PER_BATCH, 24),
    n_batches=st.integers(1, 4),
    d=st.sampled_from([4, 16, 48]),
    k=st.integers(5, 7),
    correction=st.sampled_from(["standardize", "center", "tvn", None]),
    layout=st.sampled_from(["spread", "single"]),
    seed=st.integers(0, 2**16),
)
def test_perturbation_signal_is_calibrated_on_pure_noise(n_controls, n_batches, d, k, correction, layout, seed):
    adata = noise_screen(n_controls=n_controls, n_batches=n_batches, d=d, k=k, layout=layout, seed=seed)
    details = _evaluate(adata, metrics=FAMILIES[1:], profile_correction=correction, rng=seed)
    for family in FAMILIES[1:]:
        assert details[family]["significant"].mean() <= ALPHA, family


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    n_controls=st.integers(MIN_CONTROLS_PER_BATCH, 24),
    n_batches=st.integers(1, 4),
    d=st.sampled_from([4, 16, 48]),
    correction=st.sampled_from(["standardize", "center", "tvn"]),
    seed=st.integers(0, 2**16),
)
def test_phenotypic_activity_is_calibrated_on_pure_noise(n_controls, n_batches, d, correction, seed):
    """Replicates spread over the batches like the controls (the layout of the random-ranking null)."""
    adata = noise_screen(n_controls=n_controls, n_batches=n_batches, d=d, seed=seed)
    table = _evaluate(adata, metrics=FAMILIES[:1], profile_correction=correction, rng=seed)[FAMILIES[0]]
    assert table["significant"].mean() <= ALPHA


@pytest.mark.parametrize("correction", ["standardize", "tvn"])
def test_the_issue_screen_before_and_after(correction):
    """12 controls per batch, all replicates in one batch: efaar's null on a correction fitted on its own controls
    calls many pure-noise perturbations significant; the cross-fitted permutation null none."""
    adata = noise_screen(n_controls=12, n_perts=60, d=32, layout="single", seed=1)
    before = _evaluate(adata, metrics=FAMILIES[1:], profile_correction=correction, null="efaar")
    after = _evaluate(adata, metrics=FAMILIES[1:], profile_correction=correction)
    for family in FAMILIES[1:]:
        assert before[family]["significant"].mean() > 0.15
        assert after[family]["significant"].mean() == 0


def test_p_values_are_uniform_with_many_controls():
    """Kolmogorov-Smirnov against the uniform distribution (the perturbations of a batch share its null controls,
    so their p-values are dependent; with many controls the dependence fades)."""
    adata = noise_screen(n_controls=150, n_batches=2, n_perts=150, k=5, d=8, seed=5)
    details = _evaluate(adata, profile_correction="standardize")
    for family in FAMILIES[1:]:
        p_values = details[family]["p_value"]
        assert kstest(p_values, "uniform").pvalue > 0.001, family
        assert (p_values < ALPHA).mean() <= _bound(ALPHA, len(p_values)), family


def test_too_few_controls_per_batch_is_an_error_naming_the_batch():
    adata = noise_screen(n_controls=MIN_CONTROLS_PER_BATCH)
    first = np.arange(adata.n_obs) == np.flatnonzero(adata.obs["is_control"])[0]  # b0's first control: now G0
    adata.obs["is_control"] = adata.obs["is_control"].to_numpy() & ~first
    adata.obs["perturbation"] = np.where(first, "G0", adata.obs["perturbation"])
    with pytest.raises(ValueError, match=r"batch 'b0' of adata.obs\['batch'\] has 3 control\(s\).*at least 4"):
        _evaluate(adata, metrics=FAMILIES[1:2])
    _evaluate(adata, metrics=FAMILIES[1:2], null="efaar")  # efaar's null takes any number (uncalibrated)


def test_calibration_check_reports_false_positive_rates_and_warns():
    adata = noise_screen(n_controls=60, n_perts=40, d=16, layout="single", seed=3)
    ssc.pp.standardize(adata, use_rep="X_noise", key_added="X_fitted_on_all")  # fitted on every control: double dipping
    kwargs = {"null_size": 500, "signal_null_size": 200, "profile_correction": None, "n_pseudo": 20}
    good = ssc.tl.calibration_check(adata, use_rep="X_noise", **kwargs)
    assert list(good.index) == FAMILIES and good["calibrated"].all() and (good["n_pseudo"] == 20).all()
    assert adata.uns["calibration_check"]["params"]["n_pseudo"] == 20
    pd.testing.assert_frame_equal(good, ssc.tl.calibration_check(adata, use_rep="X_noise", **kwargs))
    with pytest.warns(UserWarning, match="not calibrated on these data"):
        bad = ssc.tl.calibration_check(
            adata, use_rep="X_noise", **{**kwargs, "profile_correction": "standardize"}, null="efaar"
        )
    assert not bad["calibrated"].all()
    with pytest.raises(ValueError, match="needs 10"):
        ssc.tl.calibration_check(noise_screen(n_controls=8), use_rep="X_noise")
    with pytest.raises(ValueError, match="`metrics`"):
        ssc.tl.calibration_check(adata, use_rep="X_noise", metrics=["recall"])


def test_evaluate_map_reports_the_calibration_next_to_the_results():
    adata = noise_screen(n_controls=40, n_perts=40, d=8, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a calibrated evaluation does not warn
        table = ssc.tl.evaluate_map(adata, use_reps="X_noise", metrics=FAMILIES, null_size=300, signal_null_size=100)
    rows = table.set_index("metric")
    for family in FAMILIES:
        assert 0 <= rows.loc[f"{family}_calibration", "value"] <= 1
        assert rows.loc[f"{family}_calibration", "n_total"] >= 10
    assert adata.uns["evaluate_map"]["details"]["X_noise"]["calibration"]["calibrated"].all()
    few = noise_screen(n_controls=6, n_perts=20, d=8)
    table = ssc.tl.evaluate_map(few, use_reps="X_noise", metrics=FAMILIES[1:2], signal_null_size=50)
    assert not table["metric"].str.endswith("_calibration").any()  # too few controls: skipped, logged
