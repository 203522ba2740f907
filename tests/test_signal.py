"""Perturbation signal consistency and magnitude against efaar_benchmarking 1.0 on the same profiles."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import adata_hash

import scsemiclip as ssc
from scsemiclip._core import energy_distances, subset_energy_distances

efaar = pytest.importorskip("efaar_benchmarking.benchmarking")


def _screen(
    *, n_perts: int = 40, n_null: int = 10, k: int = 6, n_controls: int = 50, d: int = 8, seed: int = 0
) -> ad.AnnData:
    """``n_perts`` perturbations of ``k`` replicates, the first ``n_null`` without effect (``G0`` ...), controls.

    The rows alternate between two batches (no batch effect).
    """
    rng = np.random.default_rng(seed)
    effect = rng.normal(size=(n_perts, d)) * (np.arange(n_perts) >= n_null)[:, None]
    x = np.vstack([np.repeat(effect, k, axis=0) + rng.normal(size=(n_perts * k, d)), rng.normal(size=(n_controls, d))])
    labels = np.r_[np.repeat([f"G{i}" for i in range(n_perts)], k), ["NTC"] * n_controls]
    obs = pd.DataFrame(
        {"perturbation": labels, "is_control": labels == "NTC", "batch": np.arange(labels.size) % 2},
        index=[f"s{i}" for i in range(x.shape[0])],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_e"] = x
    return adata


NULL_PERTS = [f"G{i}" for i in range(10)]


def test_consistency_equals_efaar_benchmark():
    adata = _screen()
    before = adata_hash(adata)
    ours = ssc.tl.perturbation_consistency(adata, use_rep="X_e", null_perturbations=NULL_PERTS, null="efaar")
    rows = ~adata.obs["is_control"].to_numpy()
    ref = efaar.pert_signal_consistency_benchmark(
        adata.obsm["X_e"][rows], adata.obs[rows], "perturbation", NULL_PERTS, n_jobs=1
    ).set_index("pert")
    assert set(ref.index) == set(ours.index)
    ref = ref.loc[ours.index]
    np.testing.assert_allclose(ours["value"], ref["avgcossim"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours["p_value"], ref["pval"])
    assert ours.loc["G39", "significant"] and (ours["n_replicates"] == 6).all()
    assert adata_hash(adata) == before


def test_magnitude_equals_efaar_benchmark():
    """With at most ``max_controls`` controls efaar uses them all: its benchmark is deterministic."""
    adata = _screen()
    ours = ssc.tl.perturbation_magnitude(adata, use_rep="X_e", null_perturbations=NULL_PERTS, null="efaar")
    ref = efaar.pert_signal_magnitude_benchmark(
        adata.obsm["X_e"], adata.obs, "perturbation", NULL_PERTS, "NTC", n_jobs=1
    ).set_index("pert")
    ref = ref.drop("NTC").loc[ours.index]
    np.testing.assert_allclose(ours["value"], ref["edist"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours["p_value"], ref["pval"])


def test_magnitude_equals_efaar_metric_on_the_control_sample():
    adata = _screen(n_controls=80)
    ours = ssc.tl.perturbation_magnitude(
        adata, use_rep="X_e", null_perturbations=NULL_PERTS, max_controls=30, rng=3, null="efaar"
    )
    reference = adata[adata.uns["perturbation_magnitude"]["params"]["reference_controls"]].obsm["X_e"]
    assert reference.shape[0] == 30
    x, labels = adata.obsm["X_e"], adata.obs["perturbation"].to_numpy()
    null = np.sort([efaar.pert_signal_magnitude_metric(x[labels == p], reference) for p in NULL_PERTS])
    for pert in ["G10", "G25", "G39"]:
        value, p_value = efaar.pert_signal_magnitude_metric(x[labels == pert], reference, null)
        assert ours.loc[pert, "value"] == pytest.approx(value, rel=1e-12)
        assert ours.loc[pert, "p_value"] == p_value


def test_subset_energy_distance_is_the_energy_distance_to_the_rest():
    rng = np.random.default_rng(1)
    reference = torch.as_tensor(rng.normal(size=(20, 4)))
    draws = torch.as_tensor(np.stack([np.sort(rng.choice(20, 5, replace=False)) for _ in range(6)]))
    fast = subset_energy_distances(reference, draws)
    for i, draw in enumerate(draws):
        rest = torch.as_tensor(np.setdiff1d(np.arange(20), draw.numpy()))
        direct = energy_distances(reference[draw], torch.zeros(5, dtype=torch.int64), 1, reference[rest])
        assert fast[i].item() == pytest.approx(direct.item(), rel=1e-12)


@pytest.mark.parametrize("metric", ["perturbation_consistency", "perturbation_magnitude"])
def test_control_null_is_calibrated_and_deterministic(metric):
    """Without null perturbations the null is drawn from the controls: null-effect perturbations get uniform p."""
    adata = _screen(n_perts=120, n_null=100, k=5, n_controls=300, seed=2)
    fn = getattr(ssc.tl, metric)
    table = fn(adata, use_rep="X_e", null_size=500, rng=0)
    pd.testing.assert_frame_equal(table, fn(adata, use_rep="X_e", null_size=500, rng=0))
    null_p = table.loc[NULL_PERTS + [f"G{i}" for i in range(10, 100)], "p_value"]
    assert 0.01 <= (null_p < 0.1).mean() <= 0.2
    assert 0.35 <= null_p.mean() <= 0.65
    assert table.loc[[f"G{i}" for i in range(100, 120)], "significant"].mean() > 0.8
    assert not np.array_equal(table["p_value"], fn(adata, use_rep="X_e", null_size=500, rng=1)["p_value"])


def test_minimum_replicates_as_efaar():
    adata = _screen(k=4)
    assert len(ssc.tl.perturbation_consistency(adata, use_rep="X_e")) == 40
    with pytest.raises(ValueError, match="No replicates"):
        ssc.tl.perturbation_magnitude(adata, use_rep="X_e")


def test_named_errors():
    adata = _screen()
    with pytest.raises(ValueError, match="not non-control perturbations"):
        ssc.tl.perturbation_consistency(adata, use_rep="X_e", null_perturbations=["G0", "nope"])
    with pytest.raises(TypeError, match="`null_perturbations` must be a list"):
        ssc.tl.perturbation_consistency(adata, use_rep="X_e", null_perturbations="G0")
    no_controls = adata[~adata.obs["is_control"]].copy()
    with pytest.raises(ValueError, match="No controls"):
        ssc.tl.perturbation_consistency(no_controls, use_rep="X_e")
    with pytest.raises(ValueError, match="No controls"):
        ssc.tl.perturbation_magnitude(no_controls, use_rep="X_e", null_perturbations=NULL_PERTS)
    # without controls but with null perturbations, consistency needs no control column at all
    table = ssc.tl.perturbation_consistency(no_controls, use_rep="X_e", control_key=None, null_perturbations=NULL_PERTS)
    assert len(table) == 30
    with pytest.raises(ValueError, match="`max_controls`"):
        ssc.tl.perturbation_magnitude(adata, use_rep="X_e", max_controls=1)


def test_uns_is_h5ad_storable(tmp_path):
    adata = _screen()
    ssc.tl.perturbation_magnitude(adata, use_rep="X_e", null_size=100)
    ssc.tl.perturbation_consistency(adata, use_rep="X_e", null_size=100, key_added="cons")
    adata.write_h5ad(tmp_path / "s.h5ad")
    back = ad.read_h5ad(tmp_path / "s.h5ad")
    for key in ("perturbation_magnitude", "cons"):
        pd.testing.assert_frame_equal(
            back.uns[key]["table"], adata.uns[key]["table"], check_names=False, check_index_type=False
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_equals_cpu():
    adata = _screen()
    for fn in (ssc.tl.perturbation_consistency, ssc.tl.perturbation_magnitude):
        cpu = fn(adata, use_rep="X_e", null_size=200, accelerator="cpu")
        gpu = fn(adata, use_rep="X_e", null_size=200, accelerator="gpu")
        pd.testing.assert_frame_equal(cpu, gpu, check_exact=False, rtol=1e-10)


def test_min_replicates():
    adata = _screen(k=4)
    table = ssc.tl.perturbation_magnitude(adata, use_rep="X_e", min_replicates=4, null_size=100)
    assert len(table) == 40 and adata.uns["perturbation_magnitude"]["params"]["min_replicates"] == 4
    with pytest.raises(ValueError, match="`min_replicates`"):
        ssc.tl.perturbation_consistency(adata, use_rep="X_e", min_replicates=1)


def test_permutation_null_needs_held_out_controls_per_batch_and_names_the_batch():
    adata = _screen(n_controls=6)  # 3 controls per batch: the magnitude's reference takes 1, the null keeps 2
    assert len(ssc.tl.perturbation_magnitude(adata, use_rep="X_e", null_size=50)) == 40
    adata.obs["is_control"] &= ~adata.obs_names.isin(["s240", "s242"])  # batch 0 keeps 1 control
    with pytest.raises(ValueError, match=r"batch 0 of adata.obs\['batch'\] has 1 control"):
        ssc.tl.perturbation_consistency(adata, use_rep="X_e", null_size=50)
    fitted = adata.obs["is_control"].to_numpy() & adata.obs_names.isin(["s241", "s243"])
    adata.obs["fitted"] = fitted
    with pytest.raises(ValueError, match="not controls of `control_key`"):
        ssc.tl.perturbation_consistency(adata, use_rep="X_e", fitted_key="is_control", control_key="fitted")
    with pytest.raises(ValueError, match="`fitted_key` applies to `null='permutation'`"):
        ssc.tl.perturbation_consistency(adata, use_rep="X_e", fitted_key="fitted", null="efaar")
    with pytest.raises(ValueError, match="`null`"):
        ssc.tl.perturbation_consistency(adata, use_rep="X_e", null="copairs")


def test_messages_say_what_is_wrong():
    adata = _screen(n_controls=40)
    with pytest.raises(ValueError, match=r"raise `max_controls` \(now 4, 40 controls exist\)"):
        ssc.tl.perturbation_magnitude(adata, use_rep="X_e", max_controls=4, null="efaar")
    with pytest.raises(ValueError, match="`null_perturbations` does not replace"):
        ssc.tl.perturbation_magnitude(adata, use_rep="X_e", control_key=None, null_perturbations=NULL_PERTS)
    only_controls = adata[adata.obs["is_control"].to_numpy()].copy()
    for fn in (ssc.tl.perturbation_consistency, ssc.tl.perturbation_magnitude, ssc.tl.phenotypic_activity):
        with pytest.raises(ValueError, match="Every row of adata is a control"):
            fn(only_controls, use_rep="X_e")


def test_permutation_p_values_are_exact_rank_p_values():
    """The observed arrangement is one of the draws: p >= 1 / (1 + null_size); null perturbations count likewise."""
    adata = _screen()
    for fn in (ssc.tl.perturbation_consistency, ssc.tl.perturbation_magnitude):
        table = fn(adata, use_rep="X_e", null_size=99)
        assert table["p_value"].min() == 0.01 and table.loc["G39", "significant"]
        with_null = fn(adata, use_rep="X_e", null_perturbations=NULL_PERTS)
        null = with_null.loc[with_null.index.isin(NULL_PERTS)]
        assert null.empty and with_null["p_value"].min() == 1 / 11


def test_a_missing_batch_column_names_batch_key():
    adata = _screen()
    del adata.obs["batch"]
    for fn in (ssc.tl.perturbation_consistency, ssc.tl.perturbation_magnitude, ssc.tl.phenotypic_activity):
        with pytest.raises(KeyError, match="`batch_key`"):
            fn(adata, use_rep="X_e")
    assert len(ssc.tl.perturbation_consistency(adata, use_rep="X_e", batch_key=None, null_size=20)) == 40
