"""Known gene-gene relationship databases used by known-relationship recall."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._registry import fetch

SOURCES: tuple[str, ...] = ("CORUM", "HuMAP", "Reactome", "SIGNOR", "StringDB")

_LICENCES = {
    "CORUM": "CC-BY-NC 4.0",
    "HuMAP": "CC-BY 4.0",
    "Reactome": "CC0",
    "SIGNOR": "CC-BY-NC 4.0",
    "StringDB": "CC-BY 4.0",
}


def normalize_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Undirected, de-duplicated pairs without self-pairs: ``entity1 < entity2`` (vectorised).

    Parameters
    ----------
    df
        A frame with columns ``entity1`` and ``entity2``.

    Returns
    -------
    A new frame with columns ``entity1``, ``entity2`` (strings), in first-occurrence order.
    """
    missing = {"entity1", "entity2"} - set(df.columns)
    if missing:
        raise KeyError(f"A relationship table needs columns 'entity1' and 'entity2'; missing {sorted(missing)}.")
    a = df["entity1"].astype(str).to_numpy()
    b = df["entity2"].astype(str).to_numpy()
    lo, hi = np.where(a <= b, a, b), np.where(a <= b, b, a)
    out = pd.DataFrame({"entity1": lo, "entity2": hi})
    return out[out.entity1 != out.entity2].drop_duplicates(ignore_index=True)


def relationships(source: str) -> pd.DataFrame:
    """Known relationships of one database, as used by efaar_benchmarking.

    The file is downloaded once from the pinned efaar_benchmarking commit, checked against its sha256 and
    cached in the user cache directory (``$SCSEMICLIP_DATA_DIR`` overrides it).

    Parameters
    ----------
    source
        ``"CORUM"`` (CC-BY-NC 4.0), ``"HuMAP"`` (CC-BY 4.0), ``"Reactome"`` (CC0), ``"SIGNOR"`` (CC-BY-NC 4.0)
        or ``"StringDB"`` (CC-BY 4.0). Check the non-commercial terms of CORUM and SIGNOR before use.

    Returns
    -------
    A frame with columns ``entity1`` < ``entity2`` (gene symbols): undirected, de-duplicated, no self-pairs.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown relationship source {source!r}; choose from {list(SOURCES)}.")
    return normalize_pairs(pd.read_csv(fetch(f"relationships/{source}.txt")))


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
