"""Baseline objectives (docs/method.md): known loss values, training on easy data, one epoch through the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_weakly_paired

import scsemiclip as ssc
from scsemiclip.module import OBJECTIVES, SemiClippedModule, mlp
from scsemiclip.module._objectives._c2kd import kendall_tau, non_target_kl
from scsemiclip.module._objectives._dcca import dcca_loss
from scsemiclip.module._objectives._kd import distillation_kl
from scsemiclip.module._objectives._siglip import sigmoid_loss
from scsemiclip.module._objectives._vicreg import vicreg_loss

NEW = ("siglip", "vicreg", "dcca", "kd", "shake", "c2kd")
#: Small teacher adapters / few pre-training steps, to keep the tests fast.
SMALL = {
    "siglip": {"teacher_hidden_dims": (16,)},
    "vicreg": {"teacher_hidden_dims": (16,)},
    "dcca": {"teacher_hidden_dims": (16,)},
    "kd": {"pretrain_steps": 50, "student_pretrain_steps": 10},
    "shake": {"pretrain_steps": 50, "student_pretrain_steps": 10},
    "c2kd": {"teacher_hidden_dims": (16,), "pretrain_steps": 50, "student_pretrain_steps": 10},
}
LABEL_BASED = ("kd", "shake", "c2kd")
# KL(softmax([log 3, 0]) || softmax([0, 0])) = 3/4 log(3/2) + 1/4 log(1/2)
KL_3_1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def _objective(name: str, *, d_student: int = 6, d_teacher: int = 5, n_classes: int = 2, **kwargs):
    return OBJECTIVES[name](d_student=d_student, d_teacher=d_teacher, n_classes=n_classes, temperature=0.1, **kwargs)


# --------------------------------------------------------------------------------------------- known values
def test_sigmoid_loss_known_value():
    eye = torch.eye(2)
    one, zero = torch.tensor(1.0), torch.tensor(0.0)
    expected = (2 * math.log1p(math.exp(-1.0)) + 2 * math.log(2.0)) / 4
    assert sigmoid_loss(eye, eye, scale=one, bias=zero).item() == pytest.approx(expected)
    # the bias shifts every logit: positives at 1 - 1 = 0, negatives at 0 - 1 = -1
    expected_b = (2 * math.log(2.0) + 2 * math.log1p(math.exp(-1.0))) / 4
    assert sigmoid_loss(eye, 3 * eye, scale=one, bias=one).item() == pytest.approx(expected_b)
    # same key: only the diagonal pairs count
    same = sigmoid_loss(eye, eye, scale=one, bias=zero, labels=torch.tensor([0, 0]))
    assert same.item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_vicreg_loss_known_value():
    a = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    # identical branches with std sqrt(2) > 1: only the covariance terms, (2 * 2^2) / 2 on each branch
    loss, terms = vicreg_loss(a, a.clone())
    assert loss.item() == pytest.approx(8.0)
    assert terms["invariance"].item() == 0 and terms["variance"].item() == 0
    # against a constant branch: 25 * MSE 1 + 25 * (1 - sqrt(1e-4)) + covariance 4 of `a`
    loss, terms = vicreg_loss(a, torch.zeros_like(a))
    assert loss.item() == pytest.approx(25 + 25 * 0.99 + 4, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 samples"):
        vicreg_loss(a[:1], a[:1])


def test_dcca_loss_known_value():
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    rotation = torch.tensor([[0.6, -0.8], [0.8, 0.6]])
    ridge = (2 / 3) / (2 / 3 + 1e-6)  # Cov(a) = 2/3 I, plus the ridge eps
    assert dcca_loss(a, a @ rotation).item() == pytest.approx(-2 * ridge, abs=1e-6)
    assert dcca_loss(a, a[:, :1]).item() == pytest.approx(-ridge, abs=1e-6)
    # uncorrelated views: the first coordinate against the absolute value of the second
    b = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    assert dcca_loss(a[:, :1], b).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_kl_known_value():
    s, t = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])
    assert distillation_kl(s, t, temperature=1.0).item() == pytest.approx(KL_3_1, rel=1e-6)
    p = torch.softmax(t / 2, dim=1)[0]
    expected = 4 * float((p * torch.log(2 * p)).sum())
    assert distillation_kl(s, t, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)
    assert distillation_kl(t, t, temperature=9.0).item() == pytest.approx(0.0, abs=1e-7)
    assert distillation_kl(s.repeat(3, 1), t.repeat(3, 1), temperature=1.0, reduction="none").shape == (3,)


def test_kendall_tau_and_non_target_kl():
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    b = torch.tensor([[1.0, 3.0, 2.0], [3.0, 2.0, 1.0]])
    assert kendall_tau(a, b).tolist() == pytest.approx([1 / 3, -1.0])
    # on a subset of the column pairs: exact for identical rankings, close otherwise
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 200, generator=gen), torch.randn(4, 200, generator=gen)
    y = x + y  # correlated
    assert kendall_tau(x, x, max_pairs=500).tolist() == pytest.approx([1.0] * 4)
    assert kendall_tau(x, y, max_pairs=5000).numpy() == pytest.approx(kendall_tau(x, y).numpy(), abs=0.05)
    # the target logit (class 0) is dropped: what remains is the two-class example above
    s = torch.tensor([[5.0, 0.0, 0.0]])
    t = torch.tensor([[-3.0, math.log(3.0), 0.0]])
    kl = non_target_kl(s, t, torch.tensor([0]), temperature=1.0)
    assert kl.tolist() == pytest.approx([KL_3_1], rel=1e-6)


def _zero_linear(layer: torch.nn.Linear, bias: list[float] | None = None) -> None:
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros_like(layer.bias))


def test_kd_and_shake_known_value():
    h, z, labels = torch.randn(4, 6), torch.randn(4, 5), torch.tensor([0, 1, 0, 1])
    kd = _objective("kd", alpha=10.0, kd_temperature=1.0)
    _zero_linear(kd.student_classifier)
    _zero_linear(kd.teacher_classifier, [math.log(3.0), 0.0])
    out = kd(h, z, labels=labels)
    assert out.loss.item() == pytest.approx(math.log(2.0) + 10 * KL_3_1, rel=1e-5)
    assert set(out.logs) == {"cross_entropy", "distillation"}

    shake = _objective("shake", alpha=10.0, beta=0.5, kd_temperature=1.0)
    _zero_linear(shake.student_classifier)
    _zero_linear(shake.teacher_classifier, [math.log(3.0), 0.0])
    _zero_linear(shake.shadow_head, [math.log(3.0), 0.0])  # the shadow head equals the teacher: no anchor term
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(uniform || [3/4, 1/4])
    expected = math.log(2.0) + 10 * KL_3_1 + 0.5 * reverse
    assert shake(h, z, labels=labels).loss.item() == pytest.approx(expected, rel=1e-5)


def test_c2kd_known_value():
    c2kd = _objective("c2kd", n_classes=3, teacher_hidden_dims=(4,))
    for head in (c2kd.student_classifier, c2kd.student_proxy, c2kd.teacher_classifier, c2kd.teacher_proxy):
        _zero_linear(head)
    out = c2kd(torch.randn(4, 6), torch.randn(4, 5), labels=torch.tensor([0, 1, 2, 0]))
    # all logits 0: two cross-entropies log 3, every KL 0, constant proxies (tau 0) filter every sample out
    assert out.loss.item() == pytest.approx(2 * math.log(3.0), rel=1e-6)
    assert out.logs["kept_fraction"].item() == 0


def test_param_groups_follow_the_lr_scales():
    vicreg = _objective("vicreg", teacher_hidden_dims=(4,), teacher_lr_scale=1e-3)
    groups = vicreg.param_groups(0.1)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4])
    assert sum(len(g["params"]) for g in groups) == len(list(vicreg.teacher_adapter.parameters()))
    siglip = _objective("siglip", teacher_hidden_dims=(4,))
    assert sorted(g["lr"] for g in siglip.param_groups(1.0)) == pytest.approx([1e-7, 1.0])  # adapter, bias
    kd = _objective("kd")  # the frozen teacher classifier is not optimised
    assert [len(g["params"]) for g in kd.param_groups(1.0)] == [2]
    assert OBJECTIVES["dcca"].output_dim == 30


def test_objective_argument_errors():
    with pytest.raises(ValueError, match="at least 2"):
        _objective("kd", n_classes=1)
    with pytest.raises(ValueError, match="symmetric"):
        _objective("siglip", symmetric=True)
    with pytest.raises(ValueError, match="tau_threshold"):
        _objective("c2kd", tau_threshold=1.5)
    with pytest.raises(ValueError, match="kd_temperature"):
        _objective("shake", kd_temperature=0)
    with pytest.raises(ValueError, match="student_pretrain_steps"):
        _objective("kd", student_pretrain_steps=-1)
    with pytest.raises(ValueError, match="student_pretrain_lr"):
        _objective("c2kd", student_pretrain_lr=0.0)


# --------------------------------------------------------------------------------------------- training
def _easy_data(n_classes: int = 6, per_class: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student and teacher embeddings of well-separated classes (a linear map apart, plus noise)."""
    gen = torch.Generator().manual_seed(0)
    centers = 3 * torch.randn(n_classes, 4, generator=gen)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    latent = centers[labels] + 0.3 * torch.randn(labels.shape[0], 4, generator=gen)
    x = latent @ torch.randn(4, 6, generator=gen)
    z = latent @ torch.randn(4, 5, generator=gen)
    return x, z, labels


