"""tl.evaluate_map and pl.evaluation_summary: one call equal to the metric functions, tidy, storable, honest."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import adata_hash

import scsemiclip as ssc

pytestmark = pytest.mark.usefixtures("one_thread")

#: Small nulls and the CPU, so that the whole module runs in seconds.
FAST = {
    "null_size": 200,
    "signal_null_size": 200,
    "accelerator": "cpu",
    "rng": 3,
    "interpretability_kwargs": {"min_steps": 400},
}


@pytest.fixture(scope="module")
def screen():
    """A knockout screen of real genes: 5 replicates per gene over 3 batches, controls, expression counts."""
    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=20, n_genes=150, n_ood_genes=80, n_ood_replicates=5, n_panel_genes=60, rng=0
    )
    ood = data["ood"]
    ssc.tl.random_baseline(ood, use_rep="X_emb", key_added="X_random", rng=0)
    return ood


@pytest.fixture(scope="module")
def evaluated(screen):
    adata = screen.copy()
    table = ssc.tl.evaluate_map(adata, use_reps={"emb": "X_emb", "random": "X_random"}, **FAST)
    return adata, table


def _row(table: pd.DataFrame, rep: str, metric: str) -> pd.Series:
    rows = table[(table.representation == rep) & (table.metric == metric)]
    assert len(rows) == 1, (rep, metric)
    return rows.iloc[0]


def test_every_row_equals_its_metric_function(screen, evaluated):
    _, table = evaluated
    adata = screen.copy()
    ssc.pp.tvn(adata, use_rep="X_emb", key_added="X_tvn")
    recall = ssc.tl.known_relationship_recall(adata, use_rep="X_tvn")
    row = _row(table, "emb", "recall")
    assert row.value == recall.loc["mean", "recall"] and row.n_hits == recall.loc["mean", "n_retrieved"]
    assert row.n_total == recall.loc["mean", "n_pairs"]
    # the right tail alone, from the retrieved pairs (another code path)
    retrieved = ssc.tl.retrieved_relationships(adata, use_rep="X_tvn")
    right = {name: (t["tail"] == "right").sum() for name, t in retrieved.items()}
    per_source = [right[name] / recall.loc[name, "n_pairs"] for name in right]
    row = _row(table, "emb", "recall_right")
    assert row.value == pytest.approx(np.mean(per_source), rel=1e-12) and row.n_hits == sum(right.values())

    sig = {"null_size": 200, "accelerator": "cpu", "rng": 3}
    ssc.pp.standardize(adata, use_rep="X_emb", key_added="X_std")
    expected = {
        "phenotypic_activity": ssc.tl.phenotypic_activity(adata, use_rep="X_std", **sig),
        "phenotypic_consistency": ssc.tl.phenotypic_consistency(adata, use_rep="X_tvn", **sig),
        "perturbation_consistency": ssc.tl.perturbation_consistency(adata, use_rep="X_std", **sig),
        "perturbation_magnitude": ssc.tl.perturbation_magnitude(adata, use_rep="X_std", **sig),
    }
    for metric, ref in expected.items():
        stat = "value" if metric.startswith("perturbation") else "mean_average_precision"
        hits = int((ref["q_value"] < 0.05).sum())
        row = _row(table, "emb", metric)
        assert (row.value, row.n_hits, row.n_total) == (hits / len(ref), hits, len(ref)), metric
        assert _row(table, "emb", f"{metric}_mean").value == pytest.approx(ref[stat].mean(), rel=1e-12), metric
    interp = ssc.tl.interpretability_preservation(adata, use_rep="X_emb", rng=3, accelerator="cpu", min_steps=400)
    assert _row(table, "emb", "interpretability").value == interp["score"]


def test_tidy_table_stored_and_input_untouched(screen, evaluated, tmp_path):
    adata, table = evaluated
    assert list(table.columns) == ["representation", "metric", "value", "n_hits", "n_total"]
    assert list(dict.fromkeys(table.representation)) == ["emb", "random"]
    metrics = list(table[table.representation == "emb"].metric)
    assert metrics == [
        "recall",
        "recall_right",
        "phenotypic_activity",
        "phenotypic_activity_mean",
        "phenotypic_consistency",
        "phenotypic_consistency_mean",
        "perturbation_consistency",
        "perturbation_consistency_mean",
        "perturbation_magnitude",
        "perturbation_magnitude_mean",
        "interpretability",
    ]
    # only uns[key_added] is written
    assert adata_hash(adata) == adata_hash(screen) and set(adata.uns) == set(screen.uns) | {"evaluate_map"}
    stored = adata.uns["evaluate_map"]
    assert stored["skipped"] == {} and stored["params"]["use_reps"] == {"emb": "X_emb", "random": "X_random"}
    adata.write_h5ad(tmp_path / "e.h5ad")
    back = ad.read_h5ad(tmp_path / "e.h5ad").uns["evaluate_map"]
    pd.testing.assert_frame_equal(back["table"], table, check_index_type=False)
    assert set(back["details"]["emb"]) == {
        "recall",
        "phenotypic_activity",
        "phenotypic_consistency",
        "perturbation_consistency",
        "perturbation_magnitude",
        "interpretability",
    }


def test_informative_beats_random_which_scores_chance(evaluated):
    _, table = evaluated
    assert _row(table, "random", "recall").value == pytest.approx(0.10, abs=0.05)
    assert _row(table, "random", "recall_right").value == pytest.approx(0.05, abs=0.04)
    assert 15 < _row(table, "random", "interpretability").value < 30  # a decoder of noise adds noise: below 25
    for metric in ("phenotypic_activity", "perturbation_consistency", "perturbation_magnitude"):
        assert _row(table, "random", metric).value <= 0.05, metric  # no whitening fitted on the controls
        assert _row(table, "emb", metric).value >= 0.1, metric
    assert _row(table, "emb", "interpretability").value > _row(table, "random", "interpretability").value + 10


def test_same_seed_same_table(screen, evaluated):
    _, table = evaluated
    metrics = ["recall", "phenotypic_activity", "perturbation_magnitude"]
    again = ssc.tl.evaluate_map(screen.copy(), use_reps={"random": "X_random"}, metrics=metrics, **FAST)
    expected = table[(table.representation == "random") & table.metric.str.match("|".join(metrics))]
    pd.testing.assert_frame_equal(again, expected.reset_index(drop=True))


def test_gene_level_map_runs_what_it_allows(screen):
    agg = ssc.pp.aggregate(screen, use_rep="X_emb")
    agg.obsm["X_emb"] = np.asarray(agg.X)
    agg.obs["perturbation"] = agg.obs_names.astype(str)
    table = ssc.tl.evaluate_map(agg, use_reps="X_emb", batch_key=None, control_key=None, **FAST)
    assert set(table.metric) == {"recall", "recall_right", "phenotypic_consistency", "phenotypic_consistency_mean"}
    skipped = agg.uns["evaluate_map"]["skipped"]
    assert set(skipped) == {
        "phenotypic_activity",
        "perturbation_consistency",
        "perturbation_magnitude",
        "interpretability",
    }
    assert "2 replicates" in skipped["phenotypic_activity"] and "no controls" in skipped["interpretability"]
    with pytest.raises(ValueError, match="asks for 'phenotypic_activity', which cannot run: no perturbation"):
        ssc.tl.evaluate_map(agg, use_reps="X_emb", metrics=["phenotypic_activity"], batch_key=None, control_key=None)


def test_errors(screen):
    adata = screen.copy()
    with pytest.raises(ValueError, match="Unknown metric 'map'"):
        ssc.tl.evaluate_map(adata, use_reps="X_emb", metrics=["map"])
    with pytest.raises(ValueError, match="`use_reps` is empty"):
        ssc.tl.evaluate_map(adata, use_reps=[])
    with pytest.raises(KeyError, match="'X_nope' .of `use_reps`. is not in adata.obsm"):
        ssc.tl.evaluate_map(adata, use_reps={"a": "X_nope"}, metrics=["recall"])
    with pytest.raises(KeyError, match="'plate'"):
        ssc.tl.evaluate_map(adata, use_reps="X_emb", batch_key="plate")
    with pytest.raises(ValueError, match="`fdr`"):
        ssc.tl.evaluate_map(adata, use_reps="X_emb", fdr=0.0)
    with pytest.raises(ValueError, match="`protocol` must be one of"):
        ssc.tl.evaluate_map(adata, use_reps="X_emb", protocol="fast")
    with pytest.raises(ValueError, match="`profile_correction` must be one of"):
        ssc.tl.evaluate_map(adata, use_reps="X_emb", profile_correction="zca")
    no_expr = ad.AnnData(obs=adata.obs.copy(), obsm={"X_emb": adata.obsm["X_emb"]})
    with pytest.raises(ValueError, match="cannot run: no expression"):
        ssc.tl.evaluate_map(no_expr, use_reps="X_emb", metrics=["interpretability"])
    assert adata_hash(adata) == adata_hash(screen) and "evaluate_map" not in adata.uns


def test_evaluation_summary_panels(evaluated):
    adata, table = evaluated
    fig = ssc.pl.evaluation_summary(adata)
    visible = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in visible] == list(dict.fromkeys(table.metric))
    assert [len(a.patches) for a in visible] == [2] * len(visible)  # one bar per representation
    recall_panel = visible[0]
    assert recall_panel.patches[0].get_height() == _row(table, "emb", "recall").value
    assert recall_panel.lines[0].get_ydata()[0] == pytest.approx(0.10)  # chance of the two-sided recall
    plt.close(fig)
    _, ax = plt.subplots()
    assert ssc.pl.evaluation_summary(table, metrics="interpretability", ax=ax) is ax
    assert ax.lines[0].get_ydata()[0] == 25
    plt.close("all")


def test_evaluation_summary_errors(screen, evaluated):
    adata, table = evaluated
    with pytest.raises(KeyError, match=r"run `scsemiclip.tl.evaluate_map"):
        ssc.pl.evaluation_summary(screen)
    with pytest.raises(ValueError, match="not in the evaluation's metrics"):
        ssc.pl.evaluation_summary(table, metrics=["mAP"])
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="`ax` takes one panel"):
        ssc.pl.evaluation_summary(adata, ax=ax)
    with pytest.raises(KeyError, match="needs the columns"):
        ssc.pl.evaluation_summary(table.drop(columns="value"))
    plt.close("all")


def test_cli_evaluate_prints_the_table_and_plots(screen, tmp_path, capsys):
    from scsemiclip._cli import main

    path, png = tmp_path / "screen.h5ad", tmp_path / "summary.png"
    screen.write_h5ad(path)
    argv = ["evaluate", "--adata", str(path), "--use-rep", "X_emb", "X_random", "--null-size", "200"]
    assert main([*argv, "--metrics", "recall", "phenotypic_activity", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for word in ("recall_right", "phenotypic_activity_mean", "X_random", "CORUM", "StringDB"):
        assert word in out
    assert png.stat().st_size > 0
    assert main([*argv, "--metrics", "mAP"]) != 0
    err = capsys.readouterr().err.strip()
    assert "Unknown metric 'mAP'" in err and len(err.splitlines()) == 1
