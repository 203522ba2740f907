"""Known biological relationship recall (Celik et al. 2024, ``efaar_benchmarking``; docs/evaluation.md).

Same definition as ``efaar_benchmarking.benchmarking.known_relationship_benchmark`` (null of all ``i < j`` cosine
similarities, left and right ``searchsorted`` percentile ranks, both tails), vectorised: relationship pairs become
integer index pairs (``pandas.Index.get_indexer``) whose cosines are gathered from the triangle of the Gram
matrix, which LAPACK ``dsfrk`` writes in rectangular full packed format (half the work of a full product, half
its memory, contiguous: it is the null), sorted once in place (one chunk per CPU core, in threads) and searched
once for all sources; several thresholds reuse the ranks.
The cosines may differ from scikit-learn's in the last bit (scikit-learn uses another BLAS call), which can only
move a pair that ties a null value to within 1e-16 exactly at a threshold; the tests and
``benchmarks/bench_recall.py`` check that the recall equals efaar's on real databases.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.linalg import lapack

from scsemiclip._docs import doc_params, doc_recall_data
from scsemiclip._keys import canonical_keys
from scsemiclip._settings import settings
from scsemiclip._utils import Timer, control_mask, get_rep, normalize_pairs, storable, version_info
from scsemiclip._validate import check_key, check_threshold, check_thresholds
from scsemiclip.datasets import SOURCES, data_dir, relationships
from scsemiclip.pp import aggregate

if TYPE_CHECKING:
    from anndata import AnnData

#: Thresholds of :func:`known_relationship_recall_curve` (0.01 ... 0.25).
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25)
#: The smallest map that is benchmarked (``efaar_benchmarking.constants.MIN_REQ_ENT_CNT``).
MIN_GENES = 20

SourcesLike = str | pd.DataFrame | Sequence[str | pd.DataFrame] | Mapping[str, str | pd.DataFrame]


@dataclass(frozen=True)
class SourcePairs:
    """The relationships of one source that lie in the map, with their cosine similarity and null counts."""

    entity1: np.ndarray
    entity2: np.ndarray
    cosine: np.ndarray
    n_below: np.ndarray
    """Null values strictly below each pair's cosine (``searchsorted(..., side="left")``)."""
    n_below_or_equal: np.ndarray
    """Null values below or equal to each pair's cosine (``searchsorted(..., side="right")``)."""

    def retrieved(self, threshold: float, n_null: int) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the pairs in the left (bottom ``threshold``) and right (top ``threshold``) tails of the null."""
        left = self.n_below_or_equal / n_null <= threshold
        right = self.n_below / n_null >= 1 - threshold
        return left, right


@dataclass(frozen=True)
class RelationshipRanks:
    """Percentile ranks of every known relationship of a gene-level map within the map's null."""

    genes: pd.Index
    n_null: int
    sources: dict[str, SourcePairs]

    def table(self, thresholds: Sequence[float]) -> pd.DataFrame:
        """Long table ``source, threshold, recall, n_retrieved, n_pairs, n_genes`` (one ``"mean"`` row per threshold)."""
        gene_sets = {name: set(src.entity1) | set(src.entity2) for name, src in self.sources.items()}
        n_genes_all = len(set().union(*gene_sets.values()))
        rows = []
        for t in thresholds:
            block = []
            for name, src in self.sources.items():
                left, right = src.retrieved(t, self.n_null)
                n_hit = int(np.count_nonzero(left | right))
                recall = n_hit / src.cosine.size if src.cosine.size else np.nan
                block.append((name, t, recall, n_hit, src.cosine.size, len(gene_sets[name])))
            recall_mean = float(np.nanmean([r[2] for r in block]))
            n_hit_all, n_pairs_all = sum(r[3] for r in block), sum(r[4] for r in block)
            rows += [*block, ("mean", t, recall_mean, n_hit_all, n_pairs_all, n_genes_all)]
        return pd.DataFrame(rows, columns=["source", "threshold", "recall", "n_retrieved", "n_pairs", "n_genes"])


