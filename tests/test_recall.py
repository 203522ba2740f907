"""tl.known_relationship_recall and friends: equality with efaar_benchmarking, conventions, errors, baselines."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import adata_hash
from scipy.linalg import lapack
from sklearn.metrics.pairwise import cosine_similarity

from scsemiclip import pp, tl
from scsemiclip.datasets import SOURCES, corum_clusters, relationships
from scsemiclip.tl._recall import packed_cosines, packed_position

THRESHOLDS = (0.02, 0.05, 0.1, 0.2)


def real_gene_adata(n_genes: int, *, n_absent: int = 20, replicates: int = 2, dims: int = 16, seed: int = 0):
    """Per-sample AnnData over genes sampled from CORUM and StringDB pairs plus genes absent from every database."""
    rng = np.random.default_rng(seed)
    pairs = pd.concat([relationships("CORUM"), relationships("StringDB")])
    pool = pd.unique(pairs.iloc[rng.permutation(len(pairs))[: 4 * n_genes]].to_numpy().ravel())
    genes = [*pool[: n_genes - n_absent], *(f"NOTAGENE{i}" for i in range(n_absent))]
    labels = [*np.repeat(genes, replicates), *["NTC"] * 10]
    obs = pd.DataFrame(
        {"perturbation": labels, "is_control": [g == "NTC" for g in labels]},
        index=[f"s{i}" for i in range(len(labels))],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_emb"] = rng.normal(size=(len(labels), dims))
    return adata


@pytest.fixture(scope="module")
def gene_adata(shared_data):
    return real_gene_adata(320)


@pytest.fixture(scope="module")
def efaar_reference(gene_adata, shared_data):
    """efaar_benchmarking's recall on the same aggregated float64 map, at every threshold of THRESHOLDS."""
    from efaar_benchmarking.benchmarking import known_relationship_benchmark
    from sklearn.utils import Bunch

    agg = pp.aggregate(gene_adata, use_rep="X_emb")
    map_data = Bunch(features=pd.DataFrame(agg.X), metadata=pd.DataFrame({"gene": agg.obs_names}))
    ref = known_relationship_benchmark(
        map_data,
        pert_col="gene",
        benchmark_sources=list(SOURCES),
        recall_thr_pairs=[(t, 1 - t) for t in THRESHOLDS],
        benchmark_data_dir=str(shared_data / "relationships"),
    )
    return ref.set_index("source")


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_equals_efaar(gene_adata, efaar_reference, threshold):
    adata = gene_adata.copy()
    table = tl.known_relationship_recall(adata, use_rep="X_emb", threshold=threshold)
    assert list(table.index) == [*SOURCES, "mean"]
    ref = efaar_reference[f"recall_{threshold}_{1 - threshold}"]
    np.testing.assert_array_equal(table.loc[list(SOURCES), "recall"].to_numpy(), ref.loc[list(SOURCES)].to_numpy())
    np.testing.assert_array_equal(
        table.loc[list(SOURCES), "n_pairs"], efaar_reference.loc[list(SOURCES), "query_distribution_size"]
    )
    assert table.loc["mean", "recall"] == pytest.approx(ref.mean(), abs=1e-15)
    assert table.loc["mean", "n_pairs"] == table.loc[list(SOURCES), "n_pairs"].sum() > 100
    assert (
        adata.uns["known_relationship_recall"]["params"]["n_null"] == efaar_reference["null_distribution_size"].iloc[0]
    )


def test_curve_equals_single_thresholds_and_efaar(gene_adata, efaar_reference):
    adata = gene_adata.copy()
    curve = tl.known_relationship_recall_curve(adata, use_rep="X_emb", thresholds=THRESHOLDS)
    assert list(curve.columns) == ["source", "threshold", "recall", "n_retrieved", "n_pairs", "n_genes"]
    assert len(curve) == len(THRESHOLDS) * (len(SOURCES) + 1)
    wide = curve.pivot(index="threshold", columns="source", values="recall")
    for t in THRESHOLDS:
        np.testing.assert_array_equal(
            wide.loc[t, list(SOURCES)], efaar_reference.loc[list(SOURCES), f"recall_{t}_{1 - t}"]
        )
        single = tl.known_relationship_recall(adata, use_rep="X_emb", threshold=t)
        np.testing.assert_array_equal(wide.loc[t, [*SOURCES, "mean"]], single["recall"])
    assert adata.uns["known_relationship_recall_curve"]["params"]["thresholds"] == list(THRESHOLDS)


