"""tl.interpretability_preservation(_split): split, target, scoring formulas, budgets and end-to-end scores."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import adata_hash
from scipy import sparse
from scipy.stats import spearmanr

from scsemiclip import tl
from scsemiclip.tl._interpretability import (
    PROTOCOLS,
    decoder,
    fit_decoder,
    normalized_expression,
    score_predictions,
    split_samples,
)

#: The paper's schedule (no minimum, no validation) with a budget that fits the tiny test data quickly.
FAST = {"protocol": "paper", "max_epochs": 40, "batch_size": 64, "lr": 3e-3}


def expression_adata(*, n_batches=6, n_perts=60, reps=4, n_ctrl=8, n_genes=100, d=16, seed=0) -> ad.AnnData:
    """Counts driven by a latent perturbation effect and a batch effect; obsm: informative and random embeddings."""
    rng = np.random.default_rng(seed)
    effects = rng.normal(size=(n_perts + 1, d))
    effects[-1] = 0.0  # controls
    weights = rng.normal(size=(d, n_genes)) * 0.5
    batch_shift = rng.normal(size=(n_batches, n_genes)) * 0.2
    batch = np.repeat(np.arange(n_batches), n_ctrl + n_perts * reps)
    code = np.tile(np.r_[np.full(n_ctrl, n_perts), np.repeat(np.arange(n_perts), reps)], n_batches)
    counts = rng.poisson(np.exp(3 + effects[code] @ weights + batch_shift[batch]))
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical([f"b{b}" for b in batch]),
            "perturbation": np.where(code == n_perts, "NTC", np.char.add("G", code.astype(str))),
            "is_control": code == n_perts,
        },
        index=[f"s{i}" for i in range(batch.size)],
    )
    adata = ad.AnnData(X=counts.astype(np.float32), obs=obs)
    adata.obsm["X_true"] = effects[code] + 0.05 * rng.normal(size=(batch.size, d))
    adata.obsm["X_random"] = rng.normal(size=(batch.size, d))
    return adata


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def expr():
    return expression_adata()


def test_score_perfect_prediction_is_100():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 12))
    batch, ctrl = np.repeat([0, 1, 2, 3], 10), np.tile(np.arange(10) < 3, 4)
    s = score_predictions(y, y, batch=batch, is_control=ctrl)
    assert list(s.index) == ["structural_integrity", "spearman", "score"]
    assert s["structural_integrity"] == 1.0
    assert s["spearman"] == pytest.approx(1.0, abs=1e-12)
    assert s["score"] == pytest.approx(100.0, abs=1e-10)


def test_prediction_constant_within_batches_has_si_one_half():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(40, 12))
    batch, ctrl = np.repeat([0, 1, 2, 3], 10), np.tile(np.arange(10) < 3, 4)
    pred = rng.normal(size=(4, 12))[batch]  # centring on predicted controls makes every prediction 0
    s = score_predictions(y, pred, batch=batch, is_control=ctrl)
    assert s["structural_integrity"] == pytest.approx(0.5, abs=1e-12)


def test_structural_integrity_formula_and_spearman_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, size=(30, 8)).astype(float)  # many ties
    pred = y + rng.normal(size=y.shape)
    pred[:, 0] = 7.0  # a constant gene scores 0
    batch, ctrl = np.repeat(["a", "b", "c"], 10), np.tile(np.arange(10) < 2, 3)
    d_sum = m_sum = 0.0
    for b in "abc":
        rows, c = batch == b, (batch == b) & ctrl
        t, p = y[rows] - y[c].mean(0), pred[rows] - pred[c].mean(0)
        d_sum += np.linalg.norm(p - t) / rows.sum()
        m_sum += np.linalg.norm(t) / rows.sum()
    rhos = [0.0] + [spearmanr(y[:, g], pred[:, g]).statistic for g in range(1, 8)]
    s = score_predictions(y, pred, batch=batch, is_control=ctrl)
    assert s["structural_integrity"] == pytest.approx(1 - d_sum / (2 * m_sum), rel=1e-12)
    assert s["spearman"] == pytest.approx(np.mean(rhos), rel=1e-12)
    assert s["score"] == pytest.approx(50 * (s["structural_integrity"] + s["spearman"]), rel=1e-12)


def test_score_errors():
    y = np.zeros((6, 3)) + np.arange(6)[:, None]
    with pytest.raises(ValueError, match="Batch 1 has no control"):
        score_predictions(y, y, batch=np.array([0, 0, 0, 1, 1, 1]), is_control=np.array([1, 0, 0, 0, 0, 0], bool))
    with pytest.raises(ValueError, match="must be equal"):
        score_predictions(y, y[:, :2], batch=np.zeros(6), is_control=np.ones(6, bool))


def test_split_disjoint_batches_and_perturbations(expr):
    batch = expr.obs.batch.cat.codes.to_numpy()
    pert, _ = pd.factorize(expr.obs.perturbation)
    ctrl = expr.obs.is_control.to_numpy()
    train, test = split_samples(batch, pert, ctrl, rng=0)
    assert not (train & test).any()
    assert set(batch[train]).isdisjoint(batch[test]) and len(set(batch[train])) == 4  # round(0.7 * 6)
    assert set(pert[train & ~ctrl]).isdisjoint(pert[test & ~ctrl]) and len(set(pert[train & ~ctrl])) == 42
    # each split holds all the controls of its own batches
    assert (train | test)[ctrl].all() and ctrl[test].sum() == 2 * 8
    again = split_samples(batch, pert, ctrl, rng=0)
    np.testing.assert_array_equal(again[0], train)
    assert not np.array_equal(split_samples(batch, pert, ctrl, rng=1)[0], train)
    with pytest.raises(ValueError, match="at least 2 batches"):
        split_samples(np.zeros_like(batch), pert, ctrl, rng=0)


def test_normalized_expression_dense_and_sparse():
    counts = np.random.default_rng(3).poisson(2.0, size=(20, 15)).astype(float)
    counts[4] = 0.0
    dense = normalized_expression(counts, name="X")
    np.testing.assert_allclose(dense, normalized_expression(sparse.csr_matrix(counts), name="X"), rtol=1e-6)
    assert dense.dtype == np.float32
    np.testing.assert_allclose(np.expm1(dense.astype(float)).sum(1)[np.arange(20) != 4], 1e4, rtol=1e-5)
    assert (dense[4] == 0).all()
    with pytest.raises(ValueError, match="non-negative"):
        normalized_expression(-counts, name="adata.X")


def test_decoder_widths():
    dims = [m.out_features for m in decoder(10, 90) if hasattr(m, "out_features")]
    assert dims == [30, 50, 70, 90]


def test_end_to_end_informative_random_and_reproducible(expr, tmp_path):
    adata = expr.copy()
    before = adata_hash(adata)
    good = tl.interpretability_preservation(adata, use_rep="X_true", rng=0, accelerator="cpu", **FAST)
    assert adata_hash(adata) == before
    meta = adata.uns["interpretability_preservation"]
    assert meta["scores"] == pytest.approx(good.to_dict())
    assert meta["n_test"] == 2 * 8 + 2 * 18 * 4 and meta["params"]["max_epochs"] == FAST["max_epochs"]
    rand = tl.interpretability_preservation(adata, use_rep="X_random", rng=0, key_added="rand", **FAST)
    assert 20 < rand["score"] < 30
    assert abs(rand["spearman"]) < 0.1 and 0.4 < rand["structural_integrity"] <= 0.55
    assert good["score"] > rand["score"] + 15
    again = tl.interpretability_preservation(adata, use_rep="X_true", rng=0, key_added="again", **FAST)
    pd.testing.assert_series_equal(again, good)
    adata.write_h5ad(tmp_path / "a.h5ad")
    assert ad.read_h5ad(tmp_path / "a.h5ad").uns["rand"]["scores"]["score"] == rand["score"]


def test_sparse_counts_in_a_layer_give_the_same(expr):
    adata = expr.copy()
    short = {**FAST, "max_epochs": 3}
    dense = tl.interpretability_preservation(adata, use_rep="X_true", rng=4, **short)
    adata.layers["counts"] = sparse.csr_matrix(adata.X)
    adata.X = np.zeros_like(adata.X)
    layered = tl.interpretability_preservation(adata, use_rep="X_true", layer="counts", rng=4, **short)
    pd.testing.assert_series_equal(layered, dense, rtol=1e-5)


def test_input_errors(expr):
    adata = expr.copy()
    with pytest.raises(KeyError, match="'plate'"):
        tl.interpretability_preservation(adata, use_rep="X_true", batch_key="plate")
    with pytest.raises(KeyError, match="layers"):
        tl.interpretability_preservation(adata, use_rep="X_true", layer="raw")
    with pytest.raises(ValueError, match="accelerator"):
        tl.interpretability_preservation(adata, use_rep="X_true", accelerator="tpu")
    no_ctrl = adata[~(adata.obs.is_control & (adata.obs.batch == "b2"))].copy()
    with pytest.raises(ValueError, match=r"Batch 'b2' of adata.obs\['batch'\] has no control"):
        tl.interpretability_preservation(no_ctrl, use_rep="X_true")
    adata.obsm["X_true"][3, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        tl.interpretability_preservation(adata, use_rep="X_true")


# ---- budgets: the paper's exact protocol and the default one that fits the decoder at any size ------------------


@pytest.fixture(scope="module")
def small():
    """1,200 samples x 200 genes: the paper's 30 epochs of batch 512 are about 60 optimiser steps here."""
    return expression_adata(n_batches=6, n_perts=48, reps=4, n_ctrl=8, n_genes=200)


