"""Over-representation of gene sets among the genes of retrieved relationships (the paper's Table 3).

The default test is a permutation test that keeps the pair structure: the gene labels of the representation under
test are permuted (the other representations keep theirs), the retrieved relationships and their genes recomputed,
and the overlap of each gene set with the query counted again. The null of all gene pairs of a map does not change
under a relabelling, so the tails' cosine cut-offs are computed once and a permutation is a gather of the packed
cosines (see docs/evaluation.md, "How the p-values are calibrated").
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import xlogy
from scipy.stats import false_discovery_control, hypergeom

from scsemiclip._docs import doc_map_keys, doc_params
from scsemiclip._utils import RNGLike, Timer, resolve_rng, storable, version_info
from scsemiclip._validate import check_choice, check_int, check_key, check_threshold
from scsemiclip.datasets import SOURCES
from scsemiclip.datasets import gene_sets as load_gene_sets

from ._recall import (
    RelationshipRanks,
    SourcesLike,
    _row_of,
    _str_index,
    compute_ranks,
    gene_map,
    packed_cosines,
    packed_position,
    resolve_sources,
)

if TYPE_CHECKING:
    from anndata import AnnData

#: Columns of the table of :func:`relationship_enrichment`.
COLUMNS = ("gene_set", "overlap", "set_size", "query_size", "background_size", "p_value", "q_value", "genes")
BACKGROUNDS = ("retrieved", "map")
#: The tests of :func:`relationship_enrichment`.
TESTS = ("permutation", "hypergeometric")
#: Permuted pair positions gathered at once (permutations x relationship pairs).
_GATHER_ELEMENTS = 2**23


def _reps(value: str | Sequence[str], arg: str) -> tuple[str, ...]:
    reps = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Sequence) else (value,)
    if not all(isinstance(r, str) for r in reps):
        raise TypeError(f"`{arg}` must be an obsm key or a sequence of obsm keys, got {value!r}.")
    if len(set(reps)) != len(reps):
        raise ValueError(f"`{arg}` names a representation twice: {list(reps)}.")
    return reps


def retrieved_pairs(ranks: RelationshipRanks, threshold: float) -> set[tuple[str, str]]:
    """The pairs ``(entity1, entity2)`` of any source in a recall tail of ``ranks``."""
    pairs: set[tuple[str, str]] = set()
    for src in ranks.sources.values():
        left, right = src.retrieved(threshold, ranks.n_null)
        hit = left | right
        pairs.update(zip(src.entity1[hit], src.entity2[hit], strict=True))
    return pairs


def enrichment_table(
    query: set[str], background: set[str], sets: Mapping[str, Sequence[str]], *, min_size: int, max_size: int
) -> pd.DataFrame:
    """Hypergeometric right tail and BH q-values of every gene set that overlaps ``query`` (within ``background``).

    Each set is restricted to ``background``; sets whose restricted size is outside ``[min_size, max_size]`` or
    that share no gene with the query are not tested (as ``gseapy.enrich`` and Enrichr, which test only sets with
    a hit). ``query`` is restricted to ``background`` too.

    Parameters
    ----------
    query
        The query genes.
    background
        The universe of the test.
    sets
        Gene-set name -> genes.
    min_size, max_size
        Bounds of the restricted set size.

    Returns
    -------
    The table of :func:`relationship_enrichment`, sorted by p-value (then name).
    """
    query = query & background
    rows = []
    for name, genes in sets.items():
        members = background.intersection(genes)
        hits = query & members
        if hits and min_size <= len(members) <= max_size:
            rows.append((name, len(hits), len(members), ";".join(sorted(hits))))
    table = pd.DataFrame(rows, columns=["gene_set", "overlap", "set_size", "genes"])
    table["query_size"] = len(query)
    table["background_size"] = len(background)
    if len(table):
        # P(X >= overlap) for X ~ Hypergeom(background, set, query) = sf(overlap - 1)
        p = hypergeom.sf(table["overlap"] - 1, len(background), table["set_size"], len(query))
        table["p_value"] = np.clip(p, 0.0, 1.0)
        table["q_value"] = false_discovery_control(table["p_value"].to_numpy(), method="bh")
    else:
        table["p_value"] = table["q_value"] = np.zeros(0)
    table = table.astype({"overlap": np.int64, "set_size": np.int64, "query_size": np.int64})
    table = table.astype({"background_size": np.int64, "p_value": np.float64, "q_value": np.float64})
    return table.sort_values(["p_value", "gene_set"], kind="stable", ignore_index=True)[list(COLUMNS)]


def _tail_cutoffs(packed: np.ndarray, n_null: int, threshold: float) -> tuple[float, float]:
    """Cosines below the first / above the second value are in the left / right recall tail (as ``retrieved``).

    ``SourcePairs.retrieved`` takes a pair when ``#(null <= c) / n_null <= threshold`` (left) or
    ``#(null < c) / n_null >= 1 - threshold`` (right); with ``m`` the largest count allowed on the left and ``r``
    the smallest required on the right, these are ``c < sorted[m]`` and ``c > sorted[r - 1]``.
    """
    m = int(np.floor(threshold * n_null))
    m += (m + 1) / n_null <= threshold
    m -= m / n_null > threshold
    r = int(np.ceil((1 - threshold) * n_null))
    r -= (r - 1) / n_null >= 1 - threshold
    r += r / n_null < 1 - threshold
    kth = sorted({k for k in (m, r - 1) if 0 <= k < n_null})
    part = np.partition(packed, kth) if kth else packed  # the n diagonal +inf sort last: n_null finite values first
    left = part[m] if m < n_null else np.inf
    right = part[r - 1] if r >= 1 else -np.inf
    return float(left), float(right)


def _overlap_score(
    overlap: np.ndarray, set_size: np.ndarray, query_size: np.ndarray | int, background_size: np.ndarray | int
) -> np.ndarray:
    """Signed root of the Poisson deviance of the overlap from its expectation ``query * set / background``.

    About the normal score of the hypergeometric tail for large counts, and tempered for small expectations (one
    gene where 0.01 are expected scores 2.7, where the z-score would give 10), so that tiny queries do not dominate.
    """
    m = np.maximum(np.asarray(background_size, dtype=np.float64), 1.0)  # a permutation may retrieve nothing
    expected = np.maximum(np.asarray(query_size, dtype=np.float64) * np.asarray(set_size, dtype=np.float64) / m, 1e-12)
    overlap = np.asarray(overlap, dtype=np.float64)
    deviance = 2 * (xlogy(overlap, overlap / expected) - (overlap - expected))
    return np.sign(overlap - expected) * np.sqrt(np.maximum(deviance, 0.0))


def _permutation_p_values(
    adata: AnnData,
    table: pd.DataFrame,
    *,
    reps: tuple[str, ...],
    n_include: int,
    permuted: tuple[str, ...],
    sets: Mapping[str, Sequence[str]],
    background: str,
    threshold: float,
    perturbation_key: str | None,
    control_key: str | None,
    sources: SourcesLike,
    n_permutations: int,
    rng: RNGLike,
) -> np.ndarray:
    """Permutation p-values of the rows of ``table``.

    The statistic of a set is the score of its overlap (:func:`_overlap_score`), recomputed on every relabelled map
    with that map's query, background and restricted set size (finer than the overlap itself, which ties often);
    ``p = (1 + #(null >= statistic)) / (1 + n_permutations)``.
    """
    genes, maps = None, []
    for rep in reps:
        x, genes = gene_map(adata, use_rep=rep, perturbation_key=perturbation_key, control_key=control_key)
        packed = packed_cosines(np.asarray(x, dtype=np.float64))
        n = len(genes)
        maps.append((rep in permuted, packed, _tail_cutoffs(packed, n * (n - 1) // 2, threshold)))
    n = len(genes)
    pairs = []
    for src in resolve_sources(sources).values():
        i, j = _row_of(genes, src["entity1"]), _row_of(genes, src["entity2"])
        keep = (i >= 0) & (j >= 0) & (i != j)
        pairs.append(np.stack([i[keep], j[keep]]))
    i, j = np.concatenate(pairs, axis=1)
    member_rows = [genes.get_indexer(list(sets[name])) for name in table["gene_set"]]
    member_rows = [r[r >= 0] for r in member_rows]
    membership = sp.csr_matrix(
        (
            np.ones(sum(r.size for r in member_rows)),
            np.concatenate(member_rows),
            np.cumsum([0, *map(len, member_rows)]),
        ),
        shape=(len(member_rows), n),
    )
    observed = _overlap_score(
        table["overlap"].to_numpy(), table["set_size"].to_numpy(), table["query_size"], table["background_size"]
    )
    at_least = np.zeros(len(table), dtype=np.int64)
    generator = resolve_rng(rng)
    step = max(1, _GATHER_ELEMENTS // max(1, i.size))
    for start in range(0, n_permutations, step):
        count = min(step, n_permutations - start)
        perm = np.stack([generator.permutation(n) for _ in range(count)])  # (count, n): gene a -> map row perm[a]
        a, b = perm[:, i], perm[:, j]
        pos = packed_position(np.minimum(a, b), np.maximum(a, b), n)
        fixed = packed_position(np.minimum(i, j), np.maximum(i, j), n)[None, :]
        hits = []
        for relabelled, packed, (left, right) in maps:
            cos = packed[pos] if relabelled else np.broadcast_to(packed[fixed], pos.shape)
            hits.append((cos < left) | (cos > right))
        query = np.logical_and.reduce(hits[:n_include])
        if len(hits) > n_include:
            query &= ~np.logical_or.reduce(hits[n_include:])
        in_query = np.zeros((count, n), dtype=bool)
        which, pair = np.nonzero(query)
        in_query[which, i[pair]] = in_query[which, j[pair]] = True
        if background == "map":
            universe = np.ones((count, n), dtype=bool)
        else:
            universe = np.zeros((count, n), dtype=bool)
            which, pair = np.nonzero(np.logical_or.reduce(hits))
            universe[which, i[pair]] = universe[which, j[pair]] = True
        # the query lies in the background, so its overlap with a set needs no restriction
        overlaps = membership @ in_query.T.astype(np.float64)  # (n_sets, count)
        set_sizes = membership @ universe.T.astype(np.float64)
        null = _overlap_score(overlaps, set_sizes, in_query.sum(axis=1), universe.sum(axis=1))
        at_least += (null >= observed[:, None] - 1e-9).sum(axis=1)
    return (1.0 + at_least) / (1.0 + n_permutations)


@doc_params(doc_map_keys=doc_map_keys)
def relationship_enrichment(
    adata: AnnData,
    *,
    include: str | Sequence[str],
    exclude: str | Sequence[str] = (),
    gene_sets: str | os.PathLike | Mapping[str, Sequence[str]] = "reactome",
    background: str = "retrieved",
    threshold: float = 0.05,
    min_size: int = 5,
    max_size: int = 500,
    perturbation_key: str | None = "perturbation",
    control_key: str | None = "is_control",
    sources: SourcesLike = SOURCES,
    test: str = "permutation",
    n_permutations: int = 1000,
    permuted: str | Sequence[str] | None = None,
    rng: RNGLike = 0,
    key_added: str = "relationship_enrichment",
) -> pd.DataFrame:
    r"""Gene sets over-represented among the relationships some representations retrieve and others miss.

    A known relationship is retrieved by a representation when its cosine falls in a tail of the recall null
    (as in :func:`scsemiclip.tl.retrieved_relationships`, any of ``sources``). The query is the set of genes of
    the relationships retrieved by every representation of ``include`` and by none of ``exclude``: e.g.
    ``include="X_semiclipped", exclude=("X_scVI", "X_phenom")`` for the paper's "Semi-Clipped \ (Tx ∪ Img)",
    ``include=("X_semiclipped", "X_phenom"), exclude="X_scVI"`` for "(Semi-Clipped ∩ Img) \ Tx" (Table 3).
    Only sets with at least one query gene are tested (as ``gseapy.enrich`` and Enrichr do); q-values are
    Benjamini-Hochberg over the tested sets.

    ``test="permutation"`` (default): the overlap of each set, scored against its expectation (signed root of
    the Poisson deviance), is compared with its values after each of ``n_permutations`` random relabellings of the
    genes of the representation under test (``permuted``; the others keep their labels: "Semi-Clipped \ (Tx ∪
    Img)" asks what a map unrelated to the genes would retrieve beyond the real Tx and Img maps), the retrieved
    relationships, the query, the background and the overlap recomputed each time; ``p = (1 + #(null >= z)) / (1
    + n_permutations)``. The retrieved relationships come in related pairs, concentrated in the
    pathways the databases cover densely (the Reactome relationships are made from its pathways): this null keeps
    that structure, so a label-shuffled or random map gets uniform p-values (see docs/evaluation.md, "How the
    p-values are calibrated"). The smallest p-value is ``1 / (1 + n_permutations)``.

    ``test="hypergeometric"``: the hypergeometric right tail of the overlap of each set, restricted to the
    background; the table then equals ``gseapy.enrich(query, sets, background=background)`` on the size-filtered
    sets. It takes the query genes as independent draws, so even a label-shuffled map has about 3.5 % of the
    Reactome sets at ``p < 0.01``: it is kept for comparison with gseapy and Enrichr.

    Parameters
    ----------
    adata
        Annotated data with the representations in ``obsm``: per sample (aggregated by ``perturbation_key``,
        controls dropped) or one row per gene.
    include
        Keys of ``adata.obsm`` (one or several): the relationships retrieved by all of them.
    exclude
        Keys of ``adata.obsm``: relationships retrieved by any of them leave the query.
    gene_sets
        ``"reactome"`` or ``"corum"`` (see :func:`scsemiclip.datasets.gene_sets`), a GMT path, or a mapping from
        set name to genes.
    background
        ``"retrieved"``: the genes of the relationships retrieved by any representation of ``include`` or
        ``exclude``; ``"map"``: every gene of the map.
    threshold
        Share of the recall null in each tail, in ``(0, 0.5]``, that makes a relationship retrieved.
    min_size, max_size
        Smallest and largest number of a set's genes in the background for the set to be tested.
    {doc_map_keys}
    sources
        Relationship databases, see :func:`scsemiclip.tl.known_relationship_recall`.
    test
        ``"permutation"`` (relabel the map, calibrated) or ``"hypergeometric"`` (gseapy's test).
    n_permutations
        Number of relabellings of the permutation test.
    permuted
        Keys of ``include`` or ``exclude`` whose gene labels the permutation test shuffles (``None``: the first of
        ``include``, the representation under test); the others keep their labels, and with them the relationships
        they retrieve for real.
    rng
        Seed or :class:`numpy.random.Generator` of the relabellings.
    key_added
        Key of the result in ``adata.uns``.

    Returns
    -------
    One row per tested gene set, sorted by p-value, with columns

    ``gene_set``
        Name of the set.
    ``overlap``
        Number of query genes in the set.
    ``set_size``
        Number of the set's genes in the background.
    ``query_size``
        Number of query genes (the same on every row).
    ``background_size``
        Number of background genes (the same on every row).
    ``p_value``
        Permutation p-value (``test="permutation"``), or the hypergeometric probability of an overlap at least as
        large (``scipy.stats.hypergeom.sf(overlap - 1, background_size, set_size, query_size)``).
    ``q_value``
        Benjamini-Hochberg adjusted p-value over the rows.
    ``genes``
        The overlapping genes, sorted, joined by ``";"``.

    Also writes ``adata.uns[key_added]`` = ``{"table": <the table>, "params": {include, exclude, gene_sets,
    background, threshold, min_size, max_size, perturbation_key, control_key, sources, test, n_permutations,
    permuted, n_query_pairs},
    "version": ...}``. An empty query gives an empty table.
    """
    include, exclude = _reps(include, "include"), _reps(exclude, "exclude")
    if not include:
        raise ValueError("`include` must name at least one representation (a key of adata.obsm).")
    if both := sorted(set(include) & set(exclude)):
        raise ValueError(f"{both} are in both `include` and `exclude`; a representation can be in only one.")
    check_choice(background, name="background", choices=BACKGROUNDS)
    check_choice(test, name="test", choices=TESTS)
    n_permutations = check_int(n_permutations, name="n_permutations", minimum=1)
    permuted = include[:1] if permuted is None else _reps(permuted, "permuted")
    if not permuted or (unknown := sorted(set(permuted) - {*include, *exclude})):
        raise ValueError(
            f"`permuted` must name representations of `include` or `exclude`, got {list(permuted)} "
            f"(not among them: {unknown if permuted else 'none given'})."
        )
    threshold = check_threshold(threshold, name="threshold")
    min_size = check_int(min_size, name="min_size", minimum=1)
    max_size = check_int(max_size, name="max_size", minimum=min_size)
    check_key(key_added, name="key_added")
    sets = load_gene_sets(gene_sets)
    timer = Timer(f"relationship enrichment of {list(include)} minus {list(exclude)}")
    ranks = {
        rep: compute_ranks(
            adata, use_rep=rep, perturbation_key=perturbation_key, control_key=control_key, sources=sources
        )
        for rep in (*include, *exclude)
    }
    retrieved = {rep: retrieved_pairs(r, threshold) for rep, r in ranks.items()}
    query_pairs = set.intersection(*(retrieved[rep] for rep in include))
    query_pairs -= set().union(*(retrieved[rep] for rep in exclude))
    map_genes = set(ranks[include[0]].genes)  # the same labels for every representation of adata
    if background == "map":
        universe = map_genes
    else:
        universe = {g for pairs in retrieved.values() for pair in pairs for g in pair}
    if universe and not any(universe.intersection(genes) for genes in sets.values()):
        raise ValueError(
            f"None of the {len(universe)} background genes (e.g. {sorted(universe)[0]!r}) is in any gene set; the "
            "map's gene labels must be gene symbols as in `gene_sets`."
        )
    query = {g for pair in query_pairs for g in pair}
    table = enrichment_table(query, universe, sets, min_size=min_size, max_size=max_size)
    if test == "permutation" and len(table):
        p_values = _permutation_p_values(
            adata,
            table,
            reps=(*include, *exclude),
            n_include=len(include),
            permuted=permuted,
            sets=sets,
            background=background,
            threshold=threshold,
            perturbation_key=perturbation_key,
            control_key=control_key,
            sources=sources,
            n_permutations=n_permutations,
            rng=rng,
        )
        table["p_value"] = p_values
        table["q_value"] = false_discovery_control(p_values, method="bh")
        table = table.sort_values(["p_value", "gene_set"], kind="stable", ignore_index=True)
    params = {
        "include": list(include),
        "exclude": list(exclude),
        "gene_sets": "custom" if isinstance(gene_sets, Mapping) else os.fspath(gene_sets),
        "background": background,
        "threshold": threshold,
        "min_size": min_size,
        "max_size": max_size,
        "perturbation_key": perturbation_key,
        "control_key": control_key,
        "sources": list(ranks[include[0]].sources),
        "test": test,
        "n_permutations": n_permutations,
        "permuted": list(permuted),
        "n_query_pairs": len(query_pairs),
    }
    adata.uns[key_added] = {"table": _str_index(table), "params": storable(params), "version": version_info()}
    timer.done(f"{len(table)} sets tested, {int((table.q_value <= 0.05).sum())} with q <= 0.05")
    return table
