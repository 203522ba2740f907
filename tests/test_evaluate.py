"""tl.evaluate_map and pl.evaluation_summary: one call equal to the metric functions, tidy, storable, honest."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import adata_hash

import scsemiclip as ssc
from scsemiclip.tl._calibration import cross_fit

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
    assert row.value == recall.loc["mean", "recall"] and row.n_significant == recall.loc["mean", "n_retrieved"]
    assert row.n_total == recall.loc["mean", "n_pairs"]
    # the right tail alone, from the retrieved pairs (another code path)
    retrieved = ssc.tl.retrieved_relationships(adata, use_rep="X_tvn")
    right = {name: (t["tail"] == "right").sum() for name, t in retrieved.items()}
    per_source = [right[name] / recall.loc[name, "n_pairs"] for name in right]
    row = _row(table, "emb", "recall_right")
    assert row.value == pytest.approx(np.mean(per_source), rel=1e-12) and row.n_significant == sum(right.values())

    sig = {"null_size": 200, "accelerator": "cpu", "rng": 3}
    # the profiles' correction is cross-fitted: standardised on half of each batch's controls (the seed's half)
    fitted = cross_fit(
        adata,
        use_rep="X_emb",
        key_added="X_std",
        correction="standardize",
        batch_key="batch",
        control_key="is_control",
        null="permutation",
        rng=3,
    )
    cross = {**sig, "fitted_key": fitted}
    expected = {
        "phenotypic_activity": ssc.tl.phenotypic_activity(adata, use_rep="X_std", **cross),
        "phenotypic_consistency": ssc.tl.phenotypic_consistency(adata, use_rep="X_tvn", **sig),
        "perturbation_consistency": ssc.tl.perturbation_consistency(adata, use_rep="X_std", **cross),
        "perturbation_magnitude": ssc.tl.perturbation_magnitude(adata, use_rep="X_std", **cross),
    }
    for metric, ref in expected.items():
        stat = "value" if metric.startswith("perturbation") else "mean_average_precision"
        hits = int((ref["q_value"] < 0.05).sum())
        row = _row(table, "emb", metric)
        assert (row.value, row.n_significant, row.n_total) == (hits / len(ref), hits, len(ref)), metric
        assert row.mean_statistic == pytest.approx(ref[stat].mean(), rel=1e-12), metric
    interp = ssc.tl.interpretability_preservation(adata, use_rep="X_emb", rng=3, accelerator="cpu", min_steps=400)
    row = _row(table, "emb", "interpretability")
    assert row.value == interp["score"] and row.n_total == adata.uns["interpretability_preservation"]["n_test"]


def test_tidy_table_stored_and_input_untouched(screen, evaluated, tmp_path):
    adata, table = evaluated
    assert list(table.columns) == [
        "representation",
        "metric",
        "value",
        "unit",
        "n_significant",
        "n_total",
        "counted",
        "mean_statistic",
        "random_level",
        "fair_across_spaces",
        "note",
    ]
    assert list(dict.fromkeys(table.representation)) == ["emb", "random"]
    emb = table[table.representation == "emb"].set_index("metric")
    families = [
        "recall",
        "recall_right",
        "phenotypic_activity",
        "phenotypic_consistency",
        "perturbation_consistency",
        "perturbation_magnitude",
        "interpretability",
    ]
    assert list(emb.index[: len(families)]) == families and emb.index.is_unique  # one row per metric
    assert all(m.endswith("_calibration") for m in emb.index[len(families) :])
    # every column filled where it is defined, and what is not comparable across spaces said so
    assert emb.loc["interpretability", "unit"] == "score (0-100)" and pd.isna(
        emb.loc["interpretability", "n_significant"]
    )
    assert emb.loc["interpretability", "counted"] == "test samples" and emb.loc["recall", "counted"] == "known pairs"
    assert (emb.loc[families[:-1], "unit"] == "fraction").all() and emb.loc[
        families[:-1], "n_significant"
    ].notna().all()
    assert list(emb.loc[families, "random_level"].fillna(-1)) == [0.10, 0.05, -1, -1, -1, -1, 25.0]
    unfair = ["phenotypic_activity", "perturbation_consistency", "perturbation_magnitude"]
    assert set(emb.index[~emb.fair_across_spaces]) == set(unfair)
    assert all("own space" in note for note in emb.loc[unfair, "note"])
    assert emb.loc[families[2:6], "mean_statistic"].notna().all() and emb.loc[["recall"], "mean_statistic"].isna().all()
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
    assert set(table.metric) == {"recall", "recall_right", "phenotypic_consistency"}
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


def test_bad_output_keys_and_metrics(screen):
    adata = screen.copy()
    for key in ("", None):
        with pytest.raises((ValueError, TypeError), match="`key_added`"):
            ssc.tl.evaluate_map(adata, use_reps="X_emb", metrics="recall", key_added=key)
    with pytest.raises(ValueError, match="`metrics` is empty"):
        ssc.tl.evaluate_map(adata, use_reps="X_emb", metrics=[])
    with pytest.raises(ValueError, match="`metrics` names 'recall' more than once"):
        ssc.tl.evaluate_map(adata, use_reps="X_emb", metrics=["recall", "phenotypic_activity", "recall"])
    assert "evaluate_map" not in adata.uns


def test_user_keys_never_collide_with_working_keys(screen):
    adata = screen.copy()
    for key in ("X_eval", "raw", "map_corrected", "profiles_corrected"):
        adata.obsm[key] = adata.obsm["X_emb"]
    keys = ["X_emb", "X_eval", "raw", "map_corrected", "profiles_corrected"]
    table = ssc.tl.evaluate_map(adata, use_reps=keys, metrics=["recall", "phenotypic_activity"], **FAST)
    values = table.pivot(index="metric", columns="representation", values="value")
    assert list(values.columns) == sorted(keys) and (values.nunique(axis=1) == 1).all()  # the same embedding


def test_recall_the_data_do_not_allow_is_skipped_and_said(screen, capsys):
    few = screen[screen.obs.is_control | screen.obs.perturbation.isin(screen.obs.perturbation.unique()[:10])].copy()
    coded = screen.copy()
    coded.obs["perturbation"] = pd.factorize(coded.obs["perturbation"])[0]  # integer labels: no gene symbols
    fast = {**FAST, "interpretability": False, "calibration": False}
    for adata, reason in ((few, "recall needs 20 genes"), (coded, "no two perturbation labels form a known")):
        table = ssc.tl.evaluate_map(adata, use_reps="X_emb", **fast)
        assert "recall" not in set(table.metric) and "phenotypic_activity" in set(table.metric)
        assert reason in adata.uns["evaluate_map"]["skipped"]["recall"]
        err = capsys.readouterr().err
        assert f"skipping recall: {adata.uns['evaluate_map']['skipped']['recall']}" in err
        assert "X_emb [1/1], phenotypic_activity [1/" in err  # a progress line per representation and metric
    with pytest.raises(ValueError, match="asks for 'recall', which cannot run: no two perturbation labels"):
        ssc.tl.evaluate_map(coded, use_reps="X_emb", metrics=["recall"])


def test_progress_lines_follow_the_settings(screen, capsys, caplog):
    adata = screen.copy()
    run = {"use_reps": {"emb": "X_emb", "random": "X_random"}, "metrics": ["recall"], **FAST}
    ssc.tl.evaluate_map(adata, **run)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1] for line in err] == [" emb [1/2], recall [1/1]", " random [2/2], recall [1/1]"]
    assert "recall_right" in err[0] and " %" in err[0]
    ssc.settings.progress_bar = False
    try:
        ssc.tl.evaluate_map(adata, **run)
        assert capsys.readouterr().err == ""
        with caplog.at_level("INFO", logger="scsemiclip"):  # a configured logger gets them instead
            ssc.tl.evaluate_map(adata, **run)
        assert sum("recall [1/1]" in r.message for r in caplog.records) == 2 and capsys.readouterr().err == ""
    finally:
        ssc.settings.progress_bar = True


def _texts(fig):
    """Window extents of every visible text of a drawn figure (titles, axis and tick labels, values, legend)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(plt.Text) if t.get_visible() and t.get_text().strip()]
    return {t: t.get_window_extent(renderer) for t in texts}


