"""pl.recall, pl.recall_thresholds, pl.relationship_venn: what is drawn (Agg backend)."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import adata_hash
from matplotlib.patches import Circle, Rectangle

from scsemiclip import pl, tl
from scsemiclip.datasets import SOURCES, relationships


@pytest.fixture(scope="module")
def gene_map(shared_data) -> ad.AnnData:
    """One row per gene (CORUM genes), three embeddings."""
    rng = np.random.default_rng(0)
    genes = pd.unique(relationships("CORUM").iloc[:1500].to_numpy().ravel())[:250]
    adata = ad.AnnData(obs=pd.DataFrame({"perturbation": genes, "is_control": False}, index=genes))
    base = rng.normal(size=(len(genes), 8))
    adata.obsm["A"] = base
    adata.obsm["B"] = base + rng.normal(size=base.shape)
    adata.obsm["C"] = rng.normal(size=base.shape)
    return adata


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_recall_bars_from_adata(gene_map):
    adata = gene_map.copy()
    table = tl.known_relationship_recall(adata, use_rep="A")
    before = adata_hash(adata)
    _, ax0 = plt.subplots()
    ax = pl.recall(adata, ax=ax0)
    assert ax is ax0
    heights = [b.get_height() for b in _bars(ax)]
    np.testing.assert_allclose(heights, 100 * table["recall"].to_numpy())  # in %, as the tables
    assert [t.get_text() for t in ax.get_xticklabels()] == [*SOURCES, "mean"]
    random_line = [line for line in ax.get_lines() if line.get_label().startswith("random")]
    assert len(random_line) == 1 and np.allclose(random_line[0].get_ydata(), 10)
    assert random_line[0].get_label() == "random level (10 %)" and ax.get_ylabel() == "% of known pairs retrieved"
    assert {t.get_text() for t in ax.texts} >= {f"{100 * r:.1f}" for r in table["recall"]}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["random level (10 %)", "mean over the databases"]  # every mark explained
    assert adata_hash(adata) == before


def test_recall_grouped_bars_and_bare_table(gene_map):
    adata = gene_map.copy()
    tables = {rep: tl.known_relationship_recall(adata, use_rep=rep, key_added=f"r_{rep}") for rep in "ABC"}
    ax = pl.recall(tables)
    bars = _bars(ax)
    assert len(bars) == 3 * (len(SOURCES) + 1)
    for k, rep in enumerate("ABC"):
        got = [b.get_height() for b in bars[k * 6 : (k + 1) * 6]]
        np.testing.assert_allclose(got, 100 * tables[rep]["recall"].to_numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B", "C", "mean over the databases"]
    assert not [line for line in ax.get_lines() if line.get_label().startswith("random")]  # bare tables
    from_adatas = pl.recall({"A": adata}, key="r_A")
    assert [b.get_height() for b in _bars(from_adatas)] == pytest.approx((100 * tables["A"]["recall"]).tolist())
    long = tables["A"].reset_index()  # a "source" column works too
    assert [b.get_height() for b in _bars(pl.recall(long, threshold=0.05))] == pytest.approx(
        (100 * tables["A"]["recall"]).tolist()
    )


def test_recall_missing_result(gene_map):
    with pytest.raises(KeyError, match="run `scsemiclip.tl.known_relationship_recall` first"):
        pl.recall(gene_map.copy())
    with pytest.raises(TypeError, match="AnnData or a recall table"):
        pl.recall([1, 2])


def test_recall_thresholds_curves(gene_map):
    adata = gene_map.copy()
    thresholds = (0.02, 0.05, 0.1, 0.2)
    stored = {
        rep: tl.known_relationship_recall_curve(adata, use_rep=rep, perturbation_key=None, key_added=f"curve_{rep}")
        for rep in "AC"
    }
    before = adata_hash(adata)
    ax = pl.recall_thresholds(adata, use_reps=["A", "C"], thresholds=thresholds)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"A", "C", "random"}
    for rep in "AC":
        curve = tl.known_relationship_recall_curve(adata.copy(), use_rep=rep, thresholds=thresholds)
        mean = curve[curve.source == "mean"]
        np.testing.assert_allclose(lines[rep].get_xdata(), thresholds)
        np.testing.assert_allclose(lines[rep].get_ydata(), mean["recall"])
    np.testing.assert_allclose(lines["random"].get_ydata(), 2 * np.array(thresholds))
    corum = pl.recall_thresholds(adata, use_reps="A", thresholds=thresholds, source="CORUM")
    assert corum.get_title().endswith("(CORUM)")
    assert adata_hash(adata) == before and set(adata.uns) == {"curve_A", "curve_C"}
    for rep, table in stored.items():
        pd.testing.assert_frame_equal(adata.uns[f"curve_{rep}"]["table"], table.set_axis(table.index.astype(str)))
    with pytest.raises(ValueError, match="source='GO'"):
        pl.recall_thresholds(adata, use_reps="A", source="GO")
    named = pl.recall_thresholds(adata, use_reps=["A", "C"], thresholds=thresholds, labels=["scVI", "PCA"])
    assert [line.get_label() for line in named.get_lines()] == ["scVI", "PCA", "random"]
    mapped = pl.recall_thresholds(adata, use_reps=["A", "C"], thresholds=thresholds, labels={"C": "PCA"})
    assert [line.get_label() for line in mapped.get_lines()] == ["A", "PCA", "random"]
    np.testing.assert_array_equal(named.get_lines()[1].get_ydata(), lines["C"].get_ydata())
    with pytest.raises(ValueError, match="`labels` needs one name per key"):
        pl.recall_thresholds(adata, use_reps=["A", "C"], labels=["only one"])


def test_recall_thresholds_all_stored_thresholds_and_keys(gene_map):
    adata = gene_map.copy()
    curve = tl.known_relationship_recall_curve(adata, use_rep="B")  # the default key
    _, ax0 = plt.subplots()
    ax = pl.recall_thresholds(adata, use_reps="B", ax=ax0)
    assert ax is ax0
    mean = curve[curve.source == "mean"].sort_values("threshold")
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), mean["threshold"])  # every stored threshold
    np.testing.assert_allclose(line.get_ydata(), mean["recall"])
    by_key = pl.recall_thresholds(adata, keys="known_relationship_recall_curve")
    assert [line.get_label() for line in by_key.get_lines()] == ["known_relationship_recall_curve", "random"]
    np.testing.assert_array_equal(by_key.get_lines()[0].get_ydata(), line.get_ydata())
    tl.known_relationship_recall_curve(adata, use_rep="B", key_added="same_again")  # equal results: no ambiguity
    np.testing.assert_array_equal(pl.recall_thresholds(adata, use_reps="B").get_lines()[0].get_ydata(), mean["recall"])


def test_recall_thresholds_missing_results(gene_map):
    adata = gene_map.copy()
    with pytest.raises(
        KeyError, match=r"run `scsemiclip.tl.known_relationship_recall_curve\(adata, use_rep='A', key_added="
    ):
        pl.recall_thresholds(adata, use_reps="A")
    tl.known_relationship_recall_curve(adata, use_rep="A", thresholds=(0.05, 0.1))
    before = adata_hash(adata)
    with pytest.raises(KeyError, match="use_rep='C'.*distinct `key_added` per embedding"):
        pl.recall_thresholds(adata, use_reps=["A", "C"])
    with pytest.raises(KeyError, match="adata.uns has no 'nope'; run `scsemiclip.tl.known_relationship_recall_curve"):
        pl.recall_thresholds(adata, keys="nope")
    tl.known_relationship_recall(adata, use_rep="A", key_added="bars")
    with pytest.raises(KeyError, match="'bars'] is not a result of `scsemiclip.tl.known_relationship_recall_curve`"):
        pl.recall_thresholds(adata, keys="bars")
    with pytest.raises(ValueError, match=r"thresholds \[0.2\] are not stored.*use_rep='A', thresholds=\[0.1, 0.2\]"):
        pl.recall_thresholds(adata, use_reps="A", thresholds=(0.1, 0.2))
    with pytest.raises(ValueError, match="either `use_reps`"):
        pl.recall_thresholds(adata)
    with pytest.raises(ValueError, match="not both"):
        pl.recall_thresholds(adata, use_reps="A", keys="known_relationship_recall_curve")
    tl.known_relationship_recall_curve(adata, use_rep="A", thresholds=(0.2,), key_added="other")
    with pytest.raises(ValueError, match=r"several different results.*\['known_relationship_recall_curve', 'other'\]"):
        pl.recall_thresholds(adata, use_reps="A")
    assert pl.recall_thresholds(adata, keys=["other"]).get_lines()[0].get_xdata().tolist() == [0.2]
    assert adata_hash(adata) == before


def test_plots_read_results_back_from_h5ad(gene_map, tmp_path):
    adata = gene_map.copy()
    for rep in "AB":
        tl.known_relationship_recall_curve(adata, use_rep=rep, key_added=f"curve_{rep}")
        tl.retrieved_relationships(adata, use_rep=rep, key_added=f"retrieved_{rep}")
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    for kwargs in ({"use_reps": ["A", "B"]}, {"keys": ["curve_A", "curve_B"]}):
        curves = [line.get_ydata() for line in pl.recall_thresholds(back, **kwargs).get_lines()]
        expected = [line.get_ydata() for line in pl.recall_thresholds(adata, use_reps=["A", "B"]).get_lines()]
        for got, want in zip(curves, expected, strict=True):
            np.testing.assert_array_equal(got, want)
    venn = pl.relationship_venn(back, use_reps=["A", "B"])
    direct = pl.relationship_venn(adata, keys=["retrieved_A", "retrieved_B"])
    assert [t.get_text() for t in venn.texts if t.get_fontweight() == "bold"] == [
        t.get_text() for t in direct.texts if t.get_fontweight() == "bold"
    ]


def _region_counts(sets: list[set]) -> dict[str, int]:
    """Expected Venn region counts, keyed by the text drawn."""
    a, b, *rest = sets
    if not rest:
        return {"a": len(a - b), "b": len(b - a), "ab": len(a & b)}
    c = rest[0]
    return {
        "a": len(a - b - c),
        "b": len(b - a - c),
        "c": len(c - a - b),
        "ab": len((a & b) - c),
        "ac": len((a & c) - b),
        "bc": len((b & c) - a),
        "abc": len(a & b & c),
    }


def _pairs(retrieved: dict[str, pd.DataFrame], source=None) -> set:
    tables = retrieved.values() if source is None else [retrieved[source]]
    return {p for t in tables for p in zip(t.entity1, t.entity2, strict=True)}


@pytest.mark.parametrize("reps", [("A", "B"), ("A", "B", "C")])
def test_relationship_venn_counts(gene_map, reps):
    adata = gene_map.copy()
    retrieved = [tl.retrieved_relationships(adata, use_rep=r, key_added=f"retrieved_{r}") for r in reps]
    before = adata_hash(adata)
    ax = pl.relationship_venn(adata, use_reps=list(reps))
    assert adata_hash(adata) == before and set(adata.uns) == {f"retrieved_{r}" for r in reps}
    expected = _region_counts([_pairs(r) for r in retrieved])
    texts = [t.get_text() for t in ax.texts]
    bold = [t.get_text() for t in ax.texts if t.get_fontweight() == "bold"]
    assert sorted(bold) == sorted(f"{n:,}" for n in expected.values())
    for r, res in zip(reps, retrieved, strict=True):
        assert f"{r}\n({len(_pairs(res)):,})" in texts
    assert len([p for p in ax.patches if isinstance(p, Circle)]) == len(reps)
    # the 2-set diagram: left-only count left of the intersection, right-only to the right
    if len(reps) == 2:
        xs = {t.get_text(): t.get_position()[0] for t in ax.texts if t.get_fontweight() == "bold"}
        assert xs[f"{expected['a']:,}"] < 0 < xs[f"{expected['b']:,}"] or expected["a"] == expected["b"]


def test_relationship_venn_from_precomputed_and_one_source(gene_map):
    adata = gene_map.copy()
    res = {r: tl.retrieved_relationships(adata, use_rep=r) for r in "AB"}
    ax = pl.relationship_venn(res, source="CORUM")
    expected = _region_counts([_pairs(res["A"], "CORUM"), _pairs(res["B"], "CORUM")])
    assert sorted(t.get_text() for t in ax.texts if t.get_fontweight() == "bold") == sorted(
        f"{n:,}" for n in expected.values()
    )
    assert "CORUM" in ax.get_title()
    tables = pl.relationship_venn({"A": res["A"]["CORUM"], "B": res["B"]["CORUM"]})
    assert sorted(t.get_text() for t in tables.texts if t.get_fontweight() == "bold") == sorted(
        f"{n:,}" for n in expected.values()
    )
    with pytest.raises(ValueError, match="2 or 3"):
        pl.relationship_venn(adata, use_reps=["A", "B", "C", "A"])
    with pytest.raises(ValueError, match="use_reps"):
        pl.relationship_venn(adata)


def test_relationship_venn_missing_results(gene_map):
    adata = gene_map.copy()
    tl.retrieved_relationships(adata, use_rep="A")  # the default key holds one result
    with pytest.raises(KeyError, match=r"run `scsemiclip.tl.retrieved_relationships\(adata, use_rep='B', key_added="):
        pl.relationship_venn(adata, use_reps=["A", "B"])
    with pytest.raises(KeyError, match="adata.uns has no 'nope'; run `scsemiclip.tl.retrieved_relationships"):
        pl.relationship_venn(adata, keys=["retrieved_relationships", "nope"])
    tl.retrieved_relationships(adata, use_rep="B", key_added="retrieved_B")
    tl.retrieved_relationships(adata, use_rep="A", threshold=0.1, key_added="retrieved_A_10")
    with pytest.raises(ValueError, match="several different results"):
        pl.relationship_venn(adata, use_reps=["A", "B"])
    ax = pl.relationship_venn(adata, keys=["retrieved_A_10", "retrieved_B"])
    assert "retrieved_A_10" in ax.get_title()


def test_one_colour_per_method_in_every_plot():
    from scsemiclip.pl._palette import METHOD_COLORS, method_colors

    same = method_colors(["X_semiclipped", "Semi-Clipped", "semiclipped", "semi_clipped"])
    assert set(same) == {METHOD_COLORS["semiclipped"]}
    assert method_colors(["random", "X_random"]) == [METHOD_COLORS["random"]] * 2
    others = method_colors(["A", "B", "Semi-Clipped", "C"])
    assert len(set(others)) == 4 and others[2] == METHOD_COLORS["semiclipped"]
    tutorial = ["transcriptomics", "Semi-Clipped + PEA", "Semi-Clipped (no PEA)", "random", "microscopy (reference)"]
    colors = method_colors(tutorial)  # the tutorials' names, signs and brackets included
    assert colors == [METHOD_COLORS[k] for k in ("unimodal", "semiclipped", "semiclippednopea", "random", "teacher")]


def test_quickstart_figure_shows_recall_beside_interpretability():
    from scsemiclip._cli import _quickstart_figure

    rng = np.random.default_rng(0)
    tables = {}
    for rep in ("unimodal", "semiclipped", "random"):
        recall = rng.uniform(0.05, 0.3, len(SOURCES))
        tables[rep] = pd.DataFrame({"recall": [*recall, recall.mean()]}, index=[*SOURCES, "mean"])
    summary = pd.DataFrame({rep: t["recall"] for rep, t in tables.items()}).T.assign(
        interpretability=[55.2, 61.0, 24.3]
    )
    fig = _quickstart_figure(summary, tables)
    recall_ax, interp_ax = fig.axes
    assert recall_ax.get_ylabel() == "% of known pairs retrieved" and interp_ax.get_ylabel() == "score (0-100)"
    assert [p.get_height() for p in interp_ax.patches] == [55.2, 61.0, 24.3]
    assert recall_ax.lines[0].get_ydata()[0] == pytest.approx(10) and interp_ax.lines[0].get_ydata()[0] == 25
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "random level (10 % recall, 25 interpretability)",
        "unimodal",
        "semiclipped",
        "random",
        "mean over the databases",
    ]
    # one colour per method in both panels; every text legible and apart from the others
    assert [p.get_facecolor() for p in interp_ax.patches] == [
        recall_ax.patches[6 * k].get_facecolor() for k in range(3)
    ]
    fig.canvas.draw()
    texts = [t for t in fig.findobj(plt.Text) if t.get_visible() and t.get_text().strip()]
    assert min(t.get_fontsize() for t in texts) >= 10
    boxes = [t.get_window_extent() for t in texts]
    assert not [(a, b) for k, a in enumerate(boxes) for b in boxes[k + 1 :] if a.overlaps(b)]
    plt.close(fig)
