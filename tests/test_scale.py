"""Memory and threads at scale: the fit adds at most 3x its input's bytes, and torch's threads follow settings.n_jobs."""

from __future__ import annotations

import importlib
import itertools
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
        monkeypatch.setattr("scsemiclip._settings._PROCESS_DEFAULT", [])  # a new process
        monkeypatch.setattr("scsemiclip._settings.busy_cores", lambda: 10**6)
        assert compute_threads(4, torch_default=4) == 1  # the cores are busy: no over-subscription
        monkeypatch.setattr("scsemiclip._settings.busy_cores", lambda: 0)
        assert compute_threads(4, torch_default=4) == 1  # read once per process: its fits agree bit for bit
        monkeypatch.setattr("scsemiclip._settings._PROCESS_DEFAULT", [])
        assert compute_threads(4, torch_default=4) == ssc.settings.n_jobs
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert compute_threads(4, torch_default=4) == 4  # the environment is the user's setting
    finally:
        ssc.settings._n_jobs = saved
        torch.set_num_threads(torch_before)


def test_busy_cores_counts_other_processes():
    from scsemiclip._settings import busy_cores

    assert 0 <= busy_cores() <= 10_000


def test_fits_of_one_process_agree_bit_for_bit_under_a_changing_load(monkeypatch):
    """The load-adapted thread count is read once per process: a load that changes between two fits (here 2 and
    then 1 free cores, alternately) does not change the bits (it did, one run in a few, when read at every call)."""
    from conftest import make_weakly_paired

    student, teacher, _ = make_weakly_paired(n_genes=30, n_rep=6)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(ssc.settings, "_n_jobs", None)
    monkeypatch.setattr(type(ssc.settings), "n_jobs", property(lambda self: 2))  # two cores, on any machine
    monkeypatch.setattr("scsemiclip._settings._PROCESS_DEFAULT", [])  # a new process
    loads = itertools.cycle([0, 1])
    monkeypatch.setattr("scsemiclip._settings.busy_cores", lambda: next(loads))
    outs = []
    for _ in range(2):
        adata = student.copy()
        ssc.tl.fit_semiclipped(
            adata,
            teacher,
            student_rep="X_emb",
            max_epochs=2,
            batch_size=64,
            accelerator="cpu",
            rng=3,
            enable_progress_bar=False,
        )
        outs.append(adata.obsm["X_semiclipped"])
    np.testing.assert_array_equal(outs[0], outs[1])
