"""PERISCOPE optical pooled screen (Ramezani et al. 2025): gene-level Cell Painting profiles of HeLa knockouts."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from scsemiclip._utils import Timer

from ._registry import fetch

_FILE = "periscope_hela_hplm_hit_list_pca.csv"


def periscope_hela() -> ad.AnnData:
    """Cell Painting profiles of 3,454 CRISPR-knockout hit genes in HeLa cells (PERISCOPE, HPLM medium).

    Gene-level morphology profiles (56 principal components of CellProfiler features) from the optical pooled
    screen of Ramezani et al. 2025 (``broadinstitute/2022_PERISCOPE``, BSD-3), downloaded once, sha256-checked
    and cached (``$SCSEMICLIP_DATA_DIR`` overrides the cache). These are gene-level profiles without negative
    controls: use them with ``control_key=None`` (e.g. as a teacher with ``teacher_tvn=False``). Known-relationship
    recall of this map is about 0.21 (random about 0.10).

    Returns
    -------
    AnnData with one row per knocked-out gene (3,454) and 56 variables ``PC1`` ... ``PC56``:

    ``X``
        The morphology principal components (float64).
    ``obsm["X_morphology"]``
        The same matrix (the teacher embedding).
    ``obs["perturbation"]``
        Knocked-out gene symbol (also the index).
    ``obs["is_control"]``
        All False (there are no controls).
    ``obs["batch"]``
        ``"HeLa_HPLM"`` (one batch).
    """
    timer = Timer("loading PERISCOPE HeLa (HPLM) gene-level profiles")
    table = pd.read_csv(fetch(_FILE), index_col=0)
    genes = pd.Index(table.index.astype(str)).rename(None)
    if not genes.is_unique:
        raise ValueError(f"{_FILE}: the gene column has duplicates.")
    x = table.to_numpy(dtype=np.float64)
    obs = pd.DataFrame(
        {"perturbation": genes, "is_control": False, "batch": pd.Categorical(["HeLa_HPLM"] * len(genes))},
        index=genes,
    )
    var = pd.DataFrame(index=pd.Index([f"PC{i + 1}" for i in range(x.shape[1])]))
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.obsm["X_morphology"] = x.copy()
    timer.done(f"{adata.n_obs} genes x {adata.n_vars} PCs")
    return adata
