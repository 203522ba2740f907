"""RxRx3-core (Recursion): OpenPhenom embeddings of HUVEC Cell Painting wells, gene knockouts and compounds."""

from __future__ import annotations

import importlib.util

import anndata as ad
import numpy as np
import pandas as pd

from scsemiclip._utils import Timer

from ._registry import fetch_url

_HF = "https://huggingface.co/datasets/recursionpharma/rxrx3-core/resolve/main/"
RXRX3_CORE_METADATA_URL = _HF + "metadata_rxrx3_core.csv"
RXRX3_CORE_EMBEDDINGS_URL = _HF + "OpenPhenom_rxrx3_core_embeddings.parquet"


def _perturbation_labels(treatment: pd.Series) -> np.ndarray:
    """Gene or compound label of each well, as the RxRx3-core benchmark notebook of ``efaar_benchmarking`` builds it.

    ``"<GENE>_guide_<n>"`` becomes ``"<GENE>"``; controls (``"..._control"``) and compound names are kept whole
    (a compound name is cut at its first ``"_"``, as in the notebook).
    """
    treatment = treatment.astype(str)
    is_control = treatment.str.contains("_control", regex=False)
    return np.where(is_control, treatment, treatment.str.split("_").str[0]).astype(object)


def rxrx3_core(
    *,
    metadata_url: str = RXRX3_CORE_METADATA_URL,
    embeddings_url: str = RXRX3_CORE_EMBEDDINGS_URL,
    control_label: str = "EMPTY_control",
) -> ad.AnnData:
    """RxRx3-core: OpenPhenom embeddings of HUVEC Cell Painting wells (735 gene knockouts, 1,674 compounds).

    Downloads (once, into the cache; ``$SCSEMICLIP_DATA_DIR`` overrides it) the well metadata and the OpenPhenom
    image-model embeddings released by Recursion on Hugging Face (``recursionpharma/rxrx3-core``, CC-BY-NC-SA
    4.0; about 230,000 wells). No sha256 is published for these files, so they are not hash-checked
    (``known_hash=None``). Reading the parquet file needs ``pyarrow`` (``pip install 'scsemiclip[rxrx3]'``).

    Embeddings are averaged per ``well_id`` (the file may hold several rows per well) and joined to the
    metadata; wells without an embedding are dropped. Labels follow the benchmark notebook of
    ``efaar_benchmarking`` (``RxRx3-core_benchmarks``): the perturbation of a CRISPR well is its gene (the
    treatment ``"<GENE>_guide_<n>"`` cut at ``"_"``), controls keep their treatment label, and the negative
    controls (``control_label``) are used for TVN / centering per experiment.

    Parameters
    ----------
    metadata_url
        URL of ``metadata_rxrx3_core.csv``.
    embeddings_url
        URL of ``OpenPhenom_rxrx3_core_embeddings.parquet``.
    control_label
        Perturbation label of the negative control wells.

    Returns
    -------
    AnnData with one row per well (index = ``well_id``), no ``X`` variables, and

    ``obsm["X_openphenom"]``
        The OpenPhenom embedding (float32; the ``feature_*`` columns of the parquet file, in order).
    ``obs``
        Every metadata column (``experiment_name``, ``plate``, ``address``, ``gene``, ``treatment``, ``SMILES``,
        ``concentration``, ``perturbation_type``, ``cell_type``, ...) plus:
    ``obs["perturbation"]``
        Gene symbol (CRISPR), compound name (``COMPOUND``) or control label.
    ``obs["is_control"]``
        True for the negative controls (``perturbation == control_label``).
    ``obs["batch"]``
        Categorical experiment (``experiment_name``).
    ``obs["dose"]``
        Compound concentration in µM (``concentration``; NaN for CRISPR wells).
    """
    if importlib.util.find_spec("pyarrow") is None:
        raise ImportError("rxrx3_core reads a parquet file and needs pyarrow: `pip install 'scsemiclip[rxrx3]'`.")
    timer = Timer("loading RxRx3-core OpenPhenom embeddings")
    meta_path = fetch_url(metadata_url, fname="rxrx3_core/metadata_rxrx3_core.csv", known_hash=None)
    emb_path = fetch_url(embeddings_url, fname="rxrx3_core/OpenPhenom_rxrx3_core_embeddings.parquet", known_hash=None)
    meta = pd.read_csv(meta_path, low_memory=False)
    emb = pd.read_parquet(emb_path)
    missing = [c for c in ("well_id", "experiment_name", "treatment", "concentration") if c not in meta.columns]
    if missing or "well_id" not in emb.columns:
        raise KeyError(
            f"Unexpected RxRx3-core schema: metadata lacks {missing or 'nothing'}, embeddings columns "
            f"{list(emb.columns[:5])}...; pass the URLs of the release files."
        )
    features = [c for c in emb.columns if c.startswith("feature_")]
    emb = emb.groupby("well_id", sort=False)[features].mean()
    meta = meta[meta["well_id"].isin(emb.index)]
    obs = meta.set_index(meta["well_id"].astype(str).rename(None))
    obs["perturbation"] = _perturbation_labels(obs["treatment"])
    obs["is_control"] = (obs["perturbation"] == control_label).to_numpy()
    if not obs["is_control"].any():
        raise ValueError(f"No RxRx3-core well is labelled {control_label!r}; set `control_label`.")
    obs["batch"] = pd.Categorical(obs["experiment_name"].astype(str))
    obs["dose"] = pd.to_numeric(obs["concentration"], errors="coerce").to_numpy(dtype=np.float64)
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_openphenom"] = emb.loc[meta["well_id"]].to_numpy(dtype=np.float32)
    timer.done(f"{adata.n_obs} wells, {len(features)} dims")
    return adata
