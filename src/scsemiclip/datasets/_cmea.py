"""LINCS compounds profiled in U2OS by L1000 and Cell Painting (via the CMEA R package)."""

from __future__ import annotations

from typing import Literal, overload

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import rdata

from scsemiclip._utils import Timer
from scsemiclip._validate import check_flag

from ._registry import fetch

_FILES = {"rna": "cmea_transcriptomic_profile.rda", "image": "cmea_cell_morphology_profile.rda"}
_REPS = {"rna": "X_l1000", "image": "X_cellpainting"}


def _modality(name: str) -> ad.AnnData:
    (table,) = rdata.read_rda(fetch(_FILES[name])).values()
    compounds = pd.Index(np.asarray(table.index, dtype=str))
    x = table.to_numpy(dtype=np.float64)
    obs = pd.DataFrame(
        {"perturbation": compounds, "is_control": False, "batch": pd.Categorical(["U2OS"] * len(compounds))},
        index=compounds,
    )
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(np.asarray(table.columns, dtype=str))))
    adata.obsm[_REPS[name]] = x.copy()
    return adata


@overload
def cmea_u2os(*, as_mudata: Literal[True] = True) -> mudata.MuData: ...
@overload
def cmea_u2os(*, as_mudata: Literal[False]) -> tuple[ad.AnnData, ad.AnnData]: ...
def cmea_u2os(*, as_mudata: bool = True) -> mudata.MuData | tuple[ad.AnnData, ad.AnnData]:
    """162 compounds profiled in U2OS cells by L1000 transcriptomics and Cell Painting morphology.

    Compound-level consensus profiles from LINCS, as shipped by the CMEA R package (``isarnassiri/CMEA``,
    GPL-2): 978 L1000 landmark genes and 812 CellProfiler features, the same compounds (Broad ids) in the same
    order in both. Both files are downloaded once, sha256-checked and cached (``$SCSEMICLIP_DATA_DIR``
    overrides the cache). A small, exactly paired transcriptomics / morphology set; there are no controls
    (use ``control_key=None``).

    Parameters
    ----------
    as_mudata
        Return a :class:`mudata.MuData` with modalities ``"rna"`` and ``"image"`` (the default), else the tuple
        ``(rna, image)``.

    Returns
    -------
    A MuData (or a tuple) of two AnnData objects with one row per compound (index = compound id); the MuData
    keeps the columns below in its modalities (``mdata.mod["rna"].obs``), its global ``obs`` has none:

    ``rna``
        ``X`` = L1000 profile (978 genes, float64), ``obsm["X_l1000"]`` the same matrix.
    ``image``
        ``X`` = Cell Painting profile (812 features, float64), ``obsm["X_cellpainting"]`` the same matrix.

    Each modality has ``obs["perturbation"]`` (compound id), ``obs["is_control"]`` (all False) and
    ``obs["batch"]`` (``"U2OS"``).
    """
    check_flag(as_mudata, name="as_mudata")
    timer = Timer("loading CMEA U2OS L1000 / Cell Painting profiles")
    rna, image = _modality("rna"), _modality("image")
    if not rna.obs_names.equals(image.obs_names):
        raise ValueError("The CMEA transcriptomic and morphology files list different compounds.")
    timer.done(f"{rna.n_obs} compounds, {rna.n_vars} genes, {image.n_vars} features")
    if not as_mudata:
        return rna, image
    with mudata.set_options(pull_on_update=False):  # keep obs/var in the modalities (mudata >= 0.4 behaviour)
        return mudata.MuData({"rna": rna, "image": image})
