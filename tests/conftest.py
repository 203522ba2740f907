"""Shared fixtures: tiny synthetic AnnData and the real data files (``$SCSEMICLIP_DATA_DIR``, else ../shared/data).

With ``SCSEMICLIP_NO_SKIP=1`` (set by ``.ci/run``) a skipped test fails, except the CUDA-only tests on a machine
without CUDA (``_skips.py``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from _real_data import real_data_dir
from _skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 (hooks)

from scsemiclip._settings import ENV_DATA_DIR
from scsemiclip.model import SemiClipped

pytest_plugins = ["pytester"]  # tests/test_skips.py runs pytest on small test files

matplotlib.use("Agg")

# The data folder of this workspace (beside the clone), used when SCSEMICLIP_DATA_DIR is not set.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if ENV_DATA_DIR not in os.environ and SHARED_DATA.is_dir():
    os.environ[ENV_DATA_DIR] = str(SHARED_DATA)


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


def make_weakly_paired(
    *,
    n_genes: int = 40,
    n_modules: int = 5,
    n_rep: int = 4,
    n_teacher_rep: int = 2,
    n_batches: int = 3,
    n_controls: int = 8,
    d_latent: int = 6,
    d_student: int = 12,
    d_teacher: int = 10,
    d_nuisance: int = 4,
    nuisance: float = 1.5,
    gene_offset: int = 0,
    seed: int = 0,
    world_seed: int = 0,
) -> tuple[ad.AnnData, ad.AnnData, pd.DataFrame]:
    """Weakly paired student / teacher embeddings of perturbations of genes grouped in modules.

    Gene ``G<i>`` belongs to module ``i % n_modules``; its latent effect is the module centre plus noise. The
    teacher is a linear image of the latent effect; the student a nonlinear image of the latent effect and of a
    gene-specific nuisance effect (``d_nuisance`` dims of scale ``nuisance``, unrelated to the modules), so that
    the teacher's geometry is the better one and an adapter can learn it; both get batch shifts and sample noise,
    and each batch has
    ``n_controls`` controls (``perturbation == "NTC"``). ``world_seed`` fixes the module centres and the two
    encoders, ``seed`` the samples, so calls with another ``gene_offset`` / ``seed`` give out-of-distribution data
    of the same world. Returns the student (``obsm["X_emb"]``), the teacher (``obsm["X_phenom"]``) and the
    within-module gene pairs (``entity1``, ``entity2``).
    """
    world = np.random.default_rng(world_seed)
    centers = 2.0 * world.normal(size=(n_modules, d_latent))
    w_student = world.normal(size=(d_latent + d_nuisance, d_student)) / np.sqrt(d_latent + d_nuisance)
    w_teacher = world.normal(size=(d_latent, d_teacher)) / np.sqrt(d_latent)
    rng = np.random.default_rng(seed)
    genes = np.array([f"G{gene_offset + i}" for i in range(n_genes)])
    module = (gene_offset + np.arange(n_genes)) % n_modules
    latent = centers[module] + 0.7 * rng.normal(size=(n_genes, d_latent))
    student_latent = np.hstack([latent, nuisance * rng.normal(size=(n_genes, d_nuisance))])

    def side(n_reps: int, effects: np.ndarray, weights: np.ndarray, *, nonlinear: bool, prefix: str) -> ad.AnnData:
        gene_idx = np.tile(np.r_[np.repeat(np.arange(n_genes), n_reps), np.full(n_controls, -1)], n_batches)
        batch = np.repeat(np.arange(n_batches), n_genes * n_reps + n_controls)
        noise = 0.3 * rng.normal(size=(batch.size, effects.shape[1]))
        u = np.where(gene_idx[:, None] >= 0, effects[gene_idx.clip(0)], 0.0) + noise
        x = u @ weights
        if nonlinear:
            x = x + 2 * np.tanh(x)
        x = x + rng.normal(size=(n_batches, weights.shape[1]))[batch] + 0.2 * rng.normal(size=x.shape)
        obs = pd.DataFrame(
            {
                "batch": pd.Categorical([f"{prefix}b{b}" for b in batch]),
                "perturbation": np.where(gene_idx >= 0, genes[gene_idx.clip(0)], "NTC"),
                "is_control": gene_idx < 0,
            },
            index=[f"{prefix}{i}" for i in range(batch.size)],
        )
        out = ad.AnnData(obs=obs)
        out.obsm["X_emb" if nonlinear else "X_phenom"] = x.astype(np.float32)
        return out

    student = side(n_rep, student_latent, w_student, nonlinear=True, prefix=f"s{seed}_")
    teacher = side(n_teacher_rep, latent, w_teacher, nonlinear=False, prefix=f"t{seed}_")
    i, j = np.triu_indices(n_genes, 1)
    same = module[i] == module[j]
    pairs = pd.DataFrame({"entity1": genes[i[same]], "entity2": genes[j[same]]})
    return student, teacher, pairs


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


def small_model(student: ad.AnnData, teacher: ad.AnnData, **kwargs) -> SemiClipped:
    """A small ``SemiClipped`` (one hidden layer of 16, a PEA bank of 4; ``kwargs`` override) after setting up
    ``student`` with ``student_rep="X_emb"``."""
    SemiClipped.setup_anndata(student, student_rep="X_emb")
    return SemiClipped(student, teacher, **{"hidden_dims": (16,), "pea_bank_size": 4, **kwargs})


@pytest.fixture
def emb_adata() -> ad.AnnData:
    return make_embedding_adata()


@pytest.fixture
def paired() -> tuple[ad.AnnData, ad.AnnData]:
    """The student and teacher of ``make_weakly_paired()`` (new objects for each test, which may modify them)."""
    student, teacher, _ = make_weakly_paired()
    return student, teacher


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of the real data files (``_real_data.real_data_dir``)."""
    return real_data_dir()


def _single_torch_thread():
    """Tiny tensors: one intra-op thread is faster and avoids OpenMP spin-waiting on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


one_thread = pytest.fixture(name="one_thread")(_single_torch_thread)
one_thread_per_module = pytest.fixture(scope="module", name="one_thread_per_module")(_single_torch_thread)
