"""tl.benchmark, tl.benchmark_summary and pl.benchmark on tiny data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import adata_hash, make_weakly_paired
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import scsemiclip as ssc

FIT = {
    "student_rep": "X_emb",
    "teacher_rep": "X_phenom",
    "max_epochs": 1,
    "batch_size": 64,
    "hidden_dims": (16,),
    "interpretability_kwargs": {"protocol": "paper", "max_epochs": 1},
    "accelerator": "cpu",
    "enable_progress_bar": False,
}


def _with_counts(adata: ad.AnnData, seed: int) -> ad.AnnData:
    """The AnnData with expression counts (20 genes driven by the embedding) in X."""
    rng = np.random.default_rng(seed)
    rate = 5 * np.exp(0.1 * adata.obsm["X_emb"][:, :2] @ rng.normal(size=(2, 20)))
    return ad.AnnData(X=rng.poisson(rate).astype(np.float32), obs=adata.obs, obsm=dict(adata.obsm))


@pytest.fixture(scope="module")
def data():
    # 60 controls per batch keep PEA's control subsets above the 12 dimensions; 24 genes for the recall
    kwargs = {"n_genes": 24, "n_modules": 3, "n_rep": 2, "n_controls": 60}
    student, teacher, pairs = make_weakly_paired(**kwargs)
    ood, _, _ = make_weakly_paired(**kwargs, seed=1)
    return _with_counts(student, 0), teacher, _with_counts(ood, 1), pairs


@pytest.fixture(scope="module")
def result(data):
    student, teacher, ood, pairs = data
    hashes = [adata_hash(a) for a in (student, teacher, ood)]
    df = ssc.tl.benchmark(student, teacher=teacher, ood_sets={"ood": ood}, seeds=(0, 1), sources=[pairs], **FIT)
    return df, hashes


def test_benchmark_table(data, result):
    df, hashes = result
    assert list(df.columns) == [
        "method",
        "pea",
        "seed",
        "dataset",
        "recall_custom_0",
        "recall_mean",
        "recall_mean_raw",
        "interpretability",
    ]
    # 2 seeds x (2 baselines + semiclipped without and with PEA) on one set
    assert len(df) == 8
    assert set(zip(df["method"], df["pea"], strict=True)) == {
        ("unimodal", False),
        ("random", False),
        ("semiclipped", False),
        ("semiclipped", True),
    }
    assert df[["recall_mean", "recall_mean_raw", "interpretability"]].notna().all().all()
    assert df["recall_mean"].between(0, 1).all()
    unimodal = df[df["method"] == "unimodal"]
    assert unimodal["recall_mean"].nunique() == 1  # the unimodal recall does not depend on the seed
    # inputs untouched
    assert [adata_hash(a) for a in data[:3]] == hashes
    assert "X_benchmark" not in data[0].obsm and not data[2].uns


def test_benchmark_is_reproducible(data, result):
    student, teacher, ood, pairs = data
    again = ssc.tl.benchmark(
        student,
        teacher=teacher,
        ood_sets={"ood": ood},
        seeds=1,
        pea=True,
        baselines=(),
        sources=[pairs],
        interpretability=False,
        **FIT,
    )
    df = result[0]
    expected = df[(df["method"] == "semiclipped") & df["pea"] & (df["seed"] == 1)]
    assert len(again) == 1
    assert again["recall_mean"].iloc[0] == expected["recall_mean"].iloc[0]
    assert np.isnan(again["interpretability"].iloc[0])


def test_benchmark_argument_errors(data):
    student, teacher, ood, pairs = data
    common = {"teacher": teacher, "ood_sets": {"ood": ood}, "sources": [pairs], **FIT}
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        ssc.tl.benchmark(student, methods=("semiclipped", "nope"), **common)
    with pytest.raises(ValueError, match="`seeds`"):
        ssc.tl.benchmark(student, seeds=(0.5,), **common)
    with pytest.raises(ValueError, match="baseline"):
        ssc.tl.benchmark(student, baselines=("oracle",), **common)
    with pytest.raises(ValueError, match="method_kwargs"):
        ssc.tl.benchmark(student, method_kwargs={"kd": {}}, **common)
    with pytest.raises(ValueError, match="ood_sets"):
        ssc.tl.benchmark(student, **(common | {"ood_sets": {}}))
    no_counts = ad.AnnData(obs=ood.obs, obsm=dict(ood.obsm))
    with pytest.raises(ValueError, match=r"ood_sets\['bare'\] has no expression"):
        ssc.tl.benchmark(student, **(common | {"ood_sets": {"bare": no_counts}}))


def test_evaluate_representations_matches_the_benchmark(data, result):
    _, _, ood, pairs = data
    adata = ood.copy()
    adata.obsm["X_other"] = adata.obsm["X_emb"][:, ::-1].copy()
    decoder = FIT["interpretability_kwargs"] | {"accelerator": "cpu"}
    summary, tables = ssc.tl.evaluate_representations(
        adata, use_reps={"a": "X_emb", "b": "X_other"}, sources=[pairs], rng=0, **decoder
    )
    assert list(summary.index) == ["a", "b"]
    assert list(summary.columns) == ["custom_0", "mean", "interpretability"]
    assert set(tables) == {"a", "b"}
    assert list(tables["a"].columns) == ["recall", "n_retrieved", "n_pairs", "n_genes"]
    assert {"X_emb_tvn_eval", "X_other_tvn_eval"} <= set(adata.obsm)
    assert {"recall_a", "recall_b", "X_emb_tvn_eval", "interpretability_preservation"} <= set(adata.uns)
    # the unimodal rows of tl.benchmark are this evaluation of the student embedding
    df = result[0]
    unimodal = df[(df["method"] == "unimodal") & (df["seed"] == 0)].iloc[0]
    assert summary.loc["a", "mean"] == unimodal["recall_mean"]
    assert summary.loc["a", "interpretability"] == unimodal["interpretability"]
    plain, _ = ssc.tl.evaluate_representations(
        ood.copy(), use_reps=["X_emb"], output_tvn=False, interpretability=False, sources=[pairs]
    )
    assert list(plain.index) == ["X_emb"] and "interpretability" not in plain.columns
    assert plain.loc["X_emb", "mean"] == unimodal["recall_mean_raw"]
    with pytest.raises(TypeError):
        ssc.tl.evaluate_representations(ood.copy(), {"a": "X_emb"})  # keyword-only


def _synthetic(n_seeds: int, gain: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_seeds):
        base = 0.2 + 0.01 * rng.normal()
        rows.append({"method": "unimodal", "pea": False, "seed": seed, "dataset": "a", "recall_mean": 0.15})
        for use_pea in (False, True):
            value = base + gain * use_pea * (1 + seed)
            rows.append({"method": "m", "pea": use_pea, "seed": seed, "dataset": "a", "recall_mean": value})
    return pd.DataFrame(rows)


def test_benchmark_summary_layout_and_wilcoxon():
    summary = ssc.tl.benchmark_summary(_synthetic(6, 0.01), metrics="recall_mean")
    assert list(summary.index) == [("unimodal", False), ("m", False), ("m", True)]
    assert summary.columns.names == ["dataset", "metric", "statistic"]
    assert summary.loc[("unimodal", False), ("a", "recall_mean", "std")] == 0
    assert summary.loc[("m", True), ("a", "recall_mean", "n")] == 6
    # PEA better for all 6 seeds: exact two-sided p = 2 / 2^6, one-sided 1 / 2^6
    assert summary.loc[("m", True), ("a", "recall_mean", "p_value")] == pytest.approx(2 / 64)
    one_sided = ssc.tl.benchmark_summary(_synthetic(6, 0.01), metrics="recall_mean", alternative="greater")
    assert one_sided.loc[("m", True), ("a", "recall_mean", "p_value")] == pytest.approx(1 / 64)
    assert np.isnan(summary.loc[("m", False), ("a", "recall_mean", "p_value")])
    # with 3 seeds the smallest two-sided p-value is 0.25; no difference at all gives 1
    small = ssc.tl.benchmark_summary(_synthetic(3, 0.01), metrics="recall_mean")
    assert small.loc[("m", True), ("a", "recall_mean", "p_value")] == pytest.approx(0.25)
    same = ssc.tl.benchmark_summary(_synthetic(3, 0.0), metrics="recall_mean")
    assert same.loc[("m", True), ("a", "recall_mean", "p_value")] == 1.0
    with pytest.raises(KeyError, match="interpretability"):
        ssc.tl.benchmark_summary(_synthetic(3, 0.0))


def test_pl_benchmark(result):
    df = result[0]
    ax = ssc.pl.benchmark(df)
    assert isinstance(ax, Axes)
    assert len(ax.patches) == 4  # unimodal, random, semiclipped without and with PEA
    assert any(t.get_text().startswith("p=") for t in ax.texts)
    two = pd.concat([df, df.assign(dataset="other")])
    fig = ssc.pl.benchmark(two, metric="interpretability")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    with pytest.raises(ValueError, match="`ax`"):
        ssc.pl.benchmark(two, ax=ax)
    with pytest.raises(ValueError, match="not in the benchmark"):
        ssc.pl.benchmark(df, datasets="nope")
    with pytest.raises(KeyError, match="no column"):
        ssc.pl.benchmark(df, metric="nope")


def test_benchmark_diverged_run_gets_nan_scores(data, caplog):
    student, teacher, ood, pairs = data
    df = ssc.tl.benchmark(
        student,
        teacher=teacher,
        ood_sets={"ood": ood},
        methods="vicreg",
        seeds=0,
        pea=False,
        baselines=(),
        sources=[pairs],
        interpretability=False,
        **(FIT | {"lr": 1e6}),
    )
    assert list(df.columns[-4:]) == ["recall_custom_0", "recall_mean", "recall_mean_raw", "interpretability"]
    assert df[["recall_mean", "recall_mean_raw"]].isna().all().all()
    assert "non-finite" in caplog.text