def test_default_protocol_trains_the_decoder_on_small_data(small):
    adata = small.copy()
    good = tl.interpretability_preservation(adata, use_rep="X_true", accelerator="cpu")
    meta = adata.uns["interpretability_preservation"]
    rand = tl.interpretability_preservation(adata, use_rep="X_random", accelerator="cpu", key_added="rand")
    assert good["score"] >= rand["score"] + 10, (good["score"], rand["score"])
    assert 20 < rand["score"] < 30
    assert meta["params"]["protocol"] == "auto" and meta["params"]["min_steps"] == 1000
    assert meta["params"]["batch_size"] == 128
    # the validation part is whole training perturbations, taken from the training split
    assert meta["n_validation"] == 4 * 4 * round(0.1 * 34) and meta["n_train"] + meta["n_validation"] == 4 * (8 + 136)
    stopped = adata.uns["rand"]["n_steps"]
    assert stopped < 1000, "a random embedding stops early"
    paper = tl.interpretability_preservation(adata, use_rep="X_true", protocol="paper", key_added="paper")
    assert paper["score"] < good["score"] - 30, "the paper's budget leaves the decoder untrained here"


def test_paper_protocol_is_tx_evaluations_configuration(small):
    adata = small.copy()
    tl.interpretability_preservation(adata, use_rep="X_true", protocol="paper", max_epochs=2)
    meta = adata.uns["interpretability_preservation"]
    paper = PROTOCOLS["paper"]
    assert (paper.batch_size, paper.lr, paper.max_epochs) == (512, 1e-4, 30)
    assert meta["params"]["lr"] == 1e-4 and meta["params"]["batch_size"] == 512 and meta["params"]["max_epochs"] == 2
    assert meta["n_validation"] == 0 and meta["n_steps"] == 2 * int(np.ceil(meta["n_train"] / 512))


