"""The scvi-tools model, its module, objectives, training plan and device-resident data module."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import adata_hash, make_weakly_paired, small_model

from scsemiclip.model import SemiClipped
from scsemiclip.module import OBJECTIVES, SemiClippedModule, info_nce
from scsemiclip.train import DeviceDataSplitter, PermutationBatches

FAST = {"enable_progress_bar": False, "enable_model_summary": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_setup_writes_nothing_into_obs(paired):
    student, _ = paired
    before = adata_hash(student)
    SemiClipped.setup_anndata(student, student_rep="X_emb", pair_keys="perturbation")
    assert adata_hash(student) == before
    assert list(student.obs.columns) == ["batch", "perturbation", "is_control"]
    assert {"_scvi_uuid", "_scvi_manager_uuid"} <= set(student.uns)


def test_setup_checks_columns_and_embedding(paired):
    student, _ = paired
    with pytest.raises(KeyError, match="'nope' is not in adata.obsm"):
        SemiClipped.setup_anndata(student, student_rep="nope")
    with pytest.raises(KeyError, match="no column 'plate'"):
        SemiClipped.setup_anndata(student, student_rep="X_emb", batch_key="plate")
    student.obs["flag"] = "yes"
    with pytest.raises(ValueError, match="must be boolean"):
        SemiClipped.setup_anndata(student, student_rep="X_emb", control_key="flag")


def test_pairing_counts_and_training_rows(paired):
    student, teacher = paired
    # genes G0..G4 have no teacher sample: left out and counted
    teacher = teacher[~teacher.obs["perturbation"].isin([f"G{i}" for i in range(5)])].copy()
    model = small_model(student, teacher)
    c = model.pair_counts_
    n_ctrl = int(student.obs["is_control"].sum())
    n_unpaired = int(student.obs["perturbation"].isin([f"G{i}" for i in range(5)]).sum())
    assert c["n_student_controls"] == n_ctrl
    assert c["n_student_unpaired"] == n_unpaired
    assert c["n_student_paired"] == student.n_obs - n_ctrl - n_unpaired
    assert c["n_keys_paired"] == 35 and c["n_student_keys"] == 40
    assert c["n_teacher_paired"] == teacher.n_obs - int(teacher.obs["is_control"].sum())
    # the module's teacher buffer is grouped by key, each student training key has its teacher rows
    mod = model.module
    assert mod.teacher.shape == (c["n_teacher_paired"], teacher.obsm["X_phenom"].shape[1])
    assert int(mod.teacher_counts.sum()) == c["n_teacher_paired"]
    tensors = model._training_tensors()  # every row (the embedding shared); the training rows are student_rows
    rows = model.pairing.student_rows
    assert tensors["x"].shape[0] == student.n_obs and rows.size == c["n_student_paired"]
    keys = model.pairing.keys[tensors["key"].numpy()[rows]]
    assert (np.asarray(keys) == student.obs["perturbation"].to_numpy()[rows]).all()


def test_partner_draws_stay_within_key_and_are_uniform(paired):
    student, teacher = paired
    model = small_model(student, teacher)
    mod = model.module
    mod.start_training(0)
    key = torch.full((20000,), 3)
    z = mod.sample(key)
    lo, n = int(mod.teacher_offsets[3]), int(mod.teacher_counts[3])
    rows = mod.teacher[lo : lo + n]
    match = (z[:, None, :] == rows[None]).all(-1)
    assert bool(match.any(1).all())
    freq = match.float().mean(0)
    assert torch.allclose(freq, torch.full_like(freq, 1 / n), atol=0.02)


def test_info_nce_matches_cross_entropy_and_masks_same_key():
    torch.manual_seed(0)
    h, z = torch.randn(6, 4), torch.randn(6, 4)
    scale = torch.tensor(10.0)
    loss, _ = info_nce(h, z, scale=scale)
    logits = F.normalize(h, dim=1) @ F.normalize(z, dim=1).T * 10
    assert torch.allclose(loss, F.cross_entropy(logits, torch.arange(6)))
    sym, _ = info_nce(h, z, scale=scale, symmetric=True)
    assert torch.allclose(sym, 0.5 * (loss + F.cross_entropy(logits.T, torch.arange(6))))
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    masked, _ = info_nce(h, z, scale=scale, labels=labels)
    manual = torch.stack(
        [
            -torch.log_softmax(logits[i][(labels != labels[i]) | (torch.arange(6) == i)], 0)[
                int(((labels != labels[i]) | (torch.arange(6) == i))[:i].sum())
            ]
            for i in range(6)
        ]
    ).mean()
    assert torch.allclose(masked, manual)


def test_objective_registry_and_unknown_objective(paired):
    assert {"semiclipped", "clip"} <= set(OBJECTIVES)
    student, teacher = paired
    with pytest.raises(ValueError, match="Unknown objective 'nope'; choose from"):
        small_model(student, teacher, objective="nope")


def test_pea_only_in_training_mode():
    mod = SemiClippedModule(4, 3, n_keys=2, hidden_dims=(8,), pea_bank_size=2)
    mod.set_student_controls(torch.randn(10, 4), [5, 5])
    mod.start_training(0)
    mod.refresh_bank()
    x, batch = torch.randn(7, 4), torch.tensor([0, 1, 0, 1, 0, 1, 0])
    assert not torch.allclose(mod.inference(x, batch)["h"], mod.adapter(x))
    mod.eval()
    assert torch.equal(mod.inference(x, batch)["h"], mod.adapter(x))


def test_train_history_and_eval_mode_trap(paired):
    """A second train() starts with the module in eval mode (left so by scvi-tools): PEA must still run."""
    student, teacher = paired
    model = small_model(student, teacher)
    model.train(2, batch_size=64, **FAST)
    assert not model.module.training and model.is_trained
    assert set(model.history) >= {"train_loss", "top1_accuracy_train"}
    assert len(model.history["train_loss"]) == 2
    calls = {"augment": 0, "refresh": 0, "training": []}
    mod = model.module
    refresh, inference = mod.refresh_bank, mod.inference

    def counting_refresh():
        calls["refresh"] += 1
        refresh()

    def spying_inference(x, batch):
        calls["training"].append(mod.training)
        calls["augment"] += mod.training and mod.bank is not None
        return inference(x, batch)

    mod.refresh_bank, mod.inference = counting_refresh, spying_inference
    model.train(3, batch_size=64, **FAST)
    n_steps = model.pair_counts_["n_student_paired"] // 64
    assert calls["refresh"] == 3
    assert all(calls["training"]) and calls["augment"] == 3 * n_steps
    assert len(model.history["train_loss"]) == 5
    assert not mod.training and mod.bank is None


def test_determinism_same_rng(paired):
    student, teacher = paired
    outs = []
    for rng in (0, 0, 1):
        model = small_model(student, teacher, rng=rng)
        model.train(2, batch_size=64, **FAST)
        outs.append(model.get_latent_representation())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])


def test_save_load_roundtrip(paired, tmp_path):
    student, teacher = paired
    model = small_model(student, teacher, objective_kwargs={"learn_temperature": True})
    model.train(1, batch_size=64, **FAST)
    expected = model.get_latent_representation()
    model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="already exists"):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)
    assert set(torch.load(tmp_path / "m" / "model.pt", weights_only=True)) >= {"state_dict", "init_params"}
    fresh, _, _ = make_weakly_paired()  # a new AnnData object, no teacher needed
    loaded = SemiClipped.load(tmp_path / "m", adata=fresh)
    assert not loaded.module.training and loaded.module.teacher.numel() == 0
    np.testing.assert_array_equal(loaded.get_latent_representation(), expected)
    assert loaded.pair_counts_ == model.pair_counts_
    with pytest.raises(RuntimeError, match="no teacher"):
        loaded.train(1)
    wrong = fresh.copy()
    wrong.obsm["X_emb"] = wrong.obsm["X_emb"][:, :5]
    with pytest.raises(ValueError, match="has 5 dimensions; the saved model takes 12"):
        SemiClipped.load(tmp_path / "m", adata=wrong)


def test_clip_objective_and_options(paired):
    student, teacher = paired
    model = small_model(
        student,
        teacher,
        objective="clip",
        objective_kwargs={"teacher_hidden_dims": (8,), "symmetric": True, "mask_same_key": True},
        pea=False,
    )
    names = {n for n, _ in model.module.named_parameters()}
    assert any(n.startswith("objective.teacher_adapter") for n in names)
    before = [p.detach().clone() for p in model.module.objective.teacher_adapter.parameters()]
    model.train(2, batch_size=64, plan_kwargs={"optimizer": "adamw", "lr": 1e-2}, **FAST)
    after = list(model.module.objective.teacher_adapter.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert math.isfinite(float(model.history["train_loss"].iloc[-1, 0]))
    assert model.get_latent_representation().shape == (student.n_obs, teacher.obsm["X_phenom"].shape[1])


def test_learned_temperature_is_logged_and_trained(paired):
    student, teacher = paired
    model = small_model(student, teacher, objective_kwargs={"learn_temperature": True}, pea=False)
    model.train(2, batch_size=64, plan_kwargs={"optimizer": "adam", "lr": 1e-2}, **FAST)
    assert "temperature_train" in model.history
    assert model.module.objective.log_scale.item() != pytest.approx(math.log(10.0))


def test_minibatch_larger_than_data_is_an_error(paired):
    student, teacher = paired
    model = small_model(student, teacher)
    with pytest.raises(ValueError, match="do not fill one minibatch of batch_size=100000"):
        model.train(1, batch_size=100000, **FAST)


def test_permutation_batches_per_rank_are_disjoint_and_drop_last():
    tensors = {"i": torch.arange(103)}
    seen = []
    for rank in range(2):
        gen = torch.Generator().manual_seed(5)
        batches = PermutationBatches(tensors, batch_size=10, generator=gen, rank=rank, world_size=2)
        assert len(batches) == 5
        seen.append(torch.cat([b["i"] for b in batches]))
    assert seen[0].numel() == seen[1].numel() == 50
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    gen = torch.Generator().manual_seed(5)
    one = PermutationBatches(tensors, batch_size=10, generator=gen)
    first, second = torch.cat([b["i"] for b in one]), torch.cat([b["i"] for b in one])
    assert len(one) == 10 and not torch.equal(first, second)  # a new order every epoch
    with pytest.raises(ValueError, match="equal first dimensions"):
        DeviceDataSplitter({"a": torch.zeros(3), "b": torch.zeros(4)}, batch_size=2)


@pytest.mark.slow
@pytest.mark.parametrize("objective_kwargs", [{}, {"gather_negatives": True}])
def test_ddp_two_cpu_processes(paired, objective_kwargs, tmp_path, monkeypatch):
    """DDP (gloo, 2 CPU processes): buffers are not broadcast, ranks end with the same weights; with or without
    cross-rank negatives, the ranks finish, validate the same held-out keys and stop together (the history holds
    every check); nothing is written into the working folder. (One fit checks both: each spawns its ranks anew.)"""
    monkeypatch.chdir(tmp_path)
    student, teacher = paired
    model = small_model(student, teacher, objective_kwargs=objective_kwargs)
    model.train(
        3,
        batch_size=32,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        train_size=0.75,
        early_stopping=True,
        **FAST,
    )
    strategy = model.trainer.strategy
    assert strategy.world_size == 2 and strategy._ddp_kwargs["broadcast_buffers"] is False
    assert len(model.history["train_loss"]) == 3 and len(model.history["validation_loss"]) == 3
    assert np.isfinite(model.get_latent_representation()).all()
    assert np.isfinite(model.history["validation_top1"].to_numpy(dtype=float)).all()
    assert not list(tmp_path.iterdir())  # scvi-tools' DDP history went through a temporary folder


def test_bf16_mixed_precision_on_cpu(paired):
    student, teacher = paired
    model = small_model(student, teacher)
    model.train(1, batch_size=64, precision="bf16-mixed", **FAST)
    assert math.isfinite(float(model.history["train_loss"].iloc[-1, 0]))