def test_evaluation_summary_panels(evaluated):
    adata, table = evaluated
    fig = ssc.pl.evaluation_summary(adata)
    visible = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in visible] == [
        "Known-relationship recall",
        "Recall, top tail only",
        "Phenotypic activity \N{DAGGER}",
        "Phenotypic consistency",
        "Perturbation consistency \N{DAGGER}",
        "Perturbation magnitude \N{DAGGER}",
        "Interpretability",
    ]  # readable titles; the calibration rows are left out by default
    assert all(a.get_ylabel() for a in visible) and visible[0].get_ylabel() == "% of known pairs retrieved"
    assert [len(a.patches) for a in visible] == [2] * len(visible)  # one bar per representation
    recall_panel = visible[0]
    assert recall_panel.patches[0].get_height() == pytest.approx(100 * _row(table, "emb", "recall").value)  # in %
    assert recall_panel.lines[0].get_ydata()[0] == pytest.approx(10)  # the random level of the two-sided recall
    values = [t.get_text() for t in recall_panel.texts]
    assert values == [f"{100 * _row(table, rep, 'recall').value:.1f}" for rep in ("emb", "random")]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["emb", "random", "random level (a map without information)"]
    assert "own controls" in fig.legends[0].get_title().get_text()
    # one colour per method, the same in every panel
    colours = {tuple(a.patches[0].get_facecolor()) for a in visible}
    assert len(colours) == 1 and visible[0].patches[1].get_facecolor() != visible[0].patches[0].get_facecolor()
    # nothing overlaps: no two texts, and no value label crosses its panel's random line
    extents = list(_texts(fig).items())
    for k, (t1, e1) in enumerate(extents):
        for t2, e2 in extents[k + 1 :]:
            assert not e1.overlaps(e2), (t1.get_text(), t2.get_text())
    for panel in visible:
        for line in panel.lines:
            y = panel.transData.transform((0, line.get_ydata()[0]))[1]
            for label in panel.texts:
                box = label.get_window_extent()
                assert not box.y0 < y < box.y1, (panel.get_title(), label.get_text())
    assert min(t.get_fontsize() for t in _texts(fig)) >= 10  # legible on a slide at the default size
    plt.close(fig)
    _, ax = plt.subplots()
    assert ssc.pl.evaluation_summary(table, metrics="interpretability", ax=ax) is ax
    assert ax.lines[0].get_ydata()[0] == 25 and ax.get_ylabel() == "score (0-100)"
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
    for ncols, error in ((0, ValueError), (-1, ValueError), (2.5, TypeError), ("2", TypeError), (True, TypeError)):
        with pytest.raises(error, match="`ncols` must be"):
            ssc.pl.evaluation_summary(table, ncols=ncols)
    plt.close("all")


def test_cli_evaluate_prints_the_table_and_plots(screen, tmp_path, capsys):
    from scsemiclip._cli import main

    path, png = tmp_path / "screen.h5ad", tmp_path / "summary.png"
    screen.write_h5ad(path)
    argv = ["evaluate", "--adata", str(path), "--use-rep", "X_emb", "X_random", "--null-size", "200"]
    assert main([*argv, "--metrics", "recall", "phenotypic_activity", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for word in ("recall_right (%)", "phenotypic_activity (%) *", "mAP", "own space", "X_random", "CORUM", "StringDB"):
        assert word in out
    assert png.stat().st_size > 0
    assert main([*argv, "--metrics", "mAP"]) != 0
    err = capsys.readouterr().err.strip()
    assert "Unknown metric 'mAP'" in err and len(err.splitlines()) == 1