def gene_map(
    adata: AnnData, *, use_rep: str, perturbation_key: str | None, control_key: str | None
) -> tuple[np.ndarray, pd.Index]:
    """The gene-level float64 map of ``adata`` and its gene labels (controls dropped).

    With ``perturbation_key`` the rows are mean-aggregated per label by :func:`scsemiclip.pp.aggregate`; a map
    that already has one row per label goes through unchanged (the mean of one row is the row, bit for bit).
    With ``perturbation_key=None`` the rows are used as they are and ``obs_names`` are the gene labels (they
    must then be unique).
    """
    check_key(use_rep, name="use_rep")
    for key, arg in ((perturbation_key, "perturbation_key"), (control_key, "control_key")):
        check_key(key, name=arg, none_ok=True)
        if key is not None and key not in adata.obs.columns:
            raise KeyError(
                f"adata.obs has no column {key!r} (`{arg}`); pass `{arg}=None` for a gene-level map "
                + ("labelled by obs_names." if arg == "perturbation_key" else "without controls.")
            )
    if perturbation_key is not None:
        agg = aggregate(adata, use_rep=use_rep, by=perturbation_key, control_key=control_key)
        return agg.X, agg.obs_names
    x = get_rep(adata, use_rep)
    keep = ~control_mask(adata, control_key) if control_key is not None else np.ones(adata.n_obs, dtype=bool)
    genes = pd.Index(canonical_keys(adata.obs_names[keep])[0])
    if not genes.is_unique:
        raise ValueError(
            "`perturbation_key=None` uses obs_names as gene labels, but they are not unique; pass "
            "`perturbation_key` to aggregate the rows per perturbation."
        )
    return np.asarray(x[keep], dtype=np.float64), genes


@functools.lru_cache(maxsize=2 * len(SOURCES))
def _database(source: str, directory: str, *, download: bool = True) -> pd.DataFrame:
    """:func:`scsemiclip.datasets.relationships`, read once per process and cache directory (never modified).

    The gene columns are categorical, so that :func:`_row_of` looks each distinct gene up once.
    """
    return relationships(source, download=download).astype("category")


def local_sources() -> dict[str, pd.DataFrame]:
    """The relationship databases already on this machine (in :func:`scsemiclip.datasets.data_dir`), none downloaded."""
    out = {}
    for source in SOURCES:
        try:
            out[source] = _database(source, str(data_dir()), download=False)
        except FileNotFoundError:
            continue
    return out


def _row_of(genes: pd.Index, column: pd.Series) -> np.ndarray:
    """``genes.get_indexer(column)`` (-1 for labels not in ``genes``), through the categories of a categorical."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return genes.get_indexer(column.cat.categories)[column.cat.codes.to_numpy()]
    return genes.get_indexer(column)


def resolve_sources(sources: SourcesLike) -> dict[str, pd.DataFrame]:
    """Relationship tables by name: database names, ``entity1, entity2`` frames (``custom_<i>``) or a mapping."""
    if isinstance(sources, str | pd.DataFrame):
        sources = (sources,)
    if isinstance(sources, Mapping):
        items = list(sources.items())
    else:
        n_frames = np.cumsum([not isinstance(s, str) for s in sources]) - 1
        items = [(s if isinstance(s, str) else f"custom_{k}", s) for k, s in zip(n_frames, sources, strict=True)]
    if not items:
        raise ValueError(f"`sources` is empty; give database names from {list(SOURCES)} or relationship tables.")
    out: dict[str, pd.DataFrame] = {}
    for name, src in items:
        if name == "mean" or name in out:
            raise ValueError(f"`sources` names must be unique and not 'mean', got {name!r} twice or reserved.")
        if isinstance(src, str):
            out[name] = _database(src, str(data_dir()))
        elif isinstance(src, pd.DataFrame):
            out[name] = normalize_pairs(src)
        else:
            raise TypeError(
                f"`sources` entries must be database names or DataFrames with entity1, entity2; got {type(src).__name__}."
            )
    return out


def packed_position(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Position of entry ``(a, b)``, ``a <= b``, of a symmetric ``n x n`` matrix in rectangular full packed format.

    LAPACK's RFP format (``TRANSR="N"``, ``UPLO="U"``, as ``dsfrk`` writes it): the upper triangle of columns
    ``n // 2 ...`` is stored as it is (leading dimension ``n + 1`` for even ``n``, ``n`` for odd ``n``) and the
    upper triangle of the first ``n // 2`` columns, transposed, fills the space below it.
    """
    half = n // 2
    right = b >= half
    return np.where(right, a, half + 1 + b) + (n + 1 - n % 2) * np.where(right, b - half, a)