def test_gene_level_map_and_X_give_the_same(gene_adata):
    ref = tl.known_relationship_recall(gene_adata.copy(), use_rep="X_emb")
    agg = pp.aggregate(gene_adata, use_rep="X_emb")  # one row per gene, obs_names = genes, no control column
    by_names = tl.known_relationship_recall(agg.copy(), use_rep="X", perturbation_key=None, control_key=None)
    pd.testing.assert_frame_equal(by_names, ref)
    agg.obsm["emb"] = agg.X.copy()
    by_column = tl.known_relationship_recall(agg, use_rep="emb", perturbation_key="perturbation", control_key=None)
    pd.testing.assert_frame_equal(by_column, ref)


def test_conventions_and_h5ad(gene_adata, tmp_path):
    adata = gene_adata.copy()
    before = adata_hash(adata)
    table = tl.known_relationship_recall(adata, use_rep="X_emb", key_added="kr")
    tl.known_relationship_recall_curve(adata, use_rep="X_emb", key_added="kr_curve")
    retrieved = tl.retrieved_relationships(adata, use_rep="X_emb")
    assert adata_hash(adata) == before
    assert set(adata.uns) == {"kr", "kr_curve", "retrieved_relationships"}
    assert adata.uns["kr"]["params"]["threshold"] == 0.05
    assert adata.uns["kr"]["params"]["n_map_genes"] == 320
    assert set(retrieved) == set(SOURCES)
    stored = adata.uns["retrieved_relationships"]
    assert stored["params"] == {**adata.uns["kr"]["params"], "use_rep": "X_emb"}
    assert set(stored) == {"tables", "params", "version"}
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(back.uns["kr"]["table"], table, check_index_type=False)
    assert back.uns["kr_curve"]["table"]["recall"].tolist() == adata.uns["kr_curve"]["table"]["recall"].tolist()
    assert back.uns["retrieved_relationships"]["params"]["threshold"] == 0.05
    assert back.uns["retrieved_relationships"]["params"]["perturbation_key"] == "perturbation"
    assert list(back.uns["retrieved_relationships"]["params"]["sources"]) == list(SOURCES)
    for source, df in retrieved.items():
        got = back.uns["retrieved_relationships"]["tables"][source]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), df)
    with pytest.raises(TypeError):
        tl.known_relationship_recall(adata, "X_emb")


def test_retrieved_relationships_match_the_table_and_the_tails(gene_adata):
    adata = gene_adata.copy()
    table = tl.known_relationship_recall(adata, use_rep="X_emb", threshold=0.1)
    retrieved = tl.retrieved_relationships(adata, use_rep="X_emb", threshold=0.1)
    agg = pp.aggregate(gene_adata, use_rep="X_emb")
    cos = pd.DataFrame(cosine_similarity(agg.X), index=agg.obs_names, columns=agg.obs_names)
    null = np.sort(cos.to_numpy()[np.triu_indices(agg.n_obs, k=1)])
    lo, hi = null[int(0.1 * null.size) - 1], null[int(np.ceil(0.9 * null.size))]
    for source, df in retrieved.items():
        assert len(df) == table.loc[source, "n_retrieved"]
        assert list(df.columns) == ["entity1", "entity2", "cosine", "tail"]
        direct = cos.to_numpy()[cos.index.get_indexer(df.entity1), cos.columns.get_indexer(df.entity2)]
        np.testing.assert_allclose(df.cosine, direct, atol=1e-14)
        assert (df.cosine[df["tail"] == "right"] >= hi).all()
        assert (df.cosine[df["tail"] == "left"] <= lo).all()


