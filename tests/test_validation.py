"""The split by pairing key, the held-out metrics, early stopping, the best weights and the chance warning.

Validation and early stopping under DDP are checked by the DDP fits of ``test_model.py``.
"""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pytest
from conftest import small_model
from hypothesis import given, settings
from hypothesis import strategies as st

import scsemiclip as ssc
from scsemiclip.tl._recipes import auto_batch_size
from scsemiclip.train import VALIDATION_METRICS, HeldOutValidation, split_keys

FAST = {"enable_progress_bar": False, "enable_model_summary": False}

pytestmark = pytest.mark.usefixtures("one_thread")


def _validation(model) -> HeldOutValidation:
    return next(c for c in model.trainer.callbacks if isinstance(c, HeldOutValidation))


@settings(max_examples=60, deadline=None)
@given(
    n_keys=st.integers(1, 60),
    reps=st.integers(1, 4),
    train_size=st.floats(0.05, 1.0),
    validation_size=st.none() | st.floats(0.0, 0.95),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_split_is_by_key_with_scvi_sizes(n_keys, reps, train_size, validation_size, shuffle, seed):
    """Every rule of the split, for every size: scvi-tools' counts, disjoint keys, a key's rows all on one side."""
    if validation_size is not None and train_size + validation_size > 1:
        with pytest.raises(ValueError, match="at most 1"):
            split_keys(np.arange(3), np.zeros(3, int), 1, train_size=train_size, validation_size=validation_size)
        return
    codes = np.repeat(np.arange(n_keys), reps)
    rows = np.arange(codes.size) * 2 + 1  # the paired rows among others (e.g. controls)
    kwargs = {"train_size": train_size, "validation_size": validation_size, "shuffle_set_split": shuffle}
    split = split_keys(rows, codes, n_keys, seed=seed, **kwargs)
    n_train = math.ceil(train_size * n_keys)
    n_val = n_keys - n_train if validation_size is None else min(math.floor(validation_size * n_keys), n_keys - n_train)
    assert len(split.train_keys) == n_train and len(split.validation_keys) == n_val
    assert not set(split.train_keys) & set(split.validation_keys)
    assert set(codes[np.searchsorted(rows, split.train_rows)]) == set(split.train_keys)
    assert set(codes[np.searchsorted(rows, split.validation_rows)]) == set(split.validation_keys)
    assert len(split.train_rows) == reps * n_train and len(split.validation_rows) == reps * n_val
    again = split_keys(rows, codes, n_keys, seed=seed, **kwargs)
    np.testing.assert_array_equal(again.validation_keys, split.validation_keys)  # same seed, same split
    if not shuffle:
        np.testing.assert_array_equal(split.validation_keys, np.arange(n_train, n_train + n_val))


def test_split_rejects_bad_sizes():
    for bad in ({"train_size": 0.0}, {"train_size": 1.5}, {"validation_size": 1.0}, {"train_size": True}):
        with pytest.raises((ValueError, TypeError), match="train_size|validation_size"):
            split_keys(np.arange(4), np.arange(4), 4, **bad)


@settings(max_examples=50, deadline=None)
@given(n_pairs=st.integers(2, 10**6))
def test_auto_batch_size_gives_enough_steps(n_pairs):
    size = auto_batch_size(n_pairs)
    assert size & (size - 1) == 0 or size == n_pairs  # a power of 2 (or all the pairs of a tiny screen)
    assert size <= 1024 and size <= n_pairs
    if n_pairs >= 16 * 32:
        assert n_pairs // size >= 16 and size >= 32


def test_history_indices_and_held_out_keys(paired):
    student, teacher = paired
    model = small_model(student, teacher)
    model.train(4, batch_size=32, train_size=0.75, check_val_every_n_epoch=2, **FAST)
    history = model.history
    for name in VALIDATION_METRICS:
        assert list(history[name].index) == [1, 3], name  # every 2 epochs (and the last)
        assert np.isfinite(history[name].to_numpy(dtype=float)).all()
    assert len(history["train_loss"]) == 4
    n_keys = len(model.pairing.keys)
    assert len(model.validation_keys_) == n_keys - math.ceil(0.75 * n_keys)
    assert all(isinstance(k, tuple) for k in model.validation_keys_)
    held = {k[0] for k in model.validation_keys_}
    obs = student.obs
    assert set(obs.iloc[model.validation_indices]["perturbation"]) == held
    assert not held & set(obs.iloc[model.train_indices]["perturbation"])  # a held-out key never trains
    assert not obs.iloc[model.validation_indices]["is_control"].any()
    assert len(model.train_indices) + len(model.validation_indices) == model.pair_counts_["n_student_paired"]
    assert 0 <= history["validation_top1"].iloc[-1, 0] <= history["validation_top5"].iloc[-1, 0] <= 1


def test_no_split_is_the_fit_of_before(paired):
    """``train_size=1`` (and ``validation_size=0``) leave the fit unchanged, bit for bit, and log no validation."""
    outputs = []
    for kwargs in ({}, {"train_size": 1.0}, {"train_size": 1.0, "validation_size": 0.0}):
        student, teacher = paired[0].copy(), paired[1]
        model = small_model(student, teacher, rng=5)
        model.train(2, batch_size=64, **kwargs, **FAST)
        assert set(model.history) == {"train_loss", "top1_accuracy_train"} and model.validation_keys_ == []
        outputs.append(model.get_latent_representation())
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])


