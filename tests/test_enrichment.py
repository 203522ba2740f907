"""Gene sets (datasets.gene_sets) and the enrichment of retrieved relationships (tl/pl.relationship_enrichment)."""

from __future__ import annotations

import hashlib
import itertools

import anndata as ad
import gseapy
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

import scsemiclip as ssc
from scsemiclip.datasets._registry import REGISTRY

GMT = "genesets/ReactomePathways.gmt"


@pytest.fixture(scope="module")
def reactome() -> dict[str, list[str]]:
    return ssc.datasets.gene_sets("reactome")


@pytest.fixture
def screen(reactome) -> tuple[ad.AnnData, pd.DataFrame]:
    """A gene-level map of real Reactome genes: 8 disjoint pathways as modules, 3 representations.

    ``X_a`` clusters the genes of modules 0-3, ``X_b`` of modules 2-5, ``X_c`` of modules 4-7 (the other genes are
    noise in each), and the known relationships are the pairs within each module plus random cross pairs.
    """
    rng = np.random.default_rng(0)
    modules, used = [], set()
    for genes in reactome.values():
        if 8 <= len(genes) <= 12 and not used & set(genes) and all(g.isupper() for g in genes):
            modules.append(genes)
            used |= set(genes)
        if len(modules) == 8:
            break
    genes = [g for m in modules for g in m]
    module_of = np.repeat(np.arange(8), [len(m) for m in modules])
    pairs = [p for m in modules for p in itertools.combinations(m, 2)]
    pairs += [tuple(rng.choice(genes, 2, replace=False)) for _ in range(60)]
    table = pd.DataFrame(pairs, columns=["entity1", "entity2"])
    centers = rng.normal(size=(8, 12))
    adata = ad.AnnData(obs=pd.DataFrame({"module": module_of}, index=genes))
    for key, shown in (("X_a", (0, 1, 2, 3)), ("X_b", (2, 3, 4, 5)), ("X_c", (4, 5, 6, 7))):
        signal = np.where(np.isin(module_of, shown)[:, None], 3 * centers[module_of], 0.0)
        adata.obsm[key] = signal + rng.normal(size=(len(genes), 12))
    return adata, table


def _run(adata, table, **kwargs):
    kwargs = {"perturbation_key": None, "control_key": None, "sources": {"custom": table}, **kwargs}
    return ssc.tl.relationship_enrichment(adata, **kwargs)


def _retrieved(adata, table, rep) -> set[tuple[str, str]]:
    out = ssc.tl.retrieved_relationships(
        adata.copy(), use_rep=rep, perturbation_key=None, control_key=None, sources={"custom": table}
    )
    return set(zip(out["custom"].entity1, out["custom"].entity2, strict=True))


# ---- datasets.gene_sets ------------------------------------------------------------------------------------------


def test_reactome_is_the_registered_gmt_and_equals_gseapy_reader(reactome, shared_data):
    assert hashlib.sha256((shared_data / GMT).read_bytes()).hexdigest() == REGISTRY[GMT][0]
    assert reactome == gseapy.read_gmt(str(shared_data / GMT))
    assert len(reactome) == 2504
    assert reactome["5-Phosphoribose-1-diphosphate-biosynthesis"] == ["PRPS1", "PRPS1L1", "PRPS2"]
    assert ssc.datasets.gene_sets("Reactome") == reactome
    assert ssc.datasets.gene_sets(shared_data / GMT) == reactome


def test_corum_is_corum_clusters():
    corum = ssc.datasets.gene_sets("corum")
    clusters = ssc.datasets.corum_clusters()
    assert corum == {k: list(dict.fromkeys(v)) for k, v in clusters.items()}
    assert corum["(E.F.G) complex"] == ["SNRPE", "SNRPF", "SNRPG"]


