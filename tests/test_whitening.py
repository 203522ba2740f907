"""Robust whitening: the corrections that feed the adapter never blow up near-collapsed control directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import scsemiclip as ssc
from scsemiclip._core import (
    EIGENVALUE_FLOOR,
    apply_maps,
    correction_maps,
    fit_whitening,
    sample_pea_bank,
    step_mask,
    zca_tvn_maps,
    zca_tvn_rows,
)


def _collapsed_controls(rng: np.random.Generator, n: int, d: int, n_collapsed: int, scale: float) -> np.ndarray:
    """Controls whose last ``n_collapsed`` directions (a random rotation of them) have variance ``scale**2``."""
    spread = np.ones(d)
    spread[d - n_collapsed :] = scale
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (rng.normal(size=(n, d)) * spread) @ rotation + rng.normal(size=d)


def _standardized_cov(ctrl: np.ndarray) -> np.ndarray:
    """The control covariance after TVN's center and scale steps (what the whitening step decomposes)."""
    std = ctrl.std(0)
    z = (ctrl - ctrl.mean(0)) / np.where(std > 0, std, 1.0)
    return np.cov(z.T, ddof=0)


def _tvn_whitening(ctrl: np.ndarray, floor: float, basis: str = "zca") -> np.ndarray:
    """The linear part of the center-scale-rotate-whiten map fitted on ``ctrl`` (float64)."""
    x = torch.as_tensor(ctrl, dtype=torch.float64)
    ones = torch.ones((1, x.shape[0]), dtype=torch.float64)
    return fit_whitening(x, ones, step_mask(("tvn",)), basis=basis, eigenvalue_floor=floor).weight[0].numpy()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 60),
    d=st.integers(2, 12),
    n_collapsed=st.integers(0, 6),
    scale=st.sampled_from([1.0, 1e-2, 1e-4, 1e-8, 0.0]),
    floor=st.sampled_from([1e-4, 1e-3, 1e-2, 0.1, 0.5]),
)
def test_whitening_gain_is_bounded_by_the_floor(seed, n, d, n_collapsed, scale, floor):
    """For any controls: the whitening applied after TVN's center / scale steps has gain <= 1/sqrt(floor * lambda_max).

    lambda_max is the largest eigenvalue of the standardized control covariance, so no direction is scaled up by more
    than 1/sqrt(floor) times the best-conditioned one, whatever the number of controls or the collapse.
    """
    rng = np.random.default_rng(seed)
    ctrl = _collapsed_controls(rng, n, d, min(n_collapsed, d - 1), scale)
    std = ctrl.std(0)
    scale_step = 1.0 / np.where(std > 10 * np.finfo(float).eps * max(std.max(), 1.0), std, 1.0)
    whitening = np.diag(1.0 / scale_step) @ _tvn_whitening(ctrl, floor)  # undo the scale step: the whiten part
    lam_max = np.linalg.eigvalsh(_standardized_cov(ctrl)).max()
    gain = np.linalg.norm(whitening, 2)
    if lam_max > 1e-12:
        assert gain <= (1 + 1e-6) / np.sqrt(floor * lam_max)
    # the best-conditioned direction is still whitened to unit control variance
    out = (ctrl - ctrl.mean(0)) * scale_step @ whitening
    assert np.linalg.eigvalsh(np.cov(out.T, ddof=0)).max() <= 1 + 1e-6


def test_collapsed_directions_are_not_blown_up():
    """A latent with 3 nearly collapsed control directions: full TVN scales them to unit variance, the floor does not."""
    rng = np.random.default_rng(0)
    ctrl = _collapsed_controls(rng, 200, 10, 3, 1e-3)
    full, robust = _tvn_whitening(ctrl, 0.0), _tvn_whitening(ctrl, 1e-2)
    lam = np.linalg.eigvalsh(_standardized_cov(ctrl))
    assert lam.max() / lam.min() > 1e5
    assert np.linalg.norm(full, 2) > 100 * np.linalg.norm(robust, 2)
    spectrum = np.linalg.eigvalsh(np.cov((ctrl @ robust).T, ddof=0))
    assert spectrum.max() == pytest.approx(1.0)
    assert (spectrum < 1e-2).sum() == 3  # the collapsed directions stay small instead of becoming unit-variance noise


def test_well_conditioned_controls_are_unchanged():
    """When no control eigenvalue falls below the floor, robust and full whitening are the same map."""
    rng = np.random.default_rng(1)
    ctrl = rng.normal(size=(300, 8)) * np.linspace(1, 2, 8)
    lam = np.linalg.eigvalsh(_standardized_cov(ctrl))
    assert lam.min() / lam.max() > 0.1
    for basis in ("pca", "zca"):
        np.testing.assert_array_equal(_tvn_whitening(ctrl, 0.1, basis), _tvn_whitening(ctrl, 0.0, basis))


