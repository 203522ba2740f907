"""Gene-set collections for enrichment: Reactome pathways (GMT) and CORUM complexes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from scsemiclip._keys import is_missing

from ._registry import fetch
from ._relationships import corum_clusters

GENE_SETS: tuple[str, ...] = ("reactome", "corum")


def gene_sets(name: str | os.PathLike | Mapping[str, Sequence[str]] = "reactome") -> dict[str, list[str]]:
    """Named gene sets: Reactome pathways or CORUM complexes (or a GMT file, or a mapping, checked).

    ``"reactome"`` is the Reactome human pathway GMT (2,504 pathways, 2021 release; CC BY 4.0, cite Reactome),
    downloaded once from a pinned commit, checked against its sha256 and cached in the user cache directory
    (``$SCSEMICLIP_DATA_DIR`` overrides it). ``"corum"`` is the CORUM complexes file of
    :func:`corum_clusters` (CC-BY-NC 4.0; check its non-commercial terms before use).

    Parameters
    ----------
    name
        ``"reactome"``, ``"corum"`` (case-insensitive), the path of a GMT file (one set per line: name, a
        description, then the genes, tab-separated; UTF-8 text), or a mapping from set name to genes (returned
        as a validated copy; missing genes, ``None`` or NaN, are dropped).

    Returns
    -------
    A dict from gene-set name to its genes (strings, de-duplicated in first-occurrence order, empty sets
    dropped). Sets whose names repeat in a GMT file are merged.
    """
    if isinstance(name, Mapping):
        return _from_mapping(name)
    if isinstance(name, str) and name.lower() in GENE_SETS:
        if name.lower() == "corum":
            return _from_mapping(corum_clusters())
        return read_gmt(fetch("genesets/ReactomePathways.gmt"))
    if isinstance(name, str | os.PathLike):
        path = Path(name)
        if not path.is_file():
            raise ValueError(
                f"`gene_sets`: {str(name)!r} is neither a known collection ({', '.join(map(repr, GENE_SETS))}) "
                "nor an existing GMT file."
            )
        return read_gmt(path)
    raise TypeError(
        f"`gene_sets` must be a collection name, a GMT path or a mapping of set name -> genes, got "
        f"{type(name).__name__}."
    )


def read_gmt(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a GMT file: name, description, genes (tab-separated), one gene set per line.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    A dict from set name to genes (see :func:`gene_sets`).
    """
    raw = Path(path).read_bytes()
    if b"\0" in raw:
        raise ValueError(f"{os.fspath(path)!r} is a binary file, not a GMT file (tab-separated text).")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{os.fspath(path)!r} is not UTF-8 text (byte {raw[err.start]:#04x} on line {line}); GMT files are read as "
            "UTF-8: convert it (e.g. `iconv -f latin1 -t utf-8`) or pass the gene sets as a mapping."
        ) from None
    sets: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split("\t")
        if not fields[0].strip():
            continue
        if len(fields) < 2:
            raise ValueError(
                f"{os.fspath(path)!r} line {lineno} is not GMT: expected name, description and genes separated by tabs."
            )
        sets.setdefault(fields[0], []).extend(g.strip() for g in fields[2:])
    return _from_mapping(sets)


def _from_mapping(sets: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, genes in sets.items():
        if isinstance(genes, str | bytes) or not isinstance(genes, Iterable):
            raise TypeError(
                f"Gene set {key!r} must be a list of gene symbols, got {type(genes).__name__}; "
                "pass a mapping of set name -> list of genes."
            )
        present = [str(g) for g in genes if not is_missing(g)]  # None / NaN (a padded table's gaps): no gene
        if isinstance(genes, set | frozenset):
            present.sort()
        members = list(dict.fromkeys(g for g in present if g))
        if members:
            out[str(key)] = members
    if not out:
        raise ValueError("The gene sets are empty: no set has a gene.")
    return out
