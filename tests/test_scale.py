"""Memory and threads at scale: the fit adds at most 3x its input's bytes, and torch's threads follow settings.n_jobs."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

import scsemiclip as ssc
from scsemiclip._settings import compute_threads
from scsemiclip.train import apply_threads, torch_threads


@pytest.fixture
def bench(monkeypatch):
    """benchmarks/bench_scale.py (its fits run in spawned processes, which import it by name)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return importlib.import_module("bench_scale")


@pytest.mark.slow
def test_fit_adds_at_most_three_times_the_input_bytes_and_grows_linearly(bench):
    opts = {
        "d_student": 64,
        "d_teacher": 192,
        "n_perts": 500,
        "n_batches": 10,
        "epochs": 1,
        "batch_size": 1024,
        "threads": 1,
        "timeout": 600.0,
        "accelerator": "cpu",
    }
    small, large = (bench.measure(n, opts, pea=True) for n in (40_000, 160_000))
    assert large["dtype"] == "float32"
    # the marginal memory per input byte (fixed costs of Lightning and torch cancel out)
    slope = (large["added_gb"] - small["added_gb"]) / (large["input_gb"] - small["input_gb"])
    assert slope <= 3.0, (small, large)
    assert large["added_gb"] <= 3.0 * large["input_gb"] + small["added_gb"], (small, large)


def test_streamed_latent_equals_one_pass_and_is_float32():
    from conftest import make_weakly_paired

    from scsemiclip.model import SemiClipped

    student, teacher, _ = make_weakly_paired()
    student.obsm["X_emb"] = student.obsm["X_emb"].astype(np.float64)
    SemiClipped.setup_anndata(student, student_rep="X_emb")
    model = SemiClipped(student, teacher, teacher_rep="X_phenom", hidden_dims=(16,), rng=0)
    model.train(1, batch_size=64, enable_progress_bar=False, enable_model_summary=False)
    one = model.get_latent_representation(batch_size=10_000)
    chunked = model.get_latent_representation(batch_size=7)
    assert one.dtype == np.float32 and one.shape == (student.n_obs, teacher.obsm["X_phenom"].shape[1])
    np.testing.assert_allclose(chunked, one, rtol=1e-5, atol=1e-6)
    # the training tensors share the float32 embedding instead of copying it
    student.obsm["X_emb"] = student.obsm["X_emb"].astype(np.float32)
    model = SemiClipped(student, teacher, teacher_rep="X_phenom", hidden_dims=(16,), rng=0)
    assert np.shares_memory(model._training_tensors()["x"].numpy(), student.obsm["X_emb"])


def test_threads_follow_n_jobs_then_the_users_torch_setting(monkeypatch):
    saved, torch_before = ssc.settings._n_jobs, torch.get_num_threads()
    try:
        ssc.settings.n_jobs = 1
        assert compute_threads(4, torch_default=4) == 1
        with torch_threads() as n:
            assert n == 1 and torch.get_num_threads() == 1
            assert apply_threads() == 1  # the per-epoch refresh inside the block
        assert torch.get_num_threads() == torch_before  # restored
        ssc.settings.n_jobs = None
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        assert compute_threads(3, torch_default=4) == 3  # the user set torch's count: kept
        monkeypatch.setattr("scsemiclip._settings.busy_cores", lambda: 10**6)
        assert compute_threads(4, torch_default=4) == 1  # the cores are busy: no over-subscription
        monkeypatch.setattr("scsemiclip._settings.busy_cores", lambda: 0)
        assert compute_threads(4, torch_default=4) == ssc.settings.n_jobs
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert compute_threads(4, torch_default=4) == 4  # the environment is the user's setting
    finally:
        ssc.settings._n_jobs = saved
        torch.set_num_threads(torch_before)


def test_busy_cores_counts_other_processes():
    from scsemiclip._settings import busy_cores

    assert 0 <= busy_cores() <= 10_000