def packed_cosines(x: np.ndarray) -> np.ndarray:
    """Cosine similarities of all row pairs of ``x`` (float64), in rectangular full packed format, diagonal ``+inf``.

    The rows are L2-normalised as :func:`sklearn.preprocessing.normalize` does (a zero row stays zero, its
    cosines are 0). LAPACK ``dsfrk`` writes the triangle of the Gram matrix into ``n (n + 1) / 2`` contiguous
    values (half an ``n x n`` matrix: 0.68 GB at 13,000 genes, and no compaction pass); pair ``(a, b)`` is at
    :func:`packed_position`. The ``n`` diagonal entries are set to ``+inf``, so that sorted they come last and no
    finite value counts them as below or equal.

    Returns
    -------
    The packed array of length ``n (n + 1) / 2``.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1.0
    n, d = x.shape
    packed = np.empty(n * (n + 1) // 2)  # with beta = 0, dsfrk never reads it: no zero-filling pass
    unit = (x / norms[:, None]).T  # (d, n), Fortran-ordered: LAPACK reads it without a copy
    packed = lapack.dsfrk(n, d, 1.0, unit, 0.0, packed, trans="T", overwrite_c=True)
    diagonal = np.arange(n)
    packed[packed_position(diagonal, diagonal, n)] = np.inf
    return packed


def _sort_in_chunks(values: np.ndarray) -> list[np.ndarray]:
    """Sort ``values`` in place as one sorted chunk per thread of ``settings.n_jobs`` (numpy sorts without the GIL)."""
    n_chunks = max(1, min(settings.n_jobs, values.size // 1_000_000))
    chunks = np.array_split(values, n_chunks)
    with ThreadPoolExecutor(n_chunks) as pool:
        list(pool.map(np.ndarray.sort, chunks))
    return chunks


def rank_relationships(x: np.ndarray, genes: pd.Index, tables: Mapping[str, pd.DataFrame]) -> RelationshipRanks:
    """Percentile ranks of the known relationships of a gene-level map (the core of the recall functions).

    Parameters
    ----------
    x
        ``(n_genes, d)`` float64 gene-level map.
    genes
        Unique gene labels of the rows of ``x``.
    tables
        Normalised relationship tables by source name (see :func:`resolve_sources`).

    Returns
    -------
    The pairs of each source with both genes in the map, their cosine and their null counts.
    """
    n = len(genes)
    if n < MIN_GENES:
        raise ValueError(
            f"The map has {n} gene(s) after dropping the controls; known-relationship recall needs at least {MIN_GENES}."
        )
    found = {}
    for name, table in tables.items():
        i, j = _row_of(genes, table["entity1"]), _row_of(genes, table["entity2"])
        keep = (i >= 0) & (j >= 0)
        found[name] = (keep, packed_position(np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep]), n))
    if not any(pos.size for _, pos in found.values()):
        raise ValueError(
            f"None of the {n} map labels forms a known relationship in {list(tables)}; the perturbation labels "
            "must be gene symbols (e.g. 'TP53')."
        )
    null = packed_cosines(np.asarray(x, dtype=np.float64))
    query = null[np.concatenate([pos for _, pos in found.values()])]
    order = np.argsort(query)  # sorted keys make the binary searches cache-friendly
    keys = query[order]
    n_below, n_below_or_equal = np.zeros((2, query.size), dtype=np.int64)
    for chunk in _sort_in_chunks(null):  # counts in the whole null = sums of the counts in each sorted chunk
        n_below[order] += np.searchsorted(chunk, keys, side="left")
        n_below_or_equal[order] += np.searchsorted(chunk, keys, side="right")
    out, offset = {}, 0
    for name, (keep, pos) in found.items():
        sl = slice(offset, offset + pos.size)
        offset += pos.size
        table = tables[name]
        out[name] = SourcePairs(
            entity1=np.asarray(table["entity1"][keep], dtype=object),
            entity2=np.asarray(table["entity2"][keep], dtype=object),
            cosine=query[sl],
            n_below=n_below[sl],
            n_below_or_equal=n_below_or_equal[sl],
        )
    return RelationshipRanks(genes=genes, n_null=n * (n - 1) // 2, sources=out)


def compute_ranks(
    adata: AnnData,
    *,
    use_rep: str,
    perturbation_key: str | None,
    control_key: str | None,
    sources: SourcesLike,
) -> RelationshipRanks:
    """:func:`gene_map`, :func:`resolve_sources` and :func:`rank_relationships` in one call (writes nothing)."""
    x, genes = gene_map(adata, use_rep=use_rep, perturbation_key=perturbation_key, control_key=control_key)
    return rank_relationships(x, genes, resolve_sources(sources))


def _store(adata: AnnData, key: str, field: str, value: object, params: dict, **extra: object) -> None:
    """Write one result into ``adata.uns[key]``: ``{field: value, "params": {**params, **extra}, "version"}``."""
    adata.uns[key] = {field: value, "params": {**params, **extra}, "version": version_info()}


def _str_index(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its index as strings (h5ad writes the index of a DataFrame in ``uns`` as strings)."""
    return table.set_axis(table.index.astype(str))