def test_custom_sources_counts_and_names(gene_adata):
    genes = pp.aggregate(gene_adata, use_rep="X_emb").obs_names
    custom = pd.DataFrame(
        {
            "entity1": [genes[0], genes[1], genes[2], "ABSENT", genes[3]],
            "entity2": [genes[1], genes[0], genes[2], genes[0], genes[4]],
        }
    )
    table = tl.known_relationship_recall(gene_adata.copy(), use_rep="X_emb", sources=["CORUM", custom])
    assert list(table.index) == ["CORUM", "custom_0", "mean"]
    assert table.loc["custom_0", "n_pairs"] == 2  # (g0, g1) once; self-pair and absent gene dropped
    assert table.loc["custom_0", "n_genes"] == 4
    named = tl.known_relationship_recall(
        gene_adata.copy(), use_rep="X_emb", sources={"mine": custom, "complexes": "CORUM"}
    )
    assert list(named.index) == ["mine", "complexes", "mean"]
    assert named.loc["complexes", "recall"] == table.loc["CORUM", "recall"]
    # a source without pairs in the map: NaN recall, left out of the mean
    empty = pd.DataFrame({"entity1": ["ABSENT1"], "entity2": ["ABSENT2"]})
    with_empty = tl.known_relationship_recall(
        gene_adata.copy(), use_rep="X_emb", sources={"CORUM": "CORUM", "none": empty}
    )
    assert np.isnan(with_empty.loc["none", "recall"]) and with_empty.loc["none", "n_pairs"] == 0
    assert with_empty.loc["mean", "recall"] == with_empty.loc["CORUM", "recall"]
    with pytest.raises(ValueError, match="mean"):
        tl.known_relationship_recall(gene_adata.copy(), use_rep="X_emb", sources={"mean": custom})
    with pytest.raises(TypeError, match="entity1"):
        tl.known_relationship_recall(gene_adata.copy(), use_rep="X_emb", sources=[3])


