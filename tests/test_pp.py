"""Batch corrections, aggregation and PEA (docs/method.md)."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import adata_hash, make_embedding_adata
from efaar_benchmarking.efaar import aggregate as efaar_aggregate
from efaar_benchmarking.efaar import centerscale_on_controls, tvn_on_controls
from scipy import sparse

import scsemiclip as ssc
from scsemiclip._core import (
    EIGENVALUE_FLOOR,
    STEPS,
    fit_corrections,
    sample_control_weights,
    sample_pea_bank,
    sample_steps,
)
from scsemiclip._utils import check_array


def _meta(adata: ad.AnnData) -> pd.DataFrame:
    meta = adata.obs.copy()
    meta["batch"] = meta["batch"].astype(str)
    return meta.reset_index(drop=True)


# --- corrections against their definitions and efaar ------------------------------------------------------


@pytest.mark.parametrize("batch_key", ["batch", None])
def test_tvn_equals_efaar(emb_adata, batch_key):
    ssc.pp.tvn(emb_adata, use_rep="X_emb", batch_key=batch_key)
    ref = tvn_on_controls(emb_adata.obsm["X_emb"], _meta(emb_adata), "perturbation", "NTC", batch_key)
    np.testing.assert_allclose(emb_adata.obsm["X_emb_tvn"], ref, atol=1e-6, rtol=0)


def test_tvn_equals_efaar_high_dim_real_scale():
    adata = make_embedding_adata(n_obs=2000, n_dims=64, n_batches=5, seed=3)
    adata.obsm["X_emb"] = adata.obsm["X_emb"] * 50 + 7
    ssc.pp.tvn(adata, use_rep="X_emb")
    ref = tvn_on_controls(adata.obsm["X_emb"], _meta(adata), "perturbation", "NTC", "batch")
    np.testing.assert_allclose(adata.obsm["X_emb_tvn"], ref, atol=1e-6, rtol=0)


def test_standardize_equals_definition_and_efaar(emb_adata):
    ssc.pp.standardize(emb_adata, use_rep="X_emb")
    x, obs = emb_adata.obsm["X_emb"], emb_adata.obs
    expected = np.empty_like(x)
    for b in obs.batch.unique():
        rows = (obs.batch == b).to_numpy()
        ctrl = x[rows & obs.is_control.to_numpy()]
        expected[rows] = (x[rows] - ctrl.mean(0)) / ctrl.std(0)
    np.testing.assert_allclose(emb_adata.obsm["X_emb_standardize"], expected, atol=1e-10)
    ref = centerscale_on_controls(x, _meta(emb_adata), "perturbation", "NTC", "batch")
    np.testing.assert_allclose(emb_adata.obsm["X_emb_standardize"], ref, atol=1e-10)


def test_center_equals_definition(emb_adata):
    ssc.pp.center(emb_adata, use_rep="X_emb", key_added="centred")
    x, obs = emb_adata.obsm["X_emb"], emb_adata.obs
    for b in obs.batch.unique():
        rows = (obs.batch == b).to_numpy()
        ctrl_mean = x[rows & obs.is_control.to_numpy()].mean(0)
        np.testing.assert_allclose(emb_adata.obsm["centred"][rows], x[rows] - ctrl_mean, atol=1e-12)
    assert emb_adata.uns["centred"]["params"]["use_rep"] == "X_emb"


def test_zero_std_counts_as_one(emb_adata):
    emb_adata.obsm["X_emb"][:, 0] = 5.0
    ssc.pp.standardize(emb_adata, use_rep="X_emb")
    np.testing.assert_allclose(emb_adata.obsm["X_emb_standardize"][:, 0], 0.0)


def test_tvn_zca_same_cosines_and_keeps_basis(emb_adata):
    ssc.pp.tvn(emb_adata, use_rep="X_emb", key_added="pca")
    ssc.pp.tvn(emb_adata, use_rep="X_emb", basis="zca", key_added="zca")

    def cos(a):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        return a @ a.T

    np.testing.assert_allclose(cos(emb_adata.obsm["pca"]), cos(emb_adata.obsm["zca"]), atol=1e-10)
    # zca is basis-preserving: the same data with permuted, sign-flipped coordinates gives the same result with
    # permuted, sign-flipped coordinates (pca is not: its output basis is that of the controls' eigenvectors)
    rng = np.random.default_rng(0)
    q = np.eye(16)[rng.permutation(16)] * rng.choice([-1.0, 1.0], size=16)
    rot = emb_adata.copy()
    rot.obsm["X_emb"] = emb_adata.obsm["X_emb"] @ q
    ssc.pp.tvn(rot, use_rep="X_emb", basis="zca", key_added="zca")
    np.testing.assert_allclose(rot.obsm["zca"], emb_adata.obsm["zca"] @ q, atol=1e-8)


def test_tvn_whitens_controls(emb_adata):
    ssc.pp.tvn(emb_adata, use_rep="X_emb", batch_key=None, basis="zca")
    ctrl = emb_adata.obsm["X_emb_tvn"][emb_adata.obs.is_control.to_numpy()]
    np.testing.assert_allclose(ctrl.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(np.cov(ctrl, rowvar=False, ddof=0), np.eye(16), atol=1e-8)


def test_tvn_keeps_dimension_with_few_controls():
    adata = make_embedding_adata(n_obs=300, n_dims=40, n_batches=2, control_fraction=0.0, seed=1)
    assert adata.obs.is_control.sum() < 40
    ssc.pp.tvn(adata, use_rep="X_emb")
    out = adata.obsm["X_emb_tvn"]
    assert out.shape == (300, 40)
    assert np.isfinite(out).all()
    assert np.linalg.matrix_rank(out) == 40


def test_copy_returns_new_and_keeps_input(emb_adata):
    before = adata_hash(emb_adata)
    out = ssc.pp.tvn(emb_adata, use_rep="X_emb", copy=True)
    assert isinstance(out, ad.AnnData)
    assert "X_emb_tvn" in out.obsm
    assert "X_emb_tvn" not in emb_adata.obsm
    assert adata_hash(emb_adata) == before


@pytest.mark.parametrize("func", [ssc.pp.center, ssc.pp.standardize, ssc.pp.tvn])
def test_only_documented_keys_written(emb_adata, func):
    x0 = emb_adata.obsm["X_emb"].copy()
    obs0 = emb_adata.obs.copy()
    func(emb_adata, use_rep="X_emb")
    np.testing.assert_array_equal(emb_adata.obsm["X_emb"], x0)
    pd.testing.assert_frame_equal(emb_adata.obs, obs0)
    assert set(emb_adata.obsm) == {"X_emb", f"X_emb_{func.__name__}"}
    assert set(emb_adata.uns) == {f"X_emb_{func.__name__}"}


def test_uns_is_h5ad_storable(emb_adata, tmp_path, func=ssc.pp.tvn):
    func(emb_adata, use_rep="X_emb")
    emb_adata.write_h5ad(tmp_path / "a.h5ad")
    assert ad.read_h5ad(tmp_path / "a.h5ad").uns[f"X_emb_{func.__name__}"]["params"]["use_rep"] == "X_emb"


def test_float32_input_keeps_dtype(emb_adata):
    emb_adata.obsm["X_emb"] = emb_adata.obsm["X_emb"].astype(np.float32)
    ssc.pp.tvn(emb_adata, use_rep="X_emb")
    assert emb_adata.obsm["X_emb_tvn"].dtype == np.float32


# --- bad input ----------------------------------------------------------------------------------------------


def test_missing_rep_names_key(emb_adata):
    with pytest.raises(KeyError, match="X_nope"):
        ssc.pp.tvn(emb_adata, use_rep="X_nope")


@pytest.mark.parametrize("arg", ["batch_key", "control_key"])
def test_missing_obs_column_named(emb_adata, arg):
    with pytest.raises(KeyError, match="nothere"):
        ssc.pp.center(emb_adata, use_rep="X_emb", **{arg: "nothere"})


def test_batch_with_one_control_named(emb_adata):
    rows = np.flatnonzero((emb_adata.obs.batch == "b2") & emb_adata.obs.is_control)
    emb_adata.obs.loc[emb_adata.obs_names[rows[1:]], "is_control"] = False
    with pytest.raises(ValueError, match=r"batch 'b2'.*1 control"):
        ssc.pp.standardize(emb_adata, use_rep="X_emb")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.nan, "NaN or infinite"),
        (np.inf, "NaN or infinite"),
    ],
)
def test_non_finite_embedding(emb_adata, value, match):
    emb_adata.obsm["X_emb"][5, 2] = value
    with pytest.raises(ValueError, match=match):
        ssc.pp.tvn(emb_adata, use_rep="X_emb")


def test_sparse_non_numeric_and_1d(emb_adata):
    emb_adata.obsm["sp"] = sparse.csr_matrix(emb_adata.obsm["X_emb"])
    with pytest.raises(ValueError, match="sparse"):
        ssc.pp.center(emb_adata, use_rep="sp")
    emb_adata.obsm["txt"] = np.full((emb_adata.n_obs, 2), "a", dtype=object)
    with pytest.raises(ValueError, match="numeric"):
        ssc.pp.center(emb_adata, use_rep="txt")
    # AnnData refuses 1-D obsm entries, so 1-D input reaches us only through the array-level helpers
    with pytest.raises(ValueError, match="2-dimensional"):
        check_array(np.ones(3), name="x")


def test_control_column_must_be_boolean(emb_adata):
    emb_adata.obs["is_control"] = emb_adata.obs["is_control"].map({True: "true", False: "false"})
    with pytest.raises(ValueError, match="must be boolean"):
        ssc.pp.center(emb_adata, use_rep="X_emb")


def test_key_added_cannot_overwrite_input(emb_adata):
    with pytest.raises(ValueError, match="key_added"):
        ssc.pp.tvn(emb_adata, use_rep="X_emb", key_added="X_emb")


def test_mark_controls(emb_adata):
    del emb_adata.obs["is_control"]
    ssc.pp.mark_controls(emb_adata, perturbation_key="perturbation", control_values="NTC", key_added="ctrl")
    assert emb_adata.obs["ctrl"].dtype == bool
    assert (emb_adata.obs["ctrl"] == (emb_adata.obs.perturbation == "NTC")).all()
    with pytest.raises(ValueError, match="DMSO"):
        ssc.pp.mark_controls(emb_adata, perturbation_key="perturbation", control_values=["DMSO"])


# --- aggregation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["mean", "median"])
def test_aggregate_equals_efaar(emb_adata, method):
    agg = ssc.pp.aggregate(emb_adata, use_rep="X_emb", method=method)
    ref = efaar_aggregate(
        emb_adata.obsm["X_emb"], emb_adata.obs.reset_index(drop=True), "perturbation", ["NTC"], method=method
    )
    assert list(agg.obs["perturbation"]) == list(ref.metadata["perturbation"])
    np.testing.assert_allclose(agg.X, ref.features.to_numpy(), atol=1e-12)
    counts = emb_adata.obs[~emb_adata.obs.is_control].perturbation.value_counts()
    assert (agg.obs["n_samples"] == counts[agg.obs_names].to_numpy()).all()


# --- PEA ----------------------------------------------------------------------------------------------------


def test_pea_shapes_obs_and_determinism(emb_adata):
    before = adata_hash(emb_adata)
    out = ssc.pp.pea_augment(emb_adata, use_rep="X_emb", n_augmentations=3, rng=7)
    n = int((~emb_adata.obs.is_control).sum())
    assert out.n_obs == 3 * n
    assert not out.obs.is_control.any()
    assert {"pea_transform", "pea_steps", "pea_round", "pea_n_controls"} <= set(out.obs)
    again = ssc.pp.pea_augment(emb_adata, use_rep="X_emb", n_augmentations=3, rng=7)
    np.testing.assert_array_equal(out.obsm["X_emb"], again.obsm["X_emb"])
    other = ssc.pp.pea_augment(emb_adata, use_rep="X_emb", n_augmentations=3, rng=8)
    assert not np.allclose(out.obsm["X_emb"], other.obsm["X_emb"])
    assert adata_hash(emb_adata) == before


def test_pea_transform_mix_and_step_dropout_statistics():
    adata = make_embedding_adata(n_obs=4000, n_dims=8, n_batches=4, seed=2)
    out = ssc.pp.pea_augment(adata, use_rep="X_emb", n_augmentations=2, bank_size=None, p_drop=0.5, rng=0)
    n = out.n_obs
    freq = out.obs.pea_transform.value_counts(normalize=True)
    for name in ("center", "standardize", "tvn"):
        assert abs(freq[name] - 1 / 3) < 4 * math.sqrt(2 / 9 / n), freq
    # each of the 5 TVN steps is kept w.p. 1/2, and when all were dropped one is put back uniformly:
    # P(kept) = 1/2 + (1/2)**5 / 5
    tvn = out.obs[out.obs.pea_transform == "tvn"].pea_steps.astype(str)
    expected = 0.5 + 0.5**5 / 5
    for step in STEPS:
        kept = tvn.str.split("+").apply(lambda s, step=step: step in s).mean()
        assert abs(kept - expected) < 4 * math.sqrt(expected * (1 - expected) / len(tvn)), (step, kept)
    # centering has a single step, never dropped; standardize keeps at least one of its two steps
    assert (out.obs[out.obs.pea_transform == "center"].pea_steps == "center").all()
    std_steps = out.obs[out.obs.pea_transform == "standardize"].pea_steps.astype(str).value_counts(normalize=True)
    assert set(std_steps.index) == {"center", "scale", "center+scale"}
    n_std = int((out.obs.pea_transform == "standardize").sum())
    for steps, prob in {"center": 3 / 8, "scale": 3 / 8, "center+scale": 1 / 4}.items():
        assert abs(std_steps[steps] - prob) < 4 * math.sqrt(prob * (1 - prob) / n_std), std_steps


def test_pea_control_subset_sizes_uniform():
    n_ctrl, k = 40, 20000
    w = sample_control_weights(n_ctrl, k, min_fraction=0.25, generator=torch.Generator().manual_seed(0))
    sizes = w.sum(1).numpy().astype(int)
    low = max(2, math.ceil(0.25 * n_ctrl))
    assert sizes.min() == low
    assert sizes.max() == n_ctrl
    counts = np.bincount(sizes - low, minlength=n_ctrl - low + 1)
    expected = k / (n_ctrl - low + 1)
    assert np.all(np.abs(counts - expected) < 5 * math.sqrt(expected))
    # subsets are uniform over controls: every control is chosen about equally often
    per_control = w.sum(0).numpy()
    assert per_control.std() / per_control.mean() < 0.05
    assert sample_control_weights(3, 10, min_fraction=0.1).sum(1).min() >= 2


def test_pea_fixed_augmentation_is_the_full_correction(emb_adata):
    out = ssc.pp.pea_augment(
        emb_adata, use_rep="X_emb", transforms=("standardize",), p_drop=0, min_control_fraction=1, rng=0
    )
    ssc.pp.standardize(emb_adata, use_rep="X_emb")
    expected = emb_adata.obsm["X_emb_standardize"][~emb_adata.obs.is_control.to_numpy()]
    np.testing.assert_allclose(out.obsm["X_emb"], expected, atol=1e-10)
    n_ctrl = emb_adata.obs[emb_adata.obs.is_control].batch.value_counts()
    assert (out.obs.pea_n_controls == out.obs.batch.map(n_ctrl).astype(int)).all()
    assert out.obs.pea_steps.eq("center+scale").all()


def test_pea_tvn_with_all_steps_is_per_batch_zca_tvn(emb_adata):
    out = ssc.pp.pea_augment(emb_adata, use_rep="X_emb", transforms=("tvn",), p_drop=0, min_control_fraction=1)
    for b in emb_adata.obs.batch.cat.categories:
        sub = emb_adata[emb_adata.obs.batch == b].copy()
        ssc.pp.tvn(sub, use_rep="X_emb", basis="zca", eigenvalue_floor=EIGENVALUE_FLOOR)  # pea_augment's default
        expected = sub.obsm["X_emb_tvn"][~sub.obs.is_control.to_numpy()]
        np.testing.assert_allclose(out.obsm["X_emb"][(out.obs.batch == b).to_numpy()], expected, atol=1e-8)


def test_pea_bank_matches_direct_fit():
    g = torch.Generator().manual_seed(0)
    ctrl = [torch.randn(30, 6, dtype=torch.float64, generator=g) + i for i in range(3)]
    bank = sample_pea_bank(ctrl, bank_size=5, generator=torch.Generator().manual_seed(1))
    assert len(bank.maps) == 15
    # map j of batch b re-fitted on the same controls reproduces the bank entry
    g2 = torch.Generator().manual_seed(1)
    for b in range(3):
        tid = torch.randint(3, (5,), generator=g2)
        st = sample_steps(tid, ("center", "standardize", "tvn"), p_drop=0.5, generator=g2)
        w = sample_control_weights(30, 5, min_fraction=0.25, generator=g2)
        maps = fit_corrections(ctrl[b], w, st)
        torch.testing.assert_close(bank.maps.weight[b * 5 : (b + 1) * 5], maps.weight)
    x = torch.randn(100, 6, dtype=torch.float64)
    batch = torch.randint(3, (100,))
    idx = bank.draw(batch, torch.Generator().manual_seed(3))
    assert torch.equal(idx // 5, batch)
    out = bank.maps.apply_rows(x, idx)
    expected = torch.stack([x[i] @ bank.maps.weight[idx[i]] + bank.maps.bias[idx[i]] for i in range(100)])
    torch.testing.assert_close(out, expected)
    # the gather path (used on accelerators) gives the same
    torch.testing.assert_close(bank.maps.apply_rows(x[:10], idx[:10]), expected[:10])


def test_pea_bad_parameters(emb_adata):
    with pytest.raises(ValueError, match="p_drop"):
        ssc.pp.pea_augment(emb_adata, use_rep="X_emb", p_drop=1.0)
    with pytest.raises(ValueError, match="min_control_fraction"):
        ssc.pp.pea_augment(emb_adata, use_rep="X_emb", min_control_fraction=0)
    with pytest.raises(ValueError, match="whiten"):
        ssc.pp.pea_augment(emb_adata, use_rep="X_emb", transforms=("whiten",))
    with pytest.raises(ValueError, match="n_augmentations"):
        ssc.pp.pea_augment(emb_adata, use_rep="X_emb", n_augmentations=0)


@pytest.mark.parametrize("group_bytes", [2**26, 2 * 12 * 12 * 8, 1])
@pytest.mark.parametrize("batch_key", ["batch", None])
def test_zca_tvn_rows_equal_all_maps_at_once(monkeypatch, group_bytes, batch_key):
    """The teacher's grouped fit-and-apply gives the values of the maps of every batch fitted together."""
    import scsemiclip._core._corrections as corrections
    from scsemiclip._core import apply_maps, zca_tvn_maps, zca_tvn_rows

    rng = np.random.default_rng(0)
    n, d, k = 3000, 12, 7
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d)
    codes, ctrl = rng.integers(0, k, n), rng.random(n) < 0.3
    labels, rows = [f"b{i}" for i in range(k)], rng.permutation(n)[:1700]
    maps = zca_tvn_maps(x, ctrl, codes, labels, batch_key=batch_key, coral_reg=0.5)
    expected = apply_maps(x, maps, codes if batch_key else np.zeros(n, int), rows=rows, dtype=np.float32)
    monkeypatch.setattr(corrections, "_CHUNK_BYTES", group_bytes)  # 7 batches in 1, 4 or 7 groups
    monkeypatch.setattr(corrections, "_ROWS_PER_CHUNK", 100)  # several row chunks per group
    out = zca_tvn_rows(x, ctrl, codes, labels, rows=rows, batch_key=batch_key, coral_reg=0.5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    first = rows[codes[rows] == 0]  # groups without a row to correct
    np.testing.assert_array_equal(
        zca_tvn_rows(x, ctrl, codes, labels, rows=first, batch_key=batch_key, coral_reg=0.5),
        expected[codes[rows] == 0],
    )


def test_coral_covariance_uses_each_batch_rows_only():
    """The shared-rows covariance of a 0/1 weight row equals the plain covariance of the rows it selects."""
    from scsemiclip._core import fit_coral

    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 5, dtype=torch.float64, generator=g)
    member = torch.zeros(3, 200, dtype=torch.float64)
    for b, (lo, hi) in enumerate([(0, 50), (50, 120), (120, 200)]):
        member[b, lo:hi] = 1
    mats = fit_coral(z, member, reg=0.5)
    for b, (lo, hi) in enumerate([(0, 50), (50, 120), (120, 200)]):
        cov = torch.cov(z[lo:hi].T) + 0.5 * torch.eye(5, dtype=torch.float64)
        torch.testing.assert_close(mats[b] @ cov @ mats[b], torch.eye(5, dtype=torch.float64))
