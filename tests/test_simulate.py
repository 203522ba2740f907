"""datasets.simulate_weakly_paired: schema, determinism, real genes, and the property it exists for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import scsemiclip as ssc
from scsemiclip.datasets import simulate_weakly_paired

OBS_COLUMNS = ["batch", "perturbation", "perturbation_type", "dose", "is_control", "targets", "replicate"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sim(shared_data) -> dict:
    return simulate_weakly_paired(rng=0)


@pytest.fixture(scope="module")
def database_genes(shared_data) -> set[str]:
    tables = [ssc.datasets.relationships(s) for s in ssc.datasets.SOURCES]
    return set(pd.concat(tables).to_numpy().ravel())


def _ood_recall(adata, rep: str) -> float:
    """Mean known-relationship recall of the TVN-corrected embedding, aggregated per gene (docs/evaluation.md)."""
    out = ssc.pp.tvn(adata, use_rep=rep, key_added="tvn", copy=True)
    return float(ssc.tl.known_relationship_recall(out, use_rep="tvn").loc["mean", "recall"])


def _zca(adata, rep: str) -> np.ndarray:
    """Basis-preserving TVN on the batch-centred embedding (the input of an adapter, docs/method.md)."""
    out = ssc.pp.center(adata, use_rep=rep, key_added="c", copy=True)
    ssc.pp.tvn(out, use_rep="c", basis="zca", key_added="z")
    return out.obsm["z"]


def test_schema(sim):
    assert list(sim) == ["student", "teacher", "ood", "ood_teacher", "ood_sc"]
    assert sim["student"].n_obs == 300 * 3 * 4 + 32 * 4
    assert sim["ood"].n_obs == 400 * 3 + 32 * 3
    assert sim["ood_sc"].n_obs == 400 * 8 + 64 * 3
    for name, adata in sim.items():
        assert list(adata.obs.columns) == OBS_COLUMNS
        obs = adata.obs
        assert obs["is_control"].dtype == bool and isinstance(obs["batch"].dtype, pd.CategoricalDtype)
        assert set(obs["perturbation_type"].cat.categories) == {"compound", "gene", "control"}
        assert (obs.loc[obs.is_control, "perturbation_type"] == "control").all()
        assert (obs.loc[obs.is_control, "dose"] == 0).all()
        # controls in every batch
        n_controls = 64 if name == "ood_sc" else 32
        assert (obs[obs.is_control].groupby("batch", observed=True).size() == n_controls).all()
        assert obs.loc[obs.is_control, "batch"].nunique() == obs["batch"].nunique()
        rep = "X_phenom" if name.endswith("teacher") else "X_emb"
        dims = 16 if name.endswith("teacher") else 32
        assert adata.obsm[rep].shape == (adata.n_obs, dims) and np.isfinite(adata.obsm[rep]).all()
        assert adata.obsm["X_latent"].shape == (adata.n_obs, 8)
        params = adata.uns["simulate_weakly_paired"]["params"]
        assert params["n_compounds"] == 300 and params["saturation"] == 2.0
    compounds = sim["student"].obs.query("not is_control")
    assert (compounds.perturbation_type == "compound").all() and (compounds.dose > 0).all()
    assert compounds.groupby(["perturbation", "dose"]).size().eq(4).all()
    genes = sim["ood"].obs.query("not is_control")
    assert (genes.perturbation_type == "gene").all() and genes.dose.isna().all()
    assert (genes.perturbation == genes.targets).all() and genes.perturbation.nunique() == 400
    # new batches for the knockout screens, distinct labels per screen and modality
    batches = [set(a.obs["batch"].cat.categories) for a in sim.values()]
    assert all(not (batches[i] & batches[j]) for i in range(5) for j in range(i + 1, 5))


def _explained(logx: np.ndarray, features: np.ndarray) -> float:
    """Share of the per-gene variance of ``logx`` explained by a least-squares fit on ``features``."""
    logx = logx - logx.mean(axis=0)
    coef, *_ = np.linalg.lstsq(features, logx, rcond=None)
    return float(1 - (logx - features @ coef).var() / logx.var())


def test_counts(sim):
    for name in ("student", "ood", "ood_sc"):
        x = sim[name].X
        assert x.dtype == np.float32 and (x >= 0).all() and np.array_equal(x, np.round(x))
        assert sim[name].n_vars == 500 and sim[name].var_names.is_unique
        assert sim["student"].var_names.equals(sim[name].var_names)
    # the counts follow the biology: log expression is largely a linear function of the biological read-out
    # (saturated programmes and |h|^2) and the batch, and the unrelated programmes of obsm["X_emb"] add little
    adata = sim["student"]
    logx = np.log1p(adata.X / adata.X.sum(1, keepdims=True) * 1e4)
    h, saturation = adata.obsm["X_latent"], adata.uns["simulate_weakly_paired"]["params"]["saturation"]
    batch = pd.get_dummies(adata.obs["batch"]).to_numpy(float)
    biology = _explained(logx, np.c_[np.tanh(saturation * h), np.sum(h**2, axis=1), batch])
    embedding = _explained(logx, np.c_[adata.obsm["X_emb"], batch])
    assert biology > 0.55 and embedding - biology < 0.15 and _explained(logx, batch) < 0.15, (biology, embedding)
    # single cells: about ten times fewer counts
    sizes = {name: sim[name].X.sum(1).mean() for name in ("ood", "ood_sc")}
    assert 10_000 < sizes["ood"] < 30_000 and 500 < sizes["ood_sc"] < 2_000, sizes


def test_single_cell_screen(sim):
    sc, ood = sim["ood_sc"], sim["ood"]
    cells = sc.obs.query("not is_control")
    assert cells.groupby("perturbation", observed=True).size().eq(8).all()
    assert set(cells.perturbation) == set(ood.obs.query("not is_control").perturbation)  # the same knockouts
    assert set(sc.obs["batch"].cat.categories) == {"tx_sc1", "tx_sc2", "tx_sc3"}
    # the cells of a knockout are spread over the batches, and every batch has its controls
    assert cells.groupby("perturbation", observed=True)["batch"].nunique().eq(3).all()
    assert sc.obs.loc[sc.obs.is_control, "perturbation"].eq("non-targeting").all()
    assert sc.obsm["X_emb"].shape == (sc.n_obs, 32) and sc.obsm["X_latent"].shape == (sc.n_obs, 8)
    # the same knockout has the same latent effect as in the bulk screen (up to the replicate noise)
    ko = cells.perturbation.iloc[0]
    bulk = ood.obsm["X_latent"][(ood.obs.perturbation == ko).to_numpy()].mean(axis=0)
    single = sc.obsm["X_latent"][(sc.obs.perturbation == ko).to_numpy()].mean(axis=0)
    np.testing.assert_allclose(bulk, single, atol=0.15)


def test_single_cell_screen_leaves_the_others_unchanged(shared_data):
    small = {"n_compounds": 20, "n_genes": 60, "n_ood_genes": 30, "n_panel_genes": 20}
    a = simulate_weakly_paired(rng=5, **small)
    b = simulate_weakly_paired(rng=5, n_sc_cells=3, n_sc_batches=2, sc_noise=2.0, sc_library_size=100.0, **small)
    for name in ("student", "teacher", "ood", "ood_teacher"):
        pd.testing.assert_frame_equal(a[name].obs, b[name].obs)
        np.testing.assert_array_equal(a[name].X, b[name].X)
        for key in a[name].obsm:
            np.testing.assert_array_equal(a[name].obsm[key], b[name].obsm[key])
    assert b["ood_sc"].n_obs == 30 * 3 + 64 * 2 and b["ood_sc"].obs["batch"].nunique() == 2


def test_weak_pairs(sim):
    student, teacher = sim["student"].obs, sim["teacher"].obs
    keys = lambda o: set(zip(o.perturbation, o.dose, strict=True))  # noqa: E731
    assert keys(student) == keys(teacher)
    # replicates are different samples: no two rows share their latent state
    latent = np.vstack([sim["student"].obsm["X_latent"], sim["teacher"].obsm["X_latent"]])
    assert len(np.unique(latent.round(12), axis=0)) == len(latent)


def test_real_genes(sim, database_genes):
    programs = sim["student"].uns["simulate_weakly_paired"]["gene_programs"]
    assert set(programs.index) <= database_genes and len(programs) == 600
    ko = set(sim["ood"].obs.query("not is_control").perturbation)
    assert ko <= set(programs.index)
    targets = {g for t in sim["student"].obs.query("not is_control").targets for g in t.split(";")}
    assert targets <= set(programs.index)
    assert set(sim["student"].var_names) <= database_genes


def test_deterministic():
    small = {"n_compounds": 20, "n_genes": 60, "n_ood_genes": 30, "n_panel_genes": 20}
    a, b = simulate_weakly_paired(rng=3, **small), simulate_weakly_paired(rng=np.random.default_rng(3), **small)
    c = simulate_weakly_paired(rng=4, **small)
    for name in a:
        pd.testing.assert_frame_equal(a[name].obs, b[name].obs)
        np.testing.assert_array_equal(a[name].X, b[name].X)
        for key in a[name].obsm:
            np.testing.assert_array_equal(a[name].obsm[key], b[name].obsm[key])
    assert not np.array_equal(a["student"].obsm["X_emb"], c["student"].obsm["X_emb"])
    assert not np.array_equal(a["ood_sc"].obsm["X_emb"], c["ood_sc"].obsm["X_emb"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_controls": 1}, "n_controls"),
        ({"n_compounds": 0}, "n_compounds"),
        ({"n_ood_genes": 700}, "n_ood_genes"),
        ({"n_genes": 100_000}, "n_genes"),
        ({"edge_fraction": 0.0}, "edge_fraction"),
        ({"edge_fraction": 1.5}, "edge_fraction"),
        ({"saturation": 0.0}, "saturation"),
        ({"student_noise": -1.0}, "student_noise"),
        ({"n_nuisance": 32}, "n_nuisance"),
        ({"n_latent": 2.5}, "n_latent"),
        ({"n_sc_cells": 0}, "n_sc_cells"),
        ({"n_sc_controls": 1}, "n_sc_controls"),
        ({"sc_noise": -0.5}, "sc_noise"),
        ({"sc_library_size": 0.0}, "sc_library_size"),
    ],
)
def test_bad_arguments(shared_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate_weakly_paired(**kwargs)


def test_bad_rng():
    with pytest.raises(TypeError, match="rng"):
        simulate_weakly_paired(rng="seed")


def test_teacher_beats_student_on_ood(sim):
    teacher, student = _ood_recall(sim["ood_teacher"], "X_phenom"), _ood_recall(sim["ood"], "X_emb")
    assert teacher > 0.35
    assert 0.12 < student < teacher - 0.15


def test_nonlinear_regression_on_compounds_transfers_to_ood(sim):
    """What the simulator is built for (docs/evaluation.md): a map learnt on the compound screen helps on knockouts.

    An MLP regresses the teacher's per-condition mean (TVN) on the student embedding (TVN) over the compound
    screen; applied to the knockout screens (new batches, genes never used as labels, bulk or single cells), its
    output has a much higher known-relationship recall than the student embedding itself.
    """
    student, teacher = sim["student"], sim["teacher"]
    x_t = _zca(teacher, "X_phenom")
    cond = lambda a: (a.obs.perturbation.astype(str) + "@" + a.obs.dose.astype(str)).to_numpy()  # noqa: E731
    treated_t = ~teacher.obs.is_control.to_numpy()
    means = pd.DataFrame(x_t[treated_t]).groupby(cond(teacher)[treated_t]).mean()
    treated = ~student.obs.is_control.to_numpy()
    x = torch.tensor(_zca(student, "X_emb")[treated], dtype=torch.float32)
    y = torch.tensor(means.loc[cond(student)[treated]].to_numpy(), dtype=torch.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
    for name, margin in (("ood", 0.07), ("ood_sc", 0.05)):
        out = sim[name].copy()
        with torch.no_grad():
            out.obsm["X_mlp"] = net(torch.tensor(_zca(out, "X_emb"), dtype=torch.float32)).double().numpy()
        assert _ood_recall(out, "X_mlp") > _ood_recall(out, "X_emb") + margin, name