def test_activity_map_is_the_tl_kernel_after_output_tvn(paired):
    """``validation_activity_map`` equals tl.phenotypic_activity on the held-out rows and controls after pp.tvn."""
    student, teacher = paired
    model = small_model(student, teacher)
    model.train(2, batch_size=32, validation_size=0.25, train_size=0.75, **FAST)
    rows = np.concatenate([model.validation_indices, np.flatnonzero(student.obs["is_control"])])
    sub = ad.AnnData(obs=student.obs.iloc[rows].copy())
    sub.obsm["out"] = model.get_latent_representation()[rows].astype(np.float64)
    ssc.pp.tvn(sub, use_rep="out", basis="zca", coral_reg=0.5, key_added="out_tvn")
    table = ssc.tl.phenotypic_activity(sub, use_rep="out_tvn", null_size=10)
    logged = model.history["validation_activity_map"].iloc[-1, 0]
    assert logged == pytest.approx(table["mean_average_precision"].mean(), abs=1e-5)


def test_early_stopping_and_best_weights(paired):
    student, teacher = paired
    model = small_model(student, teacher)
    with pytest.raises(ValueError, match="needs held-out keys"):
        model.train(2, batch_size=32, early_stopping=True, **FAST)
    with pytest.raises(ValueError, match="early_stopping_monitor"):
        model.train(2, batch_size=32, train_size=0.75, early_stopping_monitor="validation_nothing", **FAST)
    # a learning rate of ~0: top-5 retrieval never improves, so training stops after `patience` checks
    kwargs = {"train_size": 0.75, "early_stopping": True, "early_stopping_patience": 2, **FAST}
    model.train(20, batch_size=32, early_stopping_monitor="validation_top5", plan_kwargs={"lr": 1e-12}, **kwargs)
    assert len(model.history["train_loss"]) == 3
    # the weights kept are those of the best check
    model = small_model(student, teacher)
    model.train(6, batch_size=32, train_size=0.75, plan_kwargs={"lr": 0.05}, **FAST)
    validation = _validation(model)
    kept = validation.held_out.metrics(model.module)["validation_loss"]
    history = model.history["validation_loss"]
    assert kept == pytest.approx(float(history.min().iloc[0]), rel=1e-5)
    assert validation.best_epoch == int(history.idxmin().iloc[0])


def test_a_fit_that_ends_near_chance_warns(paired):
    student, teacher = paired
    model = small_model(student, teacher)
    with pytest.warns(UserWarning, match=r"near chance.*ln\(batch_size=16\).*`max_epochs`.*`batch_size`"):
        model.train(5, batch_size=16, plan_kwargs={"lr": 1e-9}, **FAST)  # 5 x 22 steps, no learning
    assert model.trainer.global_step >= 100
    model.train(2, batch_size=32, plan_kwargs={"lr": 1e-9}, **FAST)  # a smoke test (< 100 steps) is not judged


def test_fit_passes_validation_options_and_records_them(paired):
    student, teacher = paired
    model = ssc.tl.fit_semiclipped(
        student,
        teacher,
        student_rep="X_emb",
        recipe="pea",
        max_epochs=2,
        batch_size=32,
        hidden_dims=(16,),
        validation_size=0.2,
        train_size=0.8,
        **FAST,
    )
    record = student.uns["X_semiclipped"]
    assert record["params"]["train_size"] == 0.8 and record["params"]["validation_size"] == 0.2
    assert "early_stopping" not in record["params"]  # validation options given: the schedule adds none
    assert "validation_loss" in record["final_losses"]
    assert [tuple(k) for k in record["validation_keys"]] == model.validation_keys_
