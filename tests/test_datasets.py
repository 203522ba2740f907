"""Real-data loaders: offline on the registry files in ../shared/data, online-only ones on small files of the same schema."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest

import scsemiclip as ssc
from scsemiclip._settings import ENV_DATA_DIR
from scsemiclip.datasets import _registry, _replogle, _rxrx3
from scsemiclip.datasets._rda import read_rda_lists


def test_import_is_light():
    """Importing the loaders loads neither scanpy (imported for one PCA), Lightning, scvi-tools nor torch."""
    heavy = ("scanpy", "lightning", "scvi", "torch")
    code = f"import sys, scsemiclip.datasets; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_data_dir_follows_settings(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    assert ssc.datasets.data_dir() == tmp_path / "env"
    calls = []

    def retrieve(url, *, known_hash, fname, path, progressbar):
        calls.append(path)
        raise OSError("offline")

    monkeypatch.setattr(_registry.pooch, "retrieve", retrieve)
    try:
        ssc.settings.datasetdir = tmp_path / "set"
        assert ssc.datasets.data_dir() == tmp_path / "set"
        # downloads go there, and a failed one names the directory and the variable
        with pytest.raises(OSError, match=f"into {re.escape(str(tmp_path / 'set'))}.*{ENV_DATA_DIR}"):
            _registry.fetch("relationships/CORUM.txt")
        assert calls == [tmp_path / "set"]
    finally:
        ssc.settings.datasetdir = None
    assert ssc.datasets.data_dir() == tmp_path / "env"


@pytest.fixture(scope="module")
def rpe1(shared_data) -> ad.AnnData:
    return ssc.datasets.replogle_deg_ranks("rpe1")


@pytest.fixture(scope="module")
def periscope(shared_data) -> ad.AnnData:
    return ssc.datasets.periscope_hela()


def test_replogle_deg_ranks(rpe1):
    assert rpe1.shape == (585, 7225)
    assert rpe1.obs_names.is_unique and (rpe1.obs["perturbation"] == rpe1.obs_names).all()
    assert not rpe1.obs["is_control"].any() and rpe1.obs["is_control"].dtype == bool
    assert list(rpe1.obs["batch"].cat.categories) == ["rpe1"]
    x = rpe1.X
    assert x.dtype == np.float32 and (np.count_nonzero(x, axis=1) == 1000).all()
    weights = np.sort(x[0][x[0] > 0])[::-1]
    np.testing.assert_allclose(weights, (1000 - np.arange(1000)) / 1000, rtol=1e-6)
    assert rpe1.obsm["X_pca"].shape == (585, 64) and rpe1.varm["PCs"].shape == (7225, 64)
    assert rpe1.uns["replogle_deg_ranks"]["params"] == {"cell_line": "rpe1", "weighting": "linear", "n_comps": 64}


def test_replogle_deg_ranks_order_matches_source(rpe1, shared_data):
    (signatures,) = read_rda_lists(shared_data / "perturbseq.rpe1.rda").values()
    gene = rpe1.obs_names[7]
    top = signatures[gene]["up_full"]
    row = rpe1[gene].X.ravel()
    assert row[rpe1.var_names.get_loc(top[0])] == 1.0
    assert row[rpe1.var_names.get_loc(top[999])] == pytest.approx(0.001)


def test_replogle_recall_matches_readme(rpe1):
    """data/README.md: a 64-component PCA of the RPE1 signatures has recall about 0.48 (random about 0.10)."""
    table = ssc.tl.known_relationship_recall(rpe1, use_rep="X_pca", control_key=None)
    assert table.loc["mean", "recall"] == pytest.approx(0.48, abs=0.01)


def test_replogle_k562_and_log_weights(shared_data):
    k562 = ssc.datasets.replogle_deg_ranks("k562", weighting="log", n_comps=16)
    assert k562.n_obs == 585 and k562.obsm["X_pca"].shape == (585, 16)
    assert k562.X.max() == 1.0 and np.isclose(k562.X[k562.X > 0].min(), 1 / np.log2(1001))


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"cell_line": "hela"}, "cell_line"), ({"weighting": "x"}, "weighting")]
)
def test_replogle_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ssc.datasets.replogle_deg_ranks(**kwargs)


@pytest.mark.slow
def test_rda_reader_equals_rdata(shared_data):
    import rdata

    ours = read_rda_lists(shared_data / "perturbseq.rpe1.rda")
    ref = rdata.read_rda(shared_data / "perturbseq.rpe1.rda")
    assert list(ours) == list(ref) == ["perturbseq.rpe1"]
    a, b = ours["perturbseq.rpe1"], ref["perturbseq.rpe1"]
    assert list(a) == list(b)
    for gene in a:
        assert list(a[gene]) == list(b[gene]) == ["up_full", "up"]
        for key in a[gene]:
            assert a[gene][key].tolist() == b[gene][key].tolist()


def test_rda_reader_rejects_other_files(tmp_path, shared_data):
    bad = tmp_path / "x.rda"
    bad.write_bytes(b"not an R file")
    with pytest.raises(ValueError, match="XDR"):
        read_rda_lists(bad)
    with pytest.raises(ValueError, match="Unsupported R object type"):  # a data frame of doubles
        read_rda_lists(shared_data / "cmea_transcriptomic_profile.rda")


def test_periscope_hela(periscope, rpe1):
    assert periscope.shape == (3454, 56)
    np.testing.assert_array_equal(periscope.obsm["X_morphology"], periscope.X)
    assert periscope.obs_names.is_unique and (periscope.obs["perturbation"] == periscope.obs_names).all()
    assert not periscope.obs["is_control"].any()
    assert list(periscope.var_names[:2]) == ["PC1", "PC2"]
    assert periscope.obs_names[0] == "AAAS"
    assert len(set(rpe1.obs_names) & set(periscope.obs_names)) == 364


def test_cmea_u2os(shared_data):
    mdata = ssc.datasets.cmea_u2os()
    assert isinstance(mdata, mudata.MuData) and set(mdata.mod) == {"rna", "image"}
    rna, image = mdata.mod["rna"], mdata.mod["image"]
    assert rna.shape == (162, 978) and image.shape == (162, 812)
    assert rna.obs_names.equals(image.obs_names) and rna.obs_names[0].startswith("BRD-")
    assert (rna.obs["perturbation"] == rna.obs_names).all() and not image.obs["is_control"].any()
    np.testing.assert_array_equal(rna.obsm["X_l1000"], rna.X)
    np.testing.assert_array_equal(image.obsm["X_cellpainting"], image.X)
    assert "Cells_AreaShape_Area" in image.var_names
    rna2, image2 = ssc.datasets.cmea_u2os(as_mudata=False)
    np.testing.assert_array_equal(rna2.X, rna.X)
    assert image2.obs_names.equals(image.obs_names)


# ---- online-only loaders: the same code path on small files of the release schema ----------------------------


def _fake_fetch(monkeypatch, module, files: dict[str, Path]) -> list[dict]:
    """Replace ``module.fetch_url`` by a lookup of ``fname`` in ``files``; returns the recorded calls."""
    calls: list[dict] = []

    def fetch_url(url, *, fname, known_hash):
        calls.append({"url": url, "fname": fname, "known_hash": known_hash})
        return files[fname]

    monkeypatch.setattr(module, "fetch_url", fetch_url)
    return calls


@pytest.fixture
def rxrx3_files(tmp_path) -> dict[str, Path]:
    meta = pd.DataFrame(
        {
            "well_id": [f"w{i}" for i in range(8)],
            "experiment_name": ["gene-001"] * 4 + ["compound-001"] * 4,
            "plate": [1, 1, 2, 2, 1, 1, 1, 1],
            "address": ["A01", "A02", "A01", "A02", "B01", "B02", "B03", "B04"],
            "gene": ["TP53", "TP53", "EMPTY_control", "MDM2", np.nan, np.nan, np.nan, "EMPTY_control"],
            "treatment": [
                "TP53_guide_1", "TP53_guide_2", "EMPTY_control", "MDM2_guide_1",
                "Esomeprazole", "Esomeprazole", "CRISPR_control", "EMPTY_control",
            ],
            "SMILES": [np.nan] * 4 + ["CC", "CC", np.nan, np.nan],
            "concentration": [np.nan] * 4 + [0.25, 2.5, np.nan, np.nan],
            "perturbation_type": ["CRISPR"] * 4 + ["COMPOUND"] * 4,
            "cell_type": "HUVEC",
            "well_type_label": "x",
        }
    )  # fmt: skip
    # two rows for w0 (averaged), none for w5 (dropped)
    rows = ["w0", "w0", "w1", "w2", "w3", "w4", "w6", "w7"]
    emb = pd.DataFrame(
        np.arange(len(rows) * 3, dtype=np.float32).reshape(-1, 3), columns=["feature_0", "feature_1", "feature_2"]
    )
    emb.insert(0, "well_id", rows)
    paths = {
        "rxrx3_core/metadata_rxrx3_core.csv": tmp_path / "meta.csv",
        "rxrx3_core/OpenPhenom_rxrx3_core_embeddings.parquet": tmp_path / "emb.parquet",
    }
    meta.to_csv(paths["rxrx3_core/metadata_rxrx3_core.csv"], index=False)
    emb.to_parquet(paths["rxrx3_core/OpenPhenom_rxrx3_core_embeddings.parquet"])
    return paths


def test_rxrx3_core(monkeypatch, rxrx3_files):
    calls = _fake_fetch(monkeypatch, _rxrx3, rxrx3_files)
    adata = ssc.datasets.rxrx3_core()
    assert [c["known_hash"] for c in calls] == [None, None]
    assert all(
        c["url"].startswith("https://huggingface.co/datasets/recursionpharma/rxrx3-core/resolve/main/") for c in calls
    )
    assert list(adata.obs_names) == ["w0", "w1", "w2", "w3", "w4", "w6", "w7"]
    assert adata.n_vars == 0 and adata.obsm["X_openphenom"].dtype == np.float32
    np.testing.assert_array_equal(adata.obsm["X_openphenom"][0], [1.5, 2.5, 3.5])  # mean of w0's two rows
    np.testing.assert_array_equal(adata.obsm["X_openphenom"][1], [6, 7, 8])
    obs = adata.obs
    assert obs["perturbation"].tolist() == [
        "TP53",
        "TP53",
        "EMPTY_control",
        "MDM2",
        "Esomeprazole",
        "CRISPR_control",
        "EMPTY_control",
    ]
    assert obs["is_control"].tolist() == [False, False, True, False, False, False, True]
    assert list(obs["batch"].cat.categories) == ["compound-001", "gene-001"]
    assert obs["dose"].iloc[4] == 0.25 and np.isnan(obs["dose"].iloc[0])
    assert {"experiment_name", "plate", "address", "SMILES", "perturbation_type", "well_type_label"} <= set(obs.columns)


def test_rxrx3_core_errors(monkeypatch, rxrx3_files):
    _fake_fetch(monkeypatch, _rxrx3, rxrx3_files)
    with pytest.raises(ValueError, match="control_label"):
        ssc.datasets.rxrx3_core(control_label="DMSO")
    monkeypatch.setattr(_rxrx3.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pyarrow"):
        ssc.datasets.rxrx3_core()


def _write_h5ad(path: Path, obs: pd.DataFrame) -> Path:
    ad.AnnData(X=np.ones((len(obs), 3), dtype=np.float32), obs=obs).write_h5ad(path)
    return path


def test_replogle_2022_singlecell(monkeypatch, tmp_path):
    obs = pd.DataFrame(
        {"gem_group": [1, 1, 2, 2], "gene": ["TP53", "non-targeting", "MDM2", "non-targeting"], "UMI_count": 1.0},
        index=[f"cell{i}" for i in range(4)],
    )
    files = {"replogle_2022/rpe1_raw_singlecell_01.h5ad": _write_h5ad(tmp_path / "sc.h5ad", obs)}
    calls = _fake_fetch(monkeypatch, _replogle, files)
    adata = ssc.datasets.replogle_2022(kind="singlecell", cell_line="rpe1")
    assert calls == [
        {
            "url": "https://plus.figshare.com/ndownloader/files/35775606",
            "fname": "replogle_2022/rpe1_raw_singlecell_01.h5ad",
            "known_hash": None,
        }
    ]
    assert adata.obs["perturbation"].tolist() == ["TP53", "non-targeting", "MDM2", "non-targeting"]
    assert adata.obs["is_control"].tolist() == [False, True, False, True]
    assert list(adata.obs["batch"].cat.categories) == ["1", "2"]
    assert "UMI_count" in adata.obs.columns


def test_replogle_2022_bulk(monkeypatch, tmp_path):
    names = ["10023_ZC3H18_P1P2_ENSG00000158545", "5_AARS_P1_ENSG00000090861", "7_non-targeting_non-targeting_x"]
    files = {"replogle_2022/rpe1_normalized_bulk_01.h5ad": _write_h5ad(tmp_path / "b.h5ad", pd.DataFrame(index=names))}
    calls = _fake_fetch(monkeypatch, _replogle, files)
    adata = ssc.datasets.replogle_2022()
    assert calls[0]["known_hash"] == "md5:6f1e7d6a09e2f869759e3c4526b7f171"
    assert adata.obs["perturbation"].tolist() == ["ZC3H18", "AARS", "non-targeting"]
    assert adata.obs["is_control"].tolist() == [False, False, True]
    assert list(adata.obs["batch"].cat.categories) == ["rpe1"]
    # a custom URL is not hash-checked; a file without controls is an error naming the argument
    with pytest.raises(ValueError, match="control_label"):
        ssc.datasets.replogle_2022(url="https://example.org/file.h5ad", control_label="NTC")
    assert calls[-1] == {
        "url": "https://example.org/file.h5ad",
        "fname": "replogle_2022/rpe1_normalized_bulk_01.h5ad",
        "known_hash": None,
    }
    with pytest.raises(ValueError, match="kind"):
        ssc.datasets.replogle_2022(kind="pseudobulk")