def _params(
    use_rep: str, perturbation_key: str | None, control_key: str | None, ranks: RelationshipRanks
) -> dict[str, object]:
    return storable(
        {
            "use_rep": use_rep,
            "perturbation_key": perturbation_key,
            "control_key": control_key,
            "sources": list(ranks.sources),
            "n_map_genes": len(ranks.genes),
            "n_null": ranks.n_null,
        }
    )


@doc_params(doc_recall_data=doc_recall_data)
def known_relationship_recall(
    adata: AnnData,
    *,
    use_rep: str,
    perturbation_key: str | None = "perturbation",
    control_key: str | None = "is_control",
    sources: SourcesLike = SOURCES,
    threshold: float = 0.05,
    key_added: str = "known_relationship_recall",
) -> pd.DataFrame:
    """Recall of known gene-gene relationships among the most (anti-)similar gene pairs.

    Controls are dropped and the embedding is mean-aggregated per gene; every pair of genes ``i < j`` forms the
    null of cosine similarities. A known relationship (undirected, both genes in the map) is retrieved when its
    cosine is in the bottom or top ``threshold`` of the null (both tails, so a random map gives about
    ``2 * threshold``). Equal to ``efaar_benchmarking.benchmarking.known_relationship_benchmark`` on the same
    float64 map, for thresholds ``(threshold, 1 - threshold)``.

    Parameters
    ----------
    {doc_recall_data}
    threshold
        Share of the null in each tail, in ``(0, 0.5]``.
    key_added
        Key of the result in ``adata.uns``.

    Returns
    -------
    A table indexed by ``source`` (one row per source, then ``"mean"``) with columns

    ``recall``
        Share of the source's pairs in the map that are retrieved (NaN for a source without pairs in the map;
        the ``"mean"`` row is the unweighted mean over the sources with pairs).
    ``n_retrieved``
        Number of retrieved pairs (total over sources in the ``"mean"`` row).
    ``n_pairs``
        Number of the source's pairs with both genes in the map (total over sources in the ``"mean"`` row).
    ``n_genes``
        Number of map genes in at least one of those pairs (in any source for the ``"mean"`` row).

    Also writes ``adata.uns[key_added]`` = ``{"table": <the table>, "params": {use_rep, perturbation_key,
    control_key, sources, n_map_genes, n_null, threshold}, "version": ...}``.

    Raises
    ------
    ValueError
        With fewer than 20 genes after dropping the controls, or when no pair of map genes is a known relationship.
    """
    threshold = check_threshold(threshold, name="threshold")
    check_key(key_added, name="key_added")
    timer = Timer(f"known-relationship recall of {use_rep!r}")
    ranks = compute_ranks(
        adata, use_rep=use_rep, perturbation_key=perturbation_key, control_key=control_key, sources=sources
    )
    table = ranks.table([threshold]).drop(columns="threshold").set_index("source")
    _store(
        adata,
        key_added,
        "table",
        table.copy(),
        _params(use_rep, perturbation_key, control_key, ranks),
        threshold=threshold,
    )
    timer.done(f"mean recall {table.loc['mean', 'recall']:.4f}, added uns[{key_added!r}]")
    return table


