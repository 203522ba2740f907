"""Replogle et al. 2022 Perturb-seq: gene-level DE rank signatures (offline registry) and the figshare h5ad release."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from scsemiclip._utils import Timer, version_info
from scsemiclip._validate import check_int

from ._rda import read_rda_lists
from ._registry import fetch, fetch_url

_CELL_LINES = ("rpe1", "k562")
_N_RANKS = 1000

#: Figshare+ (article 20029387) files of the Replogle 2022 release by (kind, cell line): name, file id and the
#: md5 checksum figshare publishes (None where we have none).
REPLOGLE_2022_FILES: dict[tuple[str, str], tuple[str, int, str | None]] = {
    ("bulk", "rpe1"): ("rpe1_normalized_bulk_01.h5ad", 35775512, "6f1e7d6a09e2f869759e3c4526b7f171"),
    ("bulk", "k562"): ("K562_essential_normalized_bulk_01.h5ad", 35780870, "30496767641cd2e660ee6ecb5baee132"),
    ("singlecell", "rpe1"): ("rpe1_raw_singlecell_01.h5ad", 35775606, None),
    ("singlecell", "k562"): ("K562_essential_raw_singlecell_01.h5ad", 35773219, None),
}
_FIGSHARE = "https://plus.figshare.com/ndownloader/files/{}"


def _rank_weights(weighting: str) -> np.ndarray:
    ranks = np.arange(_N_RANKS)
    if weighting == "linear":
        return (_N_RANKS - ranks) / _N_RANKS
    if weighting == "log":
        return 1 / np.log2(ranks + 2)
    raise ValueError(f"`weighting` must be 'linear' or 'log', got {weighting!r}.")


def _check_cell_line(cell_line: str) -> None:
    if cell_line not in _CELL_LINES:
        raise ValueError(f"`cell_line` must be one of {list(_CELL_LINES)}, got {cell_line!r}.")


def replogle_deg_ranks(
    cell_line: Literal["rpe1", "k562"] = "rpe1",
    *,
    weighting: Literal["linear", "log"] = "linear",
    n_comps: int = 64,
) -> ad.AnnData:
    """Gene-level CRISPRi signatures of 585 knockdowns from Replogle et al. 2022 Perturb-seq (RPE1 or K562).

    For each knocked-down gene the source (``montilab/sigrecon``, ``perturbseq.<cell_line>.rda``, MIT; data
    CC-BY 4.0) lists its top 1,000 differentially expressed genes in rank order (``up_full``). The signature is
    a rank weight over the union of these genes (0 for genes outside the knockdown's top 1,000):
    ``"linear"``: ``(1000 - r) / 1000`` for 0-based rank ``r`` (1 for the top gene); ``"log"``:
    ``1 / log2(r + 2)`` (a DCG-like discount). The file is downloaded once, sha256-checked and cached
    (``$SCSEMICLIP_DATA_DIR`` overrides the cache).

    These are gene-level profiles with no negative controls: use them with ``control_key=None`` (no TVN;
    e.g. ``tl.known_relationship_recall(adata, use_rep="X_pca", control_key=None)``, about 0.48 for the RPE1
    PCA with the linear weighting, 0.49 with ``"log"``; random is about 0.10).

    Parameters
    ----------
    cell_line
        ``"rpe1"`` or ``"k562"``.
    weighting
        Rank weighting, ``"linear"`` or ``"log"`` (see above).
    n_comps
        Number of principal components in ``obsm["X_pca"]``.

    Returns
    -------
    AnnData with one row per knockdown (585) and one variable per gene in any top-1,000 list (sorted symbols):

    ``X``
        The rank-weighted signatures (float32, dense).
    ``obs["perturbation"]``
        Knocked-down gene symbol (also the index).
    ``obs["is_control"]``
        All False (there are no controls).
    ``obs["batch"]``
        The cell line (one batch).
    ``obsm["X_pca"]``
        PCA of ``X`` (:func:`scanpy.pp.pca`, centred, ARPACK, ``n_comps`` components), with ``varm["PCs"]`` and
        ``uns["pca"]`` as scanpy writes them.
    ``uns["replogle_deg_ranks"]``
        ``{"params": {"cell_line", "weighting", "n_comps"}, "version": ...}``.
    """
    _check_cell_line(cell_line)
    weights = _rank_weights(weighting)
    check_int(n_comps, name="n_comps", minimum=1)
    timer = Timer(f"loading Replogle 2022 {cell_line} DE rank signatures")
    (signatures,) = read_rda_lists(fetch(f"perturbseq.{cell_line}.rda")).values()
    knockdowns = list(signatures)
    ranked = [signatures[g]["up_full"] for g in knockdowns]
    if any(len(r) != _N_RANKS for r in ranked):
        raise ValueError(f"Every signature of perturbseq.{cell_line}.rda should list {_N_RANKS} genes.")
    genes = pd.Index(np.unique(np.concatenate(ranked)))
    x = np.zeros((len(knockdowns), len(genes)), dtype=np.float32)
    x[np.arange(len(knockdowns))[:, None], np.stack([genes.get_indexer(r) for r in ranked])] = weights
    obs = pd.DataFrame(
        {"perturbation": knockdowns, "is_control": False, "batch": pd.Categorical([cell_line] * len(knockdowns))},
        index=pd.Index(knockdowns),
    )
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes))
    import scanpy as sc  # imported here: loading scanpy takes about a second

    # ARPACK is exact and fast here; scanpy's default for dense data forms a genes x genes covariance (slow)
    sc.pp.pca(adata, n_comps=n_comps, svd_solver="arpack")
    adata.uns["replogle_deg_ranks"] = {
        "params": {"cell_line": cell_line, "weighting": weighting, "n_comps": n_comps},
        "version": version_info(),
    }
    timer.done(f"{adata.n_obs} knockdowns x {adata.n_vars} genes")
    return adata


def replogle_2022(
    *,
    kind: Literal["bulk", "singlecell"] = "bulk",
    cell_line: Literal["rpe1", "k562"] = "rpe1",
    url: str | None = None,
    control_label: str = "non-targeting",
) -> ad.AnnData:
    """The Replogle et al. 2022 Perturb-seq release (Figshare+ article 20029387, CC-BY 4.0) as AnnData.

    Downloads once into the cache (``$SCSEMICLIP_DATA_DIR`` overrides it): ``"bulk"``, the pseudobulk per
    knockdown z-normalised to the controls (``rpe1_normalized_bulk_01.h5ad`` or
    ``K562_essential_normalized_bulk_01.h5ad``, about 100 MB, md5-checked against figshare's checksum), or
    ``"singlecell"``, raw UMI counts per cell (``rpe1_raw_singlecell_01.h5ad`` or
    ``K562_essential_raw_singlecell_01.h5ad``, several GB; no checksum known, so not hash-checked). The file
    ids of the figshare record are built in; pass ``url`` if a file moved.

    Parameters
    ----------
    kind
        ``"bulk"`` (normalised pseudobulk) or ``"singlecell"`` (raw counts).
    cell_line
        ``"rpe1"`` or ``"k562"`` (the K562 essential-gene screen).
    url
        Download URL; default ``https://plus.figshare.com/ndownloader/files/<id>``. A custom URL is not
        hash-checked.
    control_label
        Perturbation label of the non-targeting guides.

    Returns
    -------
    The release's AnnData (``X``, ``var`` and the original ``obs`` columns unchanged) with added columns:

    ``obs["perturbation"]``
        Knocked-down gene symbol: the release's ``gene`` column, or, where the file has none, the second
        ``_``-separated field of the row name (``"<id>_<gene>_<site>_<ensembl id>"``).
    ``obs["is_control"]``
        True for ``control_label``.
    ``obs["batch"]``
        Categorical batch: the release's ``gem_group`` (10x lane) as a string, or the cell line where the file
        has no ``gem_group`` (the pseudobulk).
    """
    _check_cell_line(cell_line)
    if kind not in ("bulk", "singlecell"):
        raise ValueError(f"`kind` must be 'bulk' or 'singlecell', got {kind!r}.")
    fname, file_id, md5 = REPLOGLE_2022_FILES[(kind, cell_line)]
    timer = Timer(f"loading Replogle 2022 {fname}")
    known_hash = None if url is not None or md5 is None else f"md5:{md5}"
    path = fetch_url(url or _FIGSHARE.format(file_id), fname=f"replogle_2022/{fname}", known_hash=known_hash)
    adata = ad.read_h5ad(path)
    obs = adata.obs
    if "gene" in obs.columns:
        perturbation = obs["gene"].astype(str).to_numpy()
    else:
        perturbation = adata.obs_names.str.split("_").str[1].to_numpy(dtype=object)
        if pd.isna(perturbation).any():
            raise ValueError(f"{fname} has no obs column 'gene' and row names without a '_<gene>_' field.")
    obs["perturbation"] = perturbation
    obs["is_control"] = obs["perturbation"].to_numpy() == control_label
    if not obs["is_control"].any():
        raise ValueError(f"No row of {fname} is labelled {control_label!r}; set `control_label`.")
    batch = obs["gem_group"].astype(str) if "gem_group" in obs.columns else [cell_line] * adata.n_obs
    obs["batch"] = pd.Categorical(batch)
    timer.done(f"{adata.n_obs} x {adata.n_vars}")
    return adata