def test_early_stopping_keeps_the_best_weights():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 8, generator=gen), torch.randn(200, 30, generator=gen)  # nothing to learn: overfits
    xv, yv = torch.randn(60, 8, generator=gen), torch.randn(60, 30, generator=gen)
    kw = {"seed": 1, "max_epochs": 1, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.0, "warmup_fraction": 0.1}
    stopped, steps = fit_decoder(x, y, min_steps=3000, validation=(xv, yv), patience=3, **kw)
    full, all_steps = fit_decoder(x, y, min_steps=3000, **kw)
    assert all_steps == 3003 and steps < all_steps  # 7 steps per epoch, extended to >= 3000
    with torch.no_grad():
        mse = [torch.nn.functional.mse_loss(m(xv), yv).item() for m in (stopped, full)]
    assert mse[0] < mse[1]


def test_decoder_training_equals_torch_adamw_with_a_warmup_cosine_schedule():
    """The flat-buffer AdamW gives torch.optim.AdamW + LambdaLR's weights bit for bit (the protocol is unchanged)."""
    from scsemiclip.tl._interpretability import _warmup_cosine

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(150, 6, generator=gen), torch.randn(150, 40, generator=gen)
    kw = {"seed": 2, "max_epochs": 4, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-2, "warmup_fraction": 0.3}
    fast, steps = fit_decoder(x, y, **kw)
    # the reference: torch's optimiser and scheduler on the same initialisation and minibatches
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        ref = decoder(6, 40)
    opt = torch.optim.AdamW(ref.parameters(), lr=3e-3, weight_decay=1e-2)
    warmup = round(0.3 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _warmup_cosine(s, warmup=warmup, total=steps))
    order = torch.Generator().manual_seed(2)
    for _ in range(4):
        for idx in torch.randperm(150, generator=order).split(64):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(ref(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    assert steps == 12
    for a, b in zip(fast.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


def test_budget_errors(expr):
    with pytest.raises(ValueError, match="`protocol` must be one of"):
        tl.interpretability_preservation(expr, use_rep="X_true", protocol="fast")
    with pytest.raises(ValueError, match="`validation_fraction`"):
        tl.interpretability_preservation(expr, use_rep="X_true", validation_fraction=1.0)
    with pytest.raises(ValueError, match="`batch_size`"):
        tl.interpretability_preservation(expr, use_rep="X_true", batch_size=0)
    with pytest.raises(ValueError, match="`lr`"):
        tl.interpretability_preservation(expr, use_rep="X_true", lr=-1.0)


# ---- the given-split variant -------------------------------------------------------------------------------------


def test_given_split_equals_the_built_in_split(expr):
    adata = expr.copy()
    gen = np.random.default_rng(5)
    batch = adata.obs.batch.cat.codes.to_numpy()
    train, test = split_samples(
        batch, pd.factorize(adata.obs.perturbation)[0], adata.obs.is_control.to_numpy(), rng=gen
    )
    train_ad, test_ad = adata[train].copy(), adata[test].copy()
    before = adata_hash(test_ad)
    given = tl.interpretability_preservation_split(
        train_ad, test=test_ad, use_rep="X_true", batch_key="batch", perturbation_key="perturbation", rng=gen, **FAST
    )
    built_in = tl.interpretability_preservation(adata, use_rep="X_true", rng=5, **FAST)
    pd.testing.assert_series_equal(given, built_in, rtol=1e-6)
    assert adata_hash(test_ad) == before
    assert train_ad.uns["interpretability_preservation_split"]["n_test"] == test.sum()


def gene_level(adata: ad.AnnData, genes: pd.Index, *, rep: str) -> ad.AnnData:
    """Per-gene signatures (mean log-expression minus the controls'), the embedding averaged the same way."""
    y = pd.DataFrame(normalized_expression(adata.X, name="X"), index=adata.obs_names)
    emb = pd.DataFrame(adata.obsm[rep], index=adata.obs_names)
    by = adata.obs.perturbation.to_numpy()
    sig = y.groupby(by).mean()
    sig -= sig.loc["NTC"]
    out = ad.AnnData(X=sig.loc[genes].to_numpy(np.float32), obs=pd.DataFrame(index=genes))
    out.obsm[rep] = emb.groupby(by).mean().loc[genes].to_numpy()
    out.obs["is_control"] = genes == "NTC"
    return out


def test_given_split_scores_a_gene_level_map_without_controls(small):
    genes = pd.Index(sorted(set(small.obs.perturbation) - {"NTC"}))
    scores = {}
    for rep in ("X_true", "X_random"):
        train = gene_level(small, genes[:34], rep=rep)
        test = gene_level(small, pd.Index([*genes[34:], "NTC"]), rep=rep)  # + the zero pseudo-control
        assert not train.obs.is_control.any()
        scores[rep] = tl.interpretability_preservation_split(
            train, test=test, use_rep=rep, normalize=False, accelerator="cpu", min_steps=500
        )["score"]
        meta = train.uns["interpretability_preservation_split"]
        assert meta["n_validation"] == 3 and meta["n_test"] == 15 and meta["params"]["normalize"] is False
    assert scores["X_true"] >= scores["X_random"] + 10, scores


def test_given_split_errors(expr):
    train, test = expr[:300].copy(), expr[300:600].copy()
    with pytest.raises(ValueError, match="lack 1 of the 100 genes"):
        tl.interpretability_preservation_split(train, test=test[:, 1:].copy(), use_rep="X_true")
    no_ctrl = test[~test.obs.is_control.to_numpy()].copy()
    with pytest.raises(ValueError, match="no control"):
        tl.interpretability_preservation_split(train, test=no_ctrl, use_rep="X_true", batch_key="batch")
    test.obsm["X_small"] = test.obsm["X_true"][:, :3]
    with pytest.raises(ValueError, match="same encoder"):
        tl.interpretability_preservation_split(train, test=test, use_rep="X_true", test_rep="X_small")
    with pytest.raises(KeyError, match="'X_none' is not in test.obsm"):
        tl.interpretability_preservation_split(train, test=test, use_rep="X_true", test_rep="X_none")