def test_mapping_and_gmt_files_are_checked(tmp_path):
    assert ssc.datasets.gene_sets({"s": ("A", "B", "A"), "t": {"D", "C"}, "empty": []}) == {
        "s": ["A", "B"],
        "t": ["C", "D"],
    }
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("S1\tdesc\tA\tB\nS1\tdesc\tC\n\nS2\tdesc\tB\n")
    assert ssc.datasets.gene_sets(str(gmt)) == {"S1": ["A", "B", "C"], "S2": ["B"]}
    gmt.write_text("S1 A B\n")
    with pytest.raises(ValueError, match="line 1 is not GMT"):
        ssc.datasets.gene_sets(gmt)
    with pytest.raises(ValueError, match="neither a known collection"):
        ssc.datasets.gene_sets("kegg")
    with pytest.raises(TypeError, match="list of gene symbols"):
        ssc.datasets.gene_sets({"s": "ABC"})
    with pytest.raises(TypeError, match="collection name"):
        ssc.datasets.gene_sets(3)
    with pytest.raises(ValueError, match="empty"):
        ssc.datasets.gene_sets({"s": []})


# ---- tl.relationship_enrichment ----------------------------------------------------------------------------------


@pytest.mark.parametrize("background", ["retrieved", "map"])
def test_equals_gseapy_enrich_and_scipy(screen, reactome, background):
    adata, table = screen
    ra, rb, rc = (_retrieved(adata, table, rep) for rep in ("X_a", "X_b", "X_c"))
    query_pairs = (ra & rb) - rc
    query = sorted({g for p in query_pairs for g in p})
    bg = set(adata.obs_names) if background == "map" else {g for p in ra | rb | rc for g in p}
    kwargs = {"include": ("X_a", "X_b"), "exclude": "X_c", "gene_sets": "reactome", "background": background}
    got = _run(adata, table, **kwargs, min_size=3, test="hypergeometric")
    assert len(got) > 5 and got.q_value.iloc[0] < 0.01
    assert (got.query_size == len(query)).all() and (got.background_size == len(bg)).all()
    sized = {k: v for k, v in reactome.items() if 3 <= len(bg.intersection(v)) <= 500}
    ref = gseapy.enrich(gene_list=query, gene_sets=sized, background=sorted(bg), outdir=None, no_plot=True).res2d
    ref = ref.set_index("Term").loc[got.gene_set]
    np.testing.assert_allclose(got.p_value, ref["P-value"], rtol=1e-10, atol=0)
    np.testing.assert_allclose(got.q_value, ref["Adjusted P-value"], rtol=1e-10, atol=0)
    assert list(got.overlap.astype(str) + "/" + got.set_size.astype(str)) == list(ref.Overlap)
    assert [set(g.split(";")) for g in got.genes] == [set(g.split(";")) for g in ref.Genes]
    expected = hypergeom(len(bg), got.set_size, len(query)).sf(got.overlap - 1)
    np.testing.assert_allclose(got.p_value, expected, rtol=1e-12)
    assert got.p_value.is_monotonic_increasing


def test_query_is_included_minus_excluded(screen):
    adata, table = screen
    sets = {f"module{i}": list(adata.obs_names[i * 5 : i * 5 + 20]) for i in range(12)}
    ra, rb, rc = (_retrieved(adata, table, rep) for rep in ("X_a", "X_b", "X_c"))
    got = _run(adata, table, include="X_a", exclude=("X_b", "X_c"), gene_sets=sets, min_size=1)
    query = {g for p in ra - rb - rc for g in p}
    assert query and (got.query_size == len(query)).all()
    assert all(set(g.split(";")) <= query for g in got.genes)
    params = adata.uns["relationship_enrichment"]["params"]
    assert params["n_query_pairs"] == len(ra - rb - rc) and params["exclude"] == ["X_b", "X_c"]
    # the modules clustered by X_a only (0 and 1) hold the query genes (random cross pairs may add a few)
    assert adata.obs.loc[sorted(query), "module"].isin([0, 1]).mean() > 0.6


