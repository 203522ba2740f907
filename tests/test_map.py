"""Mean average precision (phenotypic activity and consistency) against copairs 0.5.5 on the same profiles."""

from __future__ import annotations

import itertools
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import adata_hash, make_embedding_adata
from statsmodels.stats.multitest import multipletests

import scsemiclip as ssc
from scsemiclip._core import benjamini_hochberg, random_ap_null

copairs_map = pytest.importorskip("copairs.map")
logging.getLogger("copairs").setLevel(logging.WARNING)

NULL = 5000


def _mc_tolerance(p: np.ndarray, null_size: int) -> np.ndarray:
    """Five standard deviations of the difference of two independent Monte-Carlo p-values, plus the +1 terms."""
    return 5 * np.sqrt(2 * p * (1 - p) / null_size) + 3 / null_size


def _copairs_activity(adata: ad.AnnData, x: np.ndarray, null_size: int, cache) -> pd.DataFrame:
    meta = adata.obs[["perturbation", "is_control"]].reset_index(drop=True).copy()
    meta["reference"] = np.where(meta["is_control"], np.arange(len(meta)), -1)
    ap = copairs_map.average_precision(
        meta,
        x,
        pos_sameby=["perturbation", "reference"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["perturbation", "reference"],
        progress_bar=False,
    )
    out = copairs_map.mean_average_precision(
        ap, sameby=["perturbation"], null_size=null_size, threshold=0.05, seed=0, progress_bar=False, cache_dir=cache
    )
    return out.set_index("perturbation")


def _labelled_map(seed: int = 0, n: int = 60, n_labels: int = 12) -> tuple[ad.AnnData, dict[str, list[str]]]:
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(n)]
    adata = ad.AnnData(obs=pd.DataFrame(index=genes))
    adata.obsm["X_e"] = rng.normal(size=(n, 8))
    labels = {g: sorted({f"L{rng.integers(0, n_labels)}" for _ in range(rng.integers(1, 3))}) for g in genes[:50]}
    return adata, labels


def _copairs_consistency(x: np.ndarray, labels: list[list[str]], null_size: int, cache) -> pd.DataFrame:
    meta = pd.DataFrame({"labels": labels})
    ap = copairs_map.multilabel.average_precision(
        meta,
        x,
        pos_sameby=["labels"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["labels"],
        multilabel_col="labels",
        progress_bar=False,
    )
    out = copairs_map.mean_average_precision(
        ap, sameby=["labels"], null_size=null_size, threshold=0.05, seed=0, progress_bar=False, cache_dir=cache
    )
    return out.set_index("labels")


# ---- equality with copairs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
def test_activity_equals_copairs(tmp_path, ties):
    adata = make_embedding_adata(n_obs=300, n_perts=10, seed=1)
    if ties:  # small integer profiles: many exactly tied cosines, copairs ranks a tied positive first
        adata.obsm["X_emb"] = np.random.default_rng(0).integers(1, 4, size=(adata.n_obs, 3)).astype(float)
    x = adata.obsm["X_emb"].astype(np.float64)
    # copairs' definition: every control is a negative of every query (batch_key=None)
    ours = ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=NULL, accelerator="cpu", batch_key=None)
    ref = _copairs_activity(adata, x, NULL, tmp_path).loc[ours.index]
    np.testing.assert_allclose(ours["mean_average_precision"], ref["mean_average_precision"], rtol=0, atol=1e-9)
    p = ref["p_value"].to_numpy()
    assert (np.abs(ours["p_value"].to_numpy() - p) <= _mc_tolerance(p, NULL)).all()
    assert (
        ours["n_replicates"] == adata.obs.loc[~adata.obs.is_control, "perturbation"].value_counts()[ours.index]
    ).all()


def test_consistency_equals_copairs(tmp_path):
    adata, labels = _labelled_map()
    ours = ssc.tl.phenotypic_consistency(
        adata, use_rep="X_e", annotations=labels, perturbation_key=None, control_key=None, null_size=NULL
    )
    genes = list(labels)
    ref = _copairs_consistency(adata[genes].obsm["X_e"], [labels[g] for g in genes], NULL, tmp_path)
    assert set(ref.index) == set(ours.index)
    ref = ref.loc[ours.index]
    np.testing.assert_allclose(ours["mean_average_precision"], ref["mean_average_precision"], rtol=0, atol=1e-9)
    p = ref["p_value"].to_numpy()
    assert (np.abs(ours["p_value"].to_numpy() - p) <= _mc_tolerance(p, NULL)).all()
    counts = pd.Series([lab for g in genes for lab in labels[g]]).value_counts()
    assert (ours["n_perturbations"] == counts[ours.index]).all()


