"""Known gene-gene relationship databases used by known-relationship recall."""

from __future__ import annotations

import pandas as pd

from scsemiclip._utils import normalize_pairs
from scsemiclip._validate import check_key

from ._registry import fetch

#: Names of the known-relationship databases that :func:`~scsemiclip.datasets.relationships` loads.
SOURCES: tuple[str, ...] = ("CORUM", "HuMAP", "Reactome", "SIGNOR", "StringDB")

_LICENCES = {
    "CORUM": "CC-BY-NC 4.0",
    "HuMAP": "CC-BY 4.0",
    "Reactome": "CC0",
    "SIGNOR": "CC-BY-NC 4.0",
    "StringDB": "CC-BY 4.0",
}


def relationships(source: str, *, download: bool = True) -> pd.DataFrame:
    """Known relationships of one database, as used by efaar_benchmarking.

    The file is downloaded once from the pinned efaar_benchmarking commit, checked against its sha256 and
    cached in the user cache directory (``$SCSEMICLIP_DATA_DIR`` overrides it).

    Parameters
    ----------
    source
        ``"CORUM"`` (CC-BY-NC 4.0), ``"HuMAP"`` (CC-BY 4.0), ``"Reactome"`` (CC0), ``"SIGNOR"`` (CC-BY-NC 4.0)
        or ``"StringDB"`` (CC-BY 4.0). Check the non-commercial terms of CORUM and SIGNOR before use.
    download
        ``False``: a file not yet on this machine raises :class:`FileNotFoundError` instead of being downloaded.

    Returns
    -------
    A frame with columns ``entity1`` < ``entity2`` (gene symbols): undirected, de-duplicated, no self-pairs.
    """
    check_key(source, name="source")
    if source not in SOURCES:
        raise ValueError(f"Unknown relationship source {source!r}; choose from {list(SOURCES)}.")
    return normalize_pairs(pd.read_csv(fetch(f"relationships/{source}.txt", download=download)))


def corum_clusters() -> dict[str, list[str]]:
    """CORUM complexes (CC-BY-NC 4.0): complex id -> gene symbols.

    Returns
    -------
    A dict from complex id to its list of genes.
    """
    out: dict[str, list[str]] = {}
    with open(fetch("relationships/CORUM_clusters.tsv")) as fh:
        for line in fh:
            cid, _, genes = line.rstrip("\n").partition("\t")
            if cid and genes:
                out[cid] = genes.split()
    return out