def test_per_sample_data_is_aggregated_like_the_recall(screen):
    adata, table = screen
    rng = np.random.default_rng(1)
    reps = [adata.obs_names.to_numpy()] * 2 + [np.array(["NTC"] * 10)]
    labels = np.concatenate(reps)
    obs = pd.DataFrame({"perturbation": labels, "is_control": labels == "NTC"})
    samples = ad.AnnData(obs=obs.set_axis([f"s{i}" for i in range(labels.size)]))
    means = {}
    for key in ("X_a", "X_b"):
        x = np.concatenate([adata.obsm[key], adata.obsm[key], np.zeros((10, 12))])
        samples.obsm[key] = x + rng.normal(scale=0.1, size=x.shape)
        means[key] = ssc.pp.aggregate(samples, use_rep=key).to_df()
    gene_level = ad.AnnData(obs=pd.DataFrame(index=means["X_a"].index))
    gene_level.obsm = {key: m.to_numpy() for key, m in means.items()}
    kwargs = {"include": "X_a", "exclude": "X_b", "gene_sets": "reactome", "sources": {"custom": table}}
    per_sample = ssc.tl.relationship_enrichment(samples, **kwargs)
    pd.testing.assert_frame_equal(per_sample, _run(gene_level, table, **kwargs))
    assert len(per_sample)


def test_size_bounds_and_empty_query(screen):
    adata, table = screen
    sets = {"small": list(adata.obs_names[:4]), "mid": list(adata.obs_names[:30]), "big": list(adata.obs_names)}
    got = _run(adata, table, include="X_a", gene_sets=sets, background="map", min_size=5, max_size=50)
    assert list(got.gene_set) == ["mid"]
    twin = adata.copy()
    twin.obsm["X_twin"] = twin.obsm["X_a"].copy()
    empty = _run(twin, table, include="X_a", exclude="X_twin", gene_sets=sets)
    assert empty.empty and list(empty.columns) == list(got.columns)
    assert twin.uns["relationship_enrichment"]["params"]["n_query_pairs"] == 0


def test_writes_only_its_uns_key_h5ad_storable_and_deterministic(screen, tmp_path):
    adata, table = screen
    adata = adata.copy()
    before = {k: v.copy() for k, v in adata.obsm.items()}
    first = _run(adata, table, include="X_a", exclude="X_b", gene_sets="reactome", key_added="enr")
    assert set(adata.uns) == {"enr"}
    assert all(np.array_equal(before[k], adata.obsm[k]) for k in before)
    again = _run(adata.copy(), table, include="X_a", exclude="X_b", gene_sets="reactome", key_added="enr")
    pd.testing.assert_frame_equal(first, again)
    adata.write_h5ad(tmp_path / "enr.h5ad")
    back = ad.read_h5ad(tmp_path / "enr.h5ad").uns["enr"]
    np.testing.assert_array_equal(back["table"]["p_value"], first.p_value)
    assert back["params"]["gene_sets"] == "reactome"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"include": ()}, ValueError, "at least one"),
        ({"include": "X_a", "exclude": ("X_b", "X_a")}, ValueError, "both `include` and `exclude`"),
        ({"include": ("X_a", "X_a")}, ValueError, "twice"),
        ({"include": "X_a", "background": "all"}, ValueError, "`background`"),
        ({"include": "X_a", "min_size": 0}, ValueError, "`min_size`"),
        ({"include": "X_a", "min_size": 10, "max_size": 5}, ValueError, "`max_size`"),
        ({"include": "X_a", "threshold": 0.7}, ValueError, "`threshold`"),
        ({"include": "X_nope"}, KeyError, "X_nope"),
        ({"include": 3}, TypeError, "`include`"),
        ({"include": "X_a", "gene_sets": "go"}, ValueError, "gene_sets"),
        ({"include": "X_a", "gene_sets": {"s": ["G1", "G2"]}}, ValueError, "is in any gene set"),
    ],
)
def test_bad_input_raises(screen, kwargs, error, match):
    adata, table = screen
    with pytest.raises(error, match=match):
        _run(adata.copy(), table, **kwargs)