@pytest.mark.parametrize("name", NEW)
def test_loss_decreases_on_easy_data(name):
    torch.manual_seed(0)
    x, z, labels = _easy_data()
    d_out = OBJECTIVES[name].output_dim or 5  # as the module: the teacher's dimension unless the objective fixes it
    objective = _objective(name, d_student=d_out, n_classes=6, **SMALL[name])
    adapter = mlp(6, (32,), d_out)
    objective.prepare(z, labels)
    lr = 1e-2
    optimizer = torch.optim.Adam([{"params": adapter.parameters(), "lr": lr}, *objective.param_groups(lr)])
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = objective(adapter(x), z, labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1e-3 * abs(np.mean(losses[:5]))


def test_kd_prepare_trains_the_frozen_teacher_classifier():
    x, z, labels = _easy_data()
    kd = _objective("kd", d_teacher=5, n_classes=6)
    before = kd.teacher_classifier.weight.clone()
    kd.prepare(z, labels)
    assert not torch.equal(before, kd.teacher_classifier.weight)
    assert not any(p.requires_grad for p in kd.teacher_classifier.parameters())
    accuracy = (kd.teacher_classifier(z).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9
    shake = _objective("shake", d_teacher=5, n_classes=6, pretrain_steps=20)
    shadow = shake.shadow_head.weight.clone()
    shake.prepare(z, labels)
    assert torch.equal(shake.shadow_head.weight, shadow)  # trained with the student, not in prepare
    assert shake.shadow_head.weight.requires_grad


# --------------------------------------------------------------------------------------------- student pre-training
def _module(name: str, **objective_kwargs) -> SemiClippedModule:
    """A module on the easy data (6 classes, 48 samples), its student inputs set."""
    x, z, labels = _easy_data()
    torch.manual_seed(0)
    module = SemiClippedModule(
        x.shape[1],
        z.shape[1],
        n_keys=6,
        hidden_dims=(32,),
        objective=name,
        objective_kwargs=SMALL.get(name, {}) | objective_kwargs,
        pea=False,
    )
    module.set_teacher(z, torch.bincount(labels))
    module.set_student_inputs(x, labels)
    return module


def _student_ce(module: SemiClippedModule) -> float:
    with torch.no_grad():
        h = module.adapter(module.student_inputs)
        return module.objective.student_pretraining_loss(h, module.student_keys).item()


@pytest.mark.parametrize("name", LABEL_BASED)
def test_student_pretraining_lowers_the_student_classification_loss(name):
    module = _module(name, student_pretrain_steps=60, student_pretrain_lr=1e-2)
    frozen = {k: v.clone() for k, v in module.objective.state_dict().items() if "teacher" in k or "shadow" in k}
    before = _student_ce(module)
    module.pretrain_student(seed=0, batch_size=16)
    assert _student_ce(module) < 0.5 * before
    for k, v in module.objective.state_dict().items():
        if k in frozen:  # the teacher side and SHAKE's shadow head get no gradient from the student loss
            assert torch.equal(v, frozen[k]), k
    assert all(p.grad is None for p in module.parameters())


@pytest.mark.parametrize("name", LABEL_BASED)
def test_student_pretraining_is_deterministic(name):
    states = []
    for seed in (0, 0, 1):
        module = _module(name)
        module.pretrain_student(seed=seed, batch_size=16)
        states.append(module.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    assert not torch.equal(states[0]["adapter.0.weight"], states[2]["adapter.0.weight"])


@pytest.mark.parametrize("name", ["semiclipped", "clip", "siglip", "vicreg", "dcca"])
def test_label_free_objectives_skip_the_student_pretraining(name):
    module = _module(name)
    assert module.objective.student_pretrain_steps == 0
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.pretrain_student(seed=0, batch_size=16)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(NotImplementedError, match="no student pre-training"):
        module.objective.student_pretraining_loss(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))


def test_student_pretraining_needs_the_inputs():
    module = SemiClippedModule(6, 5, n_keys=6, hidden_dims=(8,), objective="kd", pea=False)
    with pytest.raises(RuntimeError, match="set_student_inputs"):
        module.pretrain_student(seed=0)
    with pytest.raises(ValueError, match="rows"):
        module.set_student_inputs(torch.zeros(3, 6), torch.zeros(2, dtype=torch.long))
    module.objective.student_pretrain_steps = 0  # switched off: nothing needed
    module.pretrain_student(seed=0)


# --------------------------------------------------------------------------------------------- through the model
@pytest.fixture(scope="module")
def paired():
    # 60 controls per batch: PEA's control subsets (down to a quarter) stay above the 12 dimensions
    student, teacher, _ = make_weakly_paired(n_genes=12, n_modules=3, n_rep=3, n_controls=60)
    return student, teacher


def _fit_one_epoch(paired, objective: str, **kwargs):
    """One CPU epoch of ``tl.fit_semiclipped`` with ``objective`` (small settings) on copies of ``paired``.

    Returns the student and teacher copies and the model.
    """
    student, teacher = (a.copy() for a in paired)
    model = ssc.tl.fit_semiclipped(
        student,
        teacher=teacher,
        student_rep="X_emb",
        teacher_rep="X_phenom",
        objective=objective,
        objective_kwargs=SMALL.get(objective),
        max_epochs=1,
        hidden_dims=(16,),
        accelerator="cpu",
        enable_progress_bar=False,
        **kwargs,
    )
    return student, teacher, model


@pytest.mark.parametrize("pea", [False, True], ids=["no_pea", "pea"])
@pytest.mark.parametrize("name", NEW)
def test_one_epoch_through_fit_semiclipped(paired, name, pea):
    student, teacher, model = _fit_one_epoch(paired, name, pea=pea, batch_size=64)
    emb = student.obsm["X_semiclipped"]
    assert emb.shape == (student.n_obs, 30 if name == "dcca" else teacher.obsm["X_phenom"].shape[1])
    assert np.isfinite(emb).all()
    losses = student.uns["X_semiclipped"]["final_losses"]
    assert np.isfinite(losses["train_loss"])
    assert student.uns["X_semiclipped"]["params"]["objective"] == name
    assert model.module.objective.name == name


@pytest.mark.parametrize(("name", "pea"), [("kd", True), ("shake", False), ("semiclipped", True)])
def test_training_pretrains_the_student_on_its_inference_input(paired, name, pea, monkeypatch):
    calls = []
    original = SemiClippedModule.pretrain_student

    def spy(self, *, seed, batch_size=1024):
        before = self.adapter[0].weight.detach().clone()
        original(self, seed=seed, batch_size=batch_size)
        calls.append((batch_size, not torch.equal(before, self.adapter[0].weight)))

    monkeypatch.setattr(SemiClippedModule, "pretrain_student", spy)
    _, _, model = _fit_one_epoch(paired, name, pea=pea, batch_size=32)
    assert calls == [(32, name != "semiclipped")]  # only the label-based objectives pre-train the adapter
    if name == "semiclipped":
        assert model.module.student_inputs.shape[0] == 0  # nothing stored for label-free objectives
        return
    # the inputs of the pre-training are the adapter's inference inputs (TVN-corrected), with PEA or without
    expected = model._model_input(model.adata, student_rep="X_emb", batch_key="batch", control_key="is_control")
    rows = model.pairing.student_rows
    np.testing.assert_allclose(model.module.student_inputs.cpu().numpy(), expected[rows], rtol=1e-5, atol=1e-5)
    assert torch.equal(model.module.student_keys.cpu(), torch.as_tensor(model.pairing.student_codes))


def test_label_based_training_with_student_pretraining_is_deterministic(paired):
    outs = []
    for rng in (0, 0, 1):
        student, _, model = _fit_one_epoch(paired, "c2kd", batch_size=32, rng=rng)
        outs.append(student.obsm["X_semiclipped"])
    assert not {"student_inputs", "student_keys"} & set(model.module.state_dict())  # not saved with the model
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])