def test_consistency_per_sample_obs_column_and_mapping_agree():
    """Per-replicate profiles are averaged per perturbation; an obs column gives the same labels as a mapping."""
    adata = make_embedding_adata(n_obs=300, n_perts=12, seed=2)
    target = {f"G{i}": f"T{i % 4}" for i in range(12)}
    adata.obs["target"] = adata.obs["perturbation"].map(target).where(~adata.obs["is_control"])
    by_column = ssc.tl.phenotypic_consistency(adata, use_rep="X_emb", annotations="target", null_size=500)
    by_mapping = ssc.tl.phenotypic_consistency(adata, use_rep="X_emb", annotations=target, null_size=500)
    pd.testing.assert_frame_equal(by_column, by_mapping)
    assert list(by_column.index) == ["T0", "T1", "T2", "T3"]


def test_consistency_gene_set_name(shared_data):
    """A gene-set name goes through `datasets.gene_sets` (CORUM complexes as labels)."""
    complexes = ssc.datasets.gene_sets("corum")
    sets = [s for s in complexes.values() if 3 <= len(s) <= 6][:15]
    genes = sorted({g for s in sets for g in s})
    adata = ad.AnnData(obs=pd.DataFrame(index=genes))
    adata.obsm["X_e"] = np.random.default_rng(0).normal(size=(len(genes), 6))
    by_name = ssc.tl.phenotypic_consistency(
        adata, use_rep="X_e", annotations="CORUM", perturbation_key=None, control_key=None, null_size=300
    )
    assert adata.uns["phenotypic_consistency"]["params"]["annotations"] == "CORUM"
    mapping = {}
    for name, members in complexes.items():
        for gene in members:
            mapping.setdefault(gene, []).append(name)
    by_mapping = ssc.tl.phenotypic_consistency(
        adata, use_rep="X_e", annotations=mapping, perturbation_key=None, control_key=None, null_size=300
    )
    pd.testing.assert_frame_equal(by_name, by_mapping)
    assert len(by_name) >= 10


# ---- the kernels --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_pos", "n_total"), [(3, 12), (5, 9), (1, 7)])
def test_ap_null_is_the_exact_distribution(n_pos, n_total):
    """Both samplers (rejection for few positives, permutations for many) draw uniform rankings."""
    exact = np.array(
        [np.mean(np.arange(1, n_pos + 1) / (np.array(c) + 1)) for c in itertools.combinations(range(n_total), n_pos)]
    )
    draws = random_ap_null(np.array([[n_pos, n_total]]), 100000, torch.Generator().manual_seed(0))[0].numpy()
    for t in np.quantile(exact, [0.5, 0.9, 0.95]):
        expected = (exact > t + 1e-12).mean()
        assert abs((draws > t + 1e-12).mean() - expected) <= 5 * np.sqrt(expected * (1 - expected) / draws.size)
    assert abs(draws.mean() - exact.mean()) <= 5 * exact.std() / np.sqrt(draws.size)


def test_benjamini_hochberg_equals_statsmodels():
    p = np.random.default_rng(0).random(200) ** 3
    p[[3, 7]] = p[5]  # ties
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=0, atol=1e-15)
    assert np.isnan(benjamini_hochberg(np.array([0.1, np.nan]))[1])


# ---- behaviour ----------------------------------------------------------------------------------------------------


def test_activity_detects_signal_and_is_deterministic(tmp_path):
    adata = make_embedding_adata(n_obs=300, n_perts=10, seed=3)
    before = adata_hash(adata)
    first = ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=2000, rng=7)
    again = ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=2000, rng=7)
    other = ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=2000, rng=8)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_series_equal(first["mean_average_precision"], other["mean_average_precision"])
    assert not np.array_equal(first["p_value"], other["p_value"])
    assert first["significant"].mean() > 0.5  # strong perturbation effects
    shuffled = adata.copy()
    shuffled.obs["perturbation"] = np.random.default_rng(0).permutation(shuffled.obs["perturbation"].to_numpy())
    shuffled.obs["is_control"] = shuffled.obs["perturbation"] == "NTC"
    assert ssc.tl.phenotypic_activity(shuffled, use_rep="X_emb", null_size=2000)["significant"].mean() < 0.3
    assert adata_hash(adata) == before
    stored = adata.uns["phenotypic_activity"]
    assert set(stored) == {"table", "params", "version"}
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["phenotypic_activity"]["table"]
    pd.testing.assert_frame_equal(back, stored["table"], check_names=False, check_index_type=False)


def test_activity_singletons_are_unscored():
    adata = make_embedding_adata(n_obs=200, n_perts=6, seed=4)
    row = np.flatnonzero(~adata.obs["is_control"].to_numpy())[0]
    adata.obs["perturbation"] = adata.obs["perturbation"].astype(object)
    adata.obs.iloc[row, adata.obs.columns.get_loc("perturbation")] = "LONELY"
    table = ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=200)
    assert "LONELY" not in table.index
    assert adata.uns["phenotypic_activity"]["params"]["unscored"] == ["LONELY"]