# ---- pl.relationship_enrichment ----------------------------------------------------------------------------------


def test_plot_draws_top_sets_at_minus_log10_q(screen):
    adata, table = screen
    adata = adata.copy()
    got = _run(adata, table, include=("X_a", "X_b"), exclude="X_c", gene_sets="reactome", min_size=3)
    ax = ssc.pl.relationship_enrichment(adata, top=4)
    offsets = ax.collections[0].get_offsets()
    best = got.sort_values(["q_value", "p_value"], kind="stable").head(4)
    np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(-np.log10(best.q_value)))
    assert [t.get_text() for t in ax.get_yticklabels()][::-1] == [n[:60] for n in best.gene_set]
    plt.close(ax.figure)
    ax = ssc.pl.relationship_enrichment(got, top=100)
    assert len(ax.collections[0].get_offsets()) == min(100, len(got))
    plt.close(ax.figure)
    with pytest.raises(KeyError, match="relationship_enrichment` first"):
        ssc.pl.relationship_enrichment(ad.AnnData(obs=pd.DataFrame(index=["a"])))
    with pytest.raises(ValueError, match="`top`"):
        ssc.pl.relationship_enrichment(got, top=0)


# ---- the permutation test ----------------------------------------------------------------------------------------


def test_permutation_cutoffs_retrieve_as_the_recall(screen):
    """The tails' cosine cut-offs of the permutation null take exactly the pairs the recall retrieves."""
    from scsemiclip.tl._enrichment import _tail_cutoffs
    from scsemiclip.tl._recall import gene_map, packed_cosines, packed_position

    adata, table = screen
    for threshold in (0.01, 0.05, 0.2):
        x, genes = gene_map(adata, use_rep="X_a", perturbation_key=None, control_key=None)
        packed = packed_cosines(x)
        left, right = _tail_cutoffs(packed, len(genes) * (len(genes) - 1) // 2, threshold)
        retrieved = ssc.tl.retrieved_relationships(
            adata.copy(),
            use_rep="X_a",
            perturbation_key=None,
            control_key=None,
            sources={"c": table},
            threshold=threshold,
        )["c"]
        i, j = genes.get_indexer(retrieved.entity1), genes.get_indexer(retrieved.entity2)
        cos = packed[packed_position(np.minimum(i, j), np.maximum(i, j), len(genes))]
        ti, tj = genes.get_indexer(table.entity1), genes.get_indexer(table.entity2)
        unique = np.unique(np.stack([np.minimum(ti, tj), np.maximum(ti, tj)]), axis=1)
        unique = unique[:, unique[0] != unique[1]]  # the recall drops self-pairs and duplicates
        all_cos = packed[packed_position(unique[0], unique[1], len(genes))]
        assert ((cos < left) | (cos > right)).all()
        assert ((all_cos < left) | (all_cos > right)).sum() == len(retrieved)


def test_permutation_test_finds_the_modules_and_is_deterministic(screen):
    """X_a retrieves the pairs of modules 0-3, X_c those of 4-7: relabelling X_a, its modules' sets come first.

    Every relationship but 60 lies within a module, so a relabelled X_a retrieves module pairs too: the pair
    structure the hypergeometric test ignores makes the sets less extreme under this null (p about 0.05, not 3e-4).
    """
    adata, table = screen
    kwargs = {"include": "X_a", "exclude": "X_c", "gene_sets": "reactome", "min_size": 3}
    hyper = _run(adata, table, **kwargs, test="hypergeometric")
    got = _run(adata, table, **kwargs, n_permutations=200)
    assert got.p_value.iloc[0] < 0.1 < got.p_value.iloc[-1] and hyper.p_value.iloc[0] < 0.001
    assert set(got.gene_set) == set(hyper.gene_set)
    pd.testing.assert_frame_equal(got, _run(adata.copy(), table, **kwargs, n_permutations=200))
    assert adata.uns["relationship_enrichment"]["params"]["test"] == "permutation"


@pytest.fixture(scope="module")
def pathway_pairs(reactome) -> pd.DataFrame:
    """The relationships of 150 random Reactome pathways (5-40 genes, overlapping): every pair within a pathway."""
    names = [k for k, v in reactome.items() if 5 <= len(v) <= 40 and all(g.isupper() for g in v)]
    picked = np.random.default_rng(0).choice(names, 150, replace=False)
    pairs = {tuple(sorted(p)) for name in picked for p in itertools.combinations(reactome[name], 2)}
    return pd.DataFrame(sorted(pairs), columns=["entity1", "entity2"])


def test_permutation_test_is_calibrated_on_random_maps_where_the_hypergeometric_is_not(pathway_pairs):
    """Random maps over pathway-structured relationships: at most about 1 % of sets at p < 0.01, none at q < 0.05.

    The relationships come in pairs concentrated in the pathways: the hypergeometric test, which takes the genes as
    independent draws, calls about 7 % of the sets at p < 0.01 on the same maps.
    """
    genes = sorted(set(pathway_pairs.entity1) | set(pathway_pairs.entity2))
    p_perm, p_hyper, q_perm = [], [], []
    for seed in range(2):
        adata = ad.AnnData(obs=pd.DataFrame(index=genes))
        adata.obsm["X_r"] = np.random.default_rng(seed).normal(size=(len(genes), 16))
        kwargs = {"include": "X_r", "gene_sets": "reactome", "min_size": 3, "background": "map"}
        perm = _run(adata, pathway_pairs, **kwargs, n_permutations=200, rng=seed)
        p_perm += list(perm.p_value)
        q_perm += list(perm.q_value)
        p_hyper += list(_run(adata, pathway_pairs, **kwargs, test="hypergeometric").p_value)
    p_perm, p_hyper = np.array(p_perm), np.array(p_hyper)
    bound = 0.01 + 3 * np.sqrt(0.01 * 0.99 / p_perm.size)
    assert (p_perm < 0.01).mean() <= bound and min(q_perm) >= 0.05
    assert (p_hyper < 0.01).mean() > 3 * bound


def test_permutation_test_relabels_the_map_under_test_only(pathway_pairs, reactome):
    """Table 3's chance level: a label-shuffled copy of a structured map, minus what the structured map retrieves.

    Relabelling the structured map too would destroy the relationships it really retrieves; with only the map under
    test relabelled, the shuffled copy stays calibrated.
    """
    genes = sorted(set(pathway_pairs.entity1) | set(pathway_pairs.entity2))
    index = pd.Index(genes)
    rng = np.random.default_rng(0)
    structured = rng.normal(size=(len(genes), 16))
    for name in rng.choice(sorted(reactome), 300, replace=False):  # genes of a pathway share a direction
        rows = index.get_indexer(reactome[name])
        structured[rows[rows >= 0]] += rng.normal(size=16)
    p_values, q_values = [], []
    for seed in range(2):
        adata = ad.AnnData(obs=pd.DataFrame(index=genes))
        adata.obsm["X_real"] = structured
        adata.obsm["X_shuffled"] = structured[np.random.default_rng(seed + 1).permutation(len(genes))]
        kwargs = {"include": "X_shuffled", "exclude": "X_real", "gene_sets": "reactome", "min_size": 3}
        table = _run(adata, pathway_pairs, **kwargs, n_permutations=200, rng=seed)
        assert adata.uns["relationship_enrichment"]["params"]["permuted"] == ["X_shuffled"]
        p_values += list(table.p_value)
        q_values += list(table.q_value)
    p_values = np.array(p_values)
    assert (p_values < 0.01).mean() <= 0.01 + 3 * np.sqrt(0.01 * 0.99 / p_values.size) and min(q_values) >= 0.05
    with pytest.raises(ValueError, match="`permuted` must name"):
        _run(adata, pathway_pairs, **kwargs, permuted="X_other")