def _batched(rng: np.random.Generator, collapsed: bool):
    n, d = 240, 8
    x = _collapsed_controls(rng, n, d, 2, 1e-4 if collapsed else 1.0)
    codes = np.repeat(np.arange(3), n // 3)
    is_control = rng.random(n) < 0.5
    return x, is_control, codes, ["a", "b", "c"]


def test_every_adapter_correction_is_robust_by_default():
    """The input / teacher TVN and PEA's bank floor the eigenvalues by default; 0 reproduces full whitening."""
    x, is_control, codes, labels = _batched(np.random.default_rng(2), collapsed=True)
    robust = zca_tvn_maps(x, is_control, codes, labels, batch_key="b", coral_reg=0.5)
    full = zca_tvn_maps(x, is_control, codes, labels, batch_key="b", coral_reg=0.5, eigenvalue_floor=0.0)
    reference = correction_maps(x, is_control, codes, labels, method="tvn", batch_key="b", basis="zca")
    torch.testing.assert_close(full.weight, reference.weight, rtol=0, atol=0)
    gain = torch.linalg.matrix_norm(robust.weight, ord=2).max().item()
    assert torch.linalg.matrix_norm(full.weight, ord=2).max().item() > 50 * gain
    rows = np.arange(0, x.shape[0], 2)
    np.testing.assert_array_equal(
        zca_tvn_rows(x, is_control, codes, labels, rows=rows, batch_key="b", coral_reg=0.5, dtype=np.float64),
        apply_maps(x, robust, codes, rows=rows),
    )
    ctrl = [torch.as_tensor(x[is_control & (codes == b)]) for b in range(3)]
    banks = [
        sample_pea_bank(ctrl, bank_size=8, transforms=("tvn",), p_drop=0.0, generator=torch.Generator().manual_seed(0))
        for _ in range(2)
    ]
    unfloored = sample_pea_bank(
        ctrl,
        bank_size=8,
        transforms=("tvn",),
        p_drop=0.0,
        eigenvalue_floor=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(banks[0].maps.weight, banks[1].maps.weight, rtol=0, atol=0)
    bank_gain = torch.linalg.matrix_norm(banks[0].maps.weight, ord=2).max().item()
    assert torch.linalg.matrix_norm(unfloored.maps.weight, ord=2).max().item() > 10 * bank_gain
    assert EIGENVALUE_FLOOR > 0


def test_pp_tvn_default_stays_full_whitening(emb_adata):
    """``pp.tvn`` with its defaults whitens fully (it equals efaar; tests/test_pp.py checks the values)."""
    codes, labels = np.unique(emb_adata.obs["batch"].to_numpy(), return_inverse=True)[::-1]
    x = emb_adata.obsm["X_emb"]
    is_control = emb_adata.obs["is_control"].to_numpy()
    out = ssc.pp.tvn(emb_adata, use_rep="X_emb", copy=True).obsm["X_emb_tvn"]
    maps = correction_maps(x, is_control, codes, list(labels), method="tvn", batch_key="batch", eigenvalue_floor=0.0)
    np.testing.assert_allclose(out, apply_maps(x, maps, codes), rtol=0, atol=1e-12)


@pytest.mark.parametrize("floor", [-0.1, 1.0, float("nan"), "0.1"])
def test_bad_floor_is_named(floor):
    x, is_control, codes, labels = _batched(np.random.default_rng(3), collapsed=False)
    with pytest.raises((ValueError, TypeError), match="eigenvalue_floor"):
        zca_tvn_maps(x, is_control, codes, labels, batch_key="b", coral_reg=0.5, eigenvalue_floor=floor)


def test_model_option_reaches_the_corrections():
    """``SemiClipped(eigenvalue_floor=...)`` reaches the teacher's TVN and PEA's bank; it is checked and recorded."""
    from scsemiclip.model import SemiClipped

    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=20, n_doses=1, n_replicates=2, n_batches=2, n_controls=6, n_genes=40, n_ood_genes=25, rng=0
    )
    student, teacher = data["student"], data["teacher"]
    SemiClipped.setup_anndata(student, student_rep="X_emb", pair_keys=("perturbation", "dose"))
    models = {
        floor: SemiClipped(student, teacher, teacher_rep="X_phenom", eigenvalue_floor=floor) for floor in (0.0, 0.5)
    }
    assert [m.module.eigenvalue_floor for m in models.values()] == [0.0, 0.5]
    assert models[0.5].init_args["eigenvalue_floor"] == 0.5
    assert not torch.equal(models[0.0].module.teacher, models[0.5].module.teacher)
    assert SemiClipped(student, teacher, teacher_rep="X_phenom").eigenvalue_floor == EIGENVALUE_FLOOR
    with pytest.raises(ValueError, match="eigenvalue_floor"):
        SemiClipped(student, teacher, teacher_rep="X_phenom", eigenvalue_floor=1.5)