def test_named_errors():
    adata = make_embedding_adata(n_obs=120, n_perts=4, seed=5)
    no_controls = adata.copy()
    no_controls.obs["is_control"] = False
    with pytest.raises(ValueError, match="marks no control"):
        ssc.tl.phenotypic_activity(no_controls, use_rep="X_emb")
    singletons = adata.copy()
    singletons.obs["perturbation"] = np.where(singletons.obs["is_control"], "NTC", singletons.obs_names)
    with pytest.raises(ValueError, match="No replicates"):
        ssc.tl.phenotypic_activity(singletons, use_rep="X_emb")
    zero = adata.copy()
    zero.obsm["X_emb"] = zero.obsm["X_emb"].copy()
    zero.obsm["X_emb"][0] = 0
    with pytest.raises(ValueError, match="norm 0"):
        ssc.tl.phenotypic_activity(zero, use_rep="X_emb")
    with pytest.raises(ValueError, match="Fewer than 2 perturbations with an annotation"):
        ssc.tl.phenotypic_consistency(adata, use_rep="X_emb", annotations={"G0": "A", "G1": "B", "nope": "A"})
    with pytest.raises(TypeError, match="`annotations` must be"):
        ssc.tl.phenotypic_consistency(adata, use_rep="X_emb", annotations=3)
    with pytest.raises(ValueError, match="`null_size`"):
        ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=0)
    with pytest.raises(ValueError, match="`fdr`"):
        ssc.tl.phenotypic_activity(adata, use_rep="X_emb", fdr=0)
    with pytest.raises(KeyError, match="nope"):
        ssc.tl.phenotypic_activity(adata, use_rep="X_emb", perturbation_key="nope")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_equals_cpu():
    adata = make_embedding_adata(n_obs=300, n_perts=10, seed=6)
    cpu = ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=500, accelerator="cpu")
    gpu = ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=500, accelerator="gpu")
    pd.testing.assert_frame_equal(cpu, gpu)
    labelled, labels = _labelled_map()
    kwargs = {"use_rep": "X_e", "annotations": labels, "perturbation_key": None, "control_key": None, "null_size": 500}
    pd.testing.assert_frame_equal(
        ssc.tl.phenotypic_consistency(labelled, accelerator="cpu", **kwargs),
        ssc.tl.phenotypic_consistency(labelled, accelerator="gpu", **kwargs),
    )


def test_queries_without_negatives_are_left_out():
    """A perturbation sharing a label with every other one has nothing to rank against (copairs needs negatives)."""
    adata, _ = _labelled_map(n=6)
    labels = {"G0": ["hub", "a"], "G1": ["hub", "a"], "G2": ["hub", "b"], "G3": ["hub"], "G4": ["b"], "G5": ["b"]}
    table = ssc.tl.phenotypic_consistency(
        adata, use_rep="X_e", annotations=labels, perturbation_key=None, control_key=None, null_size=100
    )
    assert list(table.index) == ["a", "b", "hub"]
    # G2 shares a label with all: left out as a query; every remaining query has 2 or 3 negatives
    assert table.loc["hub", "n_perturbations"] == 4 and table.loc["hub", "n_candidates"] == 5
    assert table.loc["b", "n_candidates"] == 5
    everyone = dict.fromkeys(labels, ["hub"])
    with pytest.raises(ValueError, match="no query has a negative"):
        ssc.tl.phenotypic_consistency(
            adata, use_rep="X_e", annotations=everyone, perturbation_key=None, control_key=None, null_size=100
        )


def test_activity_negatives_are_the_controls_of_the_positives_batches_and_not_fitted():
    """A query's negatives: held-out controls (outside ``fitted_key``) of the batches that hold its positives."""
    adata = make_embedding_adata(n_obs=300, n_perts=10, seed=2)
    batch = adata.obs["batch"].to_numpy()
    is_ctrl = adata.obs["is_control"].to_numpy()
    fitted = is_ctrl & (np.arange(adata.n_obs) % 2 == 0)
    adata.obs["fitted"] = fitted
    table = ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=50, fitted_key="fitted")
    labels = adata.obs["perturbation"].to_numpy()
    for pert in table.index[:3]:
        rows = np.flatnonzero((labels == pert) & ~is_ctrl)
        n_cand = [
            (rows.size - 1) + (is_ctrl & ~fitted & np.isin(batch, batch[np.setdiff1d(rows, [r])])).sum() for r in rows
        ]
        assert table.loc[pert, "n_candidates"] == pytest.approx(np.mean(n_cand))
    assert adata.uns["phenotypic_activity"]["params"]["n_controls"] == int((is_ctrl & ~fitted).sum())
    with pytest.raises(ValueError, match="not controls of `control_key`"):
        ssc.tl.phenotypic_activity(adata, use_rep="X_emb", fitted_key="is_control", control_key="fitted")


def test_activity_names_a_batch_without_controls():
    adata = make_embedding_adata(n_obs=300, n_perts=10, seed=3)
    in_b0 = (adata.obs["batch"] == "b0").to_numpy()
    adata.obs["is_control"] = adata.obs["is_control"].to_numpy() & ~in_b0
    with pytest.raises(ValueError, match=r"Batch 'b0' of adata.obs\['batch'\] holds replicates of"):
        ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=50)
    assert len(ssc.tl.phenotypic_activity(adata, use_rep="X_emb", null_size=50, batch_key=None))