@doc_params(doc_recall_data=doc_recall_data)
def known_relationship_recall_curve(
    adata: AnnData,
    *,
    use_rep: str,
    perturbation_key: str | None = "perturbation",
    control_key: str | None = "is_control",
    sources: SourcesLike = SOURCES,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    key_added: str = "known_relationship_recall_curve",
) -> pd.DataFrame:
    """Known-relationship recall at several thresholds in one pass (for recall-versus-threshold curves).

    The ranks of the pairs are computed once (as in :func:`known_relationship_recall`) and thresholded for
    every value of ``thresholds``; each row equals :func:`known_relationship_recall` at that threshold.

    Parameters
    ----------
    {doc_recall_data}
    thresholds
        Shares of the null in each tail, each in ``(0, 0.5]``.
    key_added
        Key of the result in ``adata.uns``.

    Returns
    -------
    A long table with columns ``source`` (each source, then ``"mean"``), ``threshold``, ``recall``,
    ``n_retrieved``, ``n_pairs``, ``n_genes`` (as in :func:`known_relationship_recall`), one row per source and
    threshold; ``table.pivot(index="threshold", columns="source", values="recall")`` gives the curves.

    Also writes ``adata.uns[key_added]`` = ``{"table": <the table>, "params": {use_rep, perturbation_key,
    control_key, sources, n_map_genes, n_null, thresholds}, "version": ...}``.
    """
    thresholds = check_thresholds(thresholds, name="thresholds")
    check_key(key_added, name="key_added")
    ranks = compute_ranks(
        adata, use_rep=use_rep, perturbation_key=perturbation_key, control_key=control_key, sources=sources
    )
    table = ranks.table(thresholds)
    _store(
        adata,
        key_added,
        "table",
        _str_index(table),
        _params(use_rep, perturbation_key, control_key, ranks),
        thresholds=thresholds,
    )
    return table


@doc_params(doc_recall_data=doc_recall_data)
def retrieved_relationships(
    adata: AnnData,
    *,
    use_rep: str,
    perturbation_key: str | None = "perturbation",
    control_key: str | None = "is_control",
    sources: SourcesLike = SOURCES,
    threshold: float = 0.05,
    key_added: str = "retrieved_relationships",
) -> dict[str, pd.DataFrame]:
    """The known relationships an embedding retrieves, per source, to compare embeddings (the paper's Figure 4).

    Parameters
    ----------
    {doc_recall_data}
    threshold
        Share of the null in each tail, in ``(0, 0.5]``.
    key_added
        Key of the result in ``adata.uns`` (one key per embedding to compare, see
        :func:`scsemiclip.pl.relationship_venn`).

    Returns
    -------
    Source name -> table of its retrieved pairs with columns ``entity1 < entity2``, ``cosine`` and ``tail``
    (``"right"``: among the top ``threshold`` most similar pairs; ``"left"``: among the bottom ``threshold``).

    Also writes ``adata.uns[key_added]`` = ``{"tables": {source: <its table>}, "params": {use_rep,
    perturbation_key, control_key, sources, n_map_genes, n_null, threshold}, "version": ...}``.
    """
    threshold = check_threshold(threshold, name="threshold")
    check_key(key_added, name="key_added")
    ranks = compute_ranks(
        adata, use_rep=use_rep, perturbation_key=perturbation_key, control_key=control_key, sources=sources
    )
    out = {}
    for name, src in ranks.sources.items():
        left, right = src.retrieved(threshold, ranks.n_null)
        hit = left | right
        out[name] = pd.DataFrame(
            {
                "entity1": src.entity1[hit],
                "entity2": src.entity2[hit],
                "cosine": src.cosine[hit],
                "tail": np.where(right[hit], "right", "left"),
            }
        )
    tables = {name: _str_index(table) for name, table in out.items()}
    _store(
        adata, key_added, "tables", tables, _params(use_rep, perturbation_key, control_key, ranks), threshold=threshold
    )
    return out
