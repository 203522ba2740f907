"""Over-representation of gene sets among the genes of retrieved relationships (the paper's Table 3)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, hypergeom

from scsemiclip._docs import doc_map_keys, doc_params
from scsemiclip._utils import Timer, storable, version_info
from scsemiclip._validate import check_choice, check_int, check_key, check_threshold
from scsemiclip.datasets import SOURCES
from scsemiclip.datasets import gene_sets as load_gene_sets

from ._recall import RelationshipRanks, SourcesLike, _str_index, compute_ranks

if TYPE_CHECKING:
    from anndata import AnnData

#: Columns of the table of :func:`relationship_enrichment`.
COLUMNS = ("gene_set", "overlap", "set_size", "query_size", "background_size", "p_value", "q_value", "genes")
BACKGROUNDS = ("retrieved", "map")


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
    key_added: str = "relationship_enrichment",
) -> pd.DataFrame:
    r"""Gene sets over-represented among the relationships some representations retrieve and others miss.

    A known relationship is retrieved by a representation when its cosine falls in a tail of the recall null
    (as in :func:`scsemiclip.tl.retrieved_relationships`, any of ``sources``). The query is the set of genes of
    the relationships retrieved by every representation of ``include`` and by none of ``exclude``: e.g.
    ``include="X_semiclipped", exclude=("X_scVI", "X_phenom")`` for the paper's "Semi-Clipped \ (Tx ∪ Img)",
    ``include=("X_semiclipped", "X_phenom"), exclude="X_scVI"`` for "(Semi-Clipped ∩ Img) \ Tx" (Table 3).
    Each gene set, restricted to the background, is tested by the hypergeometric right tail of its overlap with
    the query; q-values are Benjamini-Hochberg over the tested sets. Only sets with at least one query gene are
    tested (as ``gseapy.enrich`` and Enrichr do), so the table equals ``gseapy.enrich(query, sets,
    background=background)`` on the size-filtered sets.

    The test takes the query genes as independent draws, but they come in related pairs, often of one pathway
    (the Reactome relationships are made from its pathways), so even a random map has sets with small p-values:
    compare with a random map (:func:`scsemiclip.tl.random_baseline`) scored the same way, as
    ``benchmarks/table3.py`` does.

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
        Hypergeometric probability of an overlap at least as large (``scipy.stats.hypergeom.sf(overlap - 1,
        background_size, set_size, query_size)``).
    ``q_value``
        Benjamini-Hochberg adjusted p-value over the rows.
    ``genes``
        The overlapping genes, sorted, joined by ``";"``.

    Also writes ``adata.uns[key_added]`` = ``{"table": <the table>, "params": {include, exclude, gene_sets,
    background, threshold, min_size, max_size, perturbation_key, control_key, sources, n_query_pairs},
    "version": ...}``. An empty query gives an empty table.
    """
    include, exclude = _reps(include, "include"), _reps(exclude, "exclude")
    if not include:
        raise ValueError("`include` must name at least one representation (a key of adata.obsm).")
    if both := sorted(set(include) & set(exclude)):
        raise ValueError(f"{both} are in both `include` and `exclude`; a representation can be in only one.")
    check_choice(background, name="background", choices=BACKGROUNDS)
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
        "n_query_pairs": len(query_pairs),
    }
    adata.uns[key_added] = {"table": _str_index(table), "params": storable(params), "version": version_info()}
    timer.done(f"{len(table)} sets tested, {int((table.q_value <= 0.05).sum())} with q <= 0.05")
    return table