def test_errors(gene_adata):
    adata = gene_adata.copy()
    with pytest.raises(ValueError, match="at least 20"):
        tl.known_relationship_recall(
            adata[adata.obs.perturbation.isin(adata.obs.perturbation.unique()[:19])].copy(), use_rep="X_emb"
        )
    absent = adata[adata.obs.perturbation.str.startswith("NOTAGENE") | adata.obs.is_control].copy()
    with pytest.raises(ValueError, match="gene symbols"):
        tl.known_relationship_recall(absent, use_rep="X_emb")
    nan = adata.copy()
    nan.obsm["X_emb"][5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tl.known_relationship_recall(nan, use_rep="X_emb")
    with pytest.raises(KeyError, match="perturbation_key=None"):
        tl.known_relationship_recall(adata, use_rep="X_emb", perturbation_key="gene")
    with pytest.raises(KeyError, match="control_key=None"):
        tl.known_relationship_recall(adata, use_rep="X_emb", control_key="ctrl")
    with pytest.raises(KeyError, match="X_missing"):
        tl.known_relationship_recall(adata, use_rep="X_missing")
    with pytest.raises(ValueError, match="threshold"):
        tl.known_relationship_recall(adata, use_rep="X_emb", threshold=0.7)
    adata.obs_names = adata.obs.perturbation.to_numpy()  # replicates share a name
    with pytest.raises(ValueError, match="not unique"):
        tl.known_relationship_recall(adata, use_rep="X_emb", perturbation_key=None)


def test_retrieved_relationships_key_added_and_gene_level_params(gene_adata):
    agg = pp.aggregate(gene_adata, use_rep="X_emb")
    retrieved = tl.retrieved_relationships(
        agg, use_rep="X", perturbation_key=None, control_key=None, sources="CORUM", threshold=0.1, key_added="ret"
    )
    assert set(agg.uns) == {"ret"}
    params = agg.uns["ret"]["params"]
    assert params["perturbation_key"] == params["control_key"] == ""  # None, stored as h5ad can write it
    assert params["sources"] == ["CORUM"] and params["threshold"] == 0.1 and params["use_rep"] == "X"
    pd.testing.assert_frame_equal(agg.uns["ret"]["tables"]["CORUM"].reset_index(drop=True), retrieved["CORUM"])


def test_null_sort_uses_settings_n_jobs(monkeypatch):
    from scsemiclip._settings import settings
    from scsemiclip.tl._recall import _sort_in_chunks

    values = np.random.default_rng(0).normal(size=3_500_000)
    for n_jobs, n_chunks in ((1, 1), (2, 2), (8, 3)):  # at most one chunk per million values
        monkeypatch.setattr(settings, "n_jobs", n_jobs)
        chunks = _sort_in_chunks(values.copy())
        assert len(chunks) == n_chunks
        assert all((np.diff(chunk) >= 0).all() for chunk in chunks)


def test_docstrings_carry_the_shared_parameter_text():
    for func in (tl.known_relationship_recall, tl.known_relationship_recall_curve, tl.retrieved_relationships):
        assert "{doc_" not in func.__doc__ and "{{" not in func.__doc__
        assert "    perturbation_key\n        Column of ``adata.obs`` with the gene labels" in func.__doc__
        assert '``{"table"' in func.__doc__ or '``{"tables"' in func.__doc__


@pytest.mark.parametrize("n", [60, 61])
def test_packed_cosines_match_sklearn(n):
    x = np.random.default_rng(1).normal(size=(n, 7))
    x[4] = 0.0
    ref = cosine_similarity(x)
    got = packed_cosines(x)
    assert got.size == n * (n + 1) // 2
    a, b = np.triu_indices(n, k=1)
    pos = packed_position(a, b, n)
    np.testing.assert_allclose(got[pos], ref[a, b], rtol=0, atol=1e-15)
    diagonal = packed_position(np.arange(n), np.arange(n), n)
    assert np.isposinf(got[diagonal]).all()
    assert np.unique(np.concatenate([pos, diagonal])).size == got.size  # every slot used exactly once


@pytest.mark.parametrize("n", [2, 3, 10, 11])
def test_packed_position_matches_lapack(n):
    full = np.arange(n * n, dtype=np.float64).reshape(n, n, order="F")
    packed, info = lapack.dtrttf(full, transr="N", uplo="U")
    assert info == 0
    a, b = np.triu_indices(n)
    np.testing.assert_array_equal(packed[packed_position(a, b, n)], full[a, b])


def test_random_baselines_recall_about_ten_percent(shared_data):
    adata = real_gene_adata(1500, n_absent=0, replicates=1, dims=16, seed=3)
    genes = pd.Index(adata.obs.perturbation[~adata.obs.is_control])
    for members in corum_clusters().values():  # an informative embedding: CORUM complexes share a direction
        idx = genes.get_indexer(members)
        idx = idx[idx >= 0]
        adata.obsm["X_emb"][idx] += 2 * np.random.default_rng(len(idx)).normal(size=16)
    informative = tl.known_relationship_recall(adata, use_rep="X_emb")
    assert informative.loc["CORUM", "recall"] > 0.2
    before = adata_hash(adata)
    for kind in ("uniform", "shuffled"):
        out = tl.random_baseline(adata, use_rep="X_emb", kind=kind, rng=0, copy=True)
        table = tl.known_relationship_recall(out, use_rep=f"X_emb_random_{kind}")
        assert 0.08 < table.loc["mean", "recall"] < 0.12, kind
        assert table.loc["mean", "n_pairs"] > 3000
    assert adata_hash(adata) == before


def test_random_baseline_conventions(emb_adata):
    adata = emb_adata
    before = adata_hash(adata)
    assert tl.random_baseline(adata, use_rep="X_emb", kind="shuffled", rng=0) is None
    x, shuffled = adata.obsm["X_emb"], adata.obsm["X_emb_random_shuffled"]
    ctrl = adata.obs.is_control.to_numpy()
    np.testing.assert_array_equal(shuffled[ctrl], x[ctrl])
    assert not np.array_equal(shuffled[~ctrl], x[~ctrl])
    np.testing.assert_array_equal(np.sort(shuffled[~ctrl], axis=0), np.sort(x[~ctrl], axis=0))
    tl.random_baseline(adata, use_rep="X_emb", rng=np.random.default_rng(5), key_added="u")
    u = adata.obsm["u"]
    assert u.shape == x.shape and u.dtype == x.dtype and -1 <= u.min() and u.max() < 1
    assert adata.uns["u"]["params"] == {"use_rep": "X_emb", "kind": "uniform", "control_key": "is_control"}
    again = tl.random_baseline(adata, use_rep="X_emb", rng=np.random.default_rng(5), key_added="u", copy=True)
    np.testing.assert_array_equal(again.obsm["u"], u)
    del adata.obsm["u"], adata.obsm["X_emb_random_shuffled"], adata.uns["u"], adata.uns["X_emb_random_shuffled"]
    assert adata_hash(adata) == before
    with pytest.raises(ValueError, match="kind"):
        tl.random_baseline(adata, use_rep="X_emb", kind="gaussian")
    with pytest.raises(ValueError, match="key_added"):
        tl.random_baseline(adata, use_rep="X_emb", key_added="X_emb")
