"""Shared fixtures: tiny synthetic AnnData and offline access to the real files in ../shared/data."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "SCSEMICLIP_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SCSEMICLIP_DATA_DIR"] = str(SHARED_DATA)


def make_embedding_adata(
    *,
    n_obs: int = 600,
    n_dims: int = 16,
    n_batches: int = 4,
    n_perts: int = 12,
    control_fraction: float = 0.25,
    seed: int = 0,
    rep: str = "X_emb",
) -> ad.AnnData:
    """Correlated embeddings with batch shifts, ``obs`` with batch / perturbation / is_control."""
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, n_batches, n_obs)
    is_ctrl = rng.random(n_obs) < control_fraction
    # every batch gets at least 3 controls
    for b in range(n_batches):
        rows = np.flatnonzero(batch == b)
        is_ctrl[rows[:3]] = True
    pert = np.where(is_ctrl, "NTC", np.array([f"G{i}" for i in rng.integers(0, n_perts, n_obs)]))
    mix = rng.normal(size=(n_dims, n_dims))
    effects = rng.normal(size=(n_perts + 1, n_dims))
    codes = np.where(is_ctrl, n_perts, np.char.lstrip(pert, "GNTC").astype(object))
    codes = np.array([n_perts if c == "" else int(c) for c in codes])
    x = rng.normal(size=(n_obs, n_dims)) @ mix + 2 * effects[codes] + 3 * rng.normal(size=(n_batches, n_dims))[batch]
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical([f"b{i}" for i in batch]),
            "perturbation": pert,
            "is_control": is_ctrl,
        },
        index=[f"s{i}" for i in range(n_obs)],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm[rep] = x
    return adata


def adata_hash(adata: ad.AnnData) -> str:
    """Hash of X, obs, obsm, layers (to check that inputs are not modified)."""
    h = hashlib.sha256()
    if adata.X is not None:
        h.update(np.ascontiguousarray(np.asarray(adata.X)).tobytes())
    h.update(pd.util.hash_pandas_object(adata.obs, index=True).to_numpy().tobytes())
    for k in sorted(adata.obsm.keys()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(np.asarray(adata.obsm[k])).tobytes())
    for k in sorted(adata.layers.keys()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(np.asarray(adata.layers[k])).tobytes())
    return h.hexdigest()


@pytest.fixture
def emb_adata() -> ad.AnnData:
    return make_embedding_adata()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
