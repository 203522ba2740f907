"""Bad inputs of ``tl``: a ValueError / TypeError / KeyError naming the argument, raised before any work."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from conftest import adata_hash, make_weakly_paired

import scsemiclip as ssc

NAN, INF = float("nan"), float("inf")
TINY = {
    "student_rep": "X_emb",
    "max_epochs": 1,
    "batch_size": 32,
    "hidden_dims": (8,),
    "pea_bank_size": 2,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def data():
    student, teacher, pairs = make_weakly_paired(n_genes=10, n_rep=2, n_teacher_rep=1, n_controls=4)
    return student, teacher, pairs


@pytest.fixture(scope="module")
def model(data):
    student, teacher, _ = data
    return ssc.tl.fit_semiclipped(student.copy(), teacher, **TINY)


FIT_CASES = [
    ({"lr": NAN}, ValueError, "lr"),
    ({"lr": 0}, ValueError, "lr"),
    ({"lr": -1e-3}, ValueError, "lr"),
    ({"lr": "1e-3"}, TypeError, "lr"),
    ({"temperature": NAN}, ValueError, "temperature"),
    ({"temperature": INF}, ValueError, "temperature"),
    ({"temperature": 0}, ValueError, "temperature"),
    ({"max_epochs": 0}, ValueError, "max_epochs"),
    ({"max_epochs": -1}, ValueError, "max_epochs"),
    ({"max_epochs": 2.5}, TypeError, "max_epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"coral_reg": -5}, ValueError, "coral_reg"),
    ({"coral_reg": NAN}, ValueError, "coral_reg"),
    ({"p_drop": 1.5}, ValueError, "p_drop"),
    ({"min_control_fraction": 0.0}, ValueError, "min_control_fraction"),
    ({"pea_bank_size": 0}, ValueError, "pea_bank_size"),
    ({"pea_transforms": "center"}, TypeError, "pea_transforms"),
    ({"pea_transforms": ("center", "nope")}, ValueError, "pea_transforms"),
    ({"optimizer": "adagrad"}, ValueError, "optimizer"),
    ({"optimizer": 1}, TypeError, "optimizer"),
    ({"accelerator": "tpu9"}, ValueError, "accelerator"),
    ({"objective": "nope"}, ValueError, "objective"),
    ({"objective": 3}, TypeError, "objective"),
    ({"hidden_dims": "512"}, TypeError, "hidden_dims"),
    ({"hidden_dims": (0,)}, ValueError, "hidden_dims"),
    ({"student_rep": 1}, TypeError, "student_rep"),
    ({"student_rep": "X_nope"}, KeyError, "X_nope"),
    ({"teacher_rep": "X_nope"}, KeyError, "X_nope"),
    ({"pair_keys": "nope"}, KeyError, "nope"),
    ({"batch_key": 3}, TypeError, "batch_key"),
    ({"control_key": "nope"}, KeyError, "nope"),
    ({"teacher_control_key": 0}, TypeError, "teacher_control_key"),
    ({"key_added": ""}, ValueError, "key_added"),
    ({"key_added": "X_emb"}, ValueError, "key_added"),
    ({"teacher_tvn": "yes"}, TypeError, "teacher_tvn"),
    ({"pea": 1}, TypeError, "pea"),
    ({"inference_tvn": "auto"}, TypeError, "inference_tvn"),
    ({"objective_kwargs": [("symmetric", True)]}, TypeError, "objective_kwargs"),
    ({"rng": "seed"}, TypeError, "rng"),
    ({"plan_kwargs": {"momentum": 1.5}}, ValueError, "momentum"),
    ({"plan_kwargs": {"weight_decay": -1}}, ValueError, "weight_decay"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), FIT_CASES, ids=[c[2] + "-" + repr(c[0]) for c in FIT_CASES])
def test_fit_bad_argument(data, kwargs, error, text):
    student, teacher, _ = data
    before = adata_hash(student), adata_hash(teacher)
    with pytest.raises(error, match=re.escape(text)):
        ssc.tl.fit_semiclipped(student, teacher, **{**TINY, **kwargs})
    assert (adata_hash(student), adata_hash(teacher)) == before
    assert "X_semiclipped" not in student.obsm


def test_fit_rejects_a_dataframe(data):
    student, teacher, _ = data
    with pytest.raises(TypeError, match="`adata` must be an AnnData or a MuData, got DataFrame"):
        ssc.tl.fit_semiclipped(student.obs, teacher, **TINY)
    with pytest.raises(TypeError, match="`teacher` must be an AnnData"):
        ssc.tl.fit_semiclipped(student, teacher.obs, **TINY)


def test_apply_an_untrained_model_is_an_error(data):
    from scsemiclip.model import SemiClipped

    student, teacher, _ = data
    light = student.copy()
    SemiClipped.setup_anndata(light, student_rep="X_emb")
    untrained = SemiClipped(light, teacher, hidden_dims=(8,))
    with pytest.raises(ValueError, match="`model` is not trained"):
        ssc.tl.apply_semiclipped(student, untrained)
    with pytest.raises(ValueError, match="not trained"):
        untrained.get_latent_representation()
    assert "X_semiclipped" not in student.obsm


APPLY_CASES = [
    ({"student_rep": 1}, TypeError, "student_rep"),
    ({"student_rep": "X_nope"}, KeyError, "X_nope"),
    ({"batch_key": 2}, TypeError, "batch_key"),
    ({"control_key": "nope"}, KeyError, "nope"),
    ({"key_added": None}, TypeError, "key_added"),
    ({"copy": "no"}, TypeError, "copy"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), APPLY_CASES, ids=[c[2] for c in APPLY_CASES])
def test_apply_bad_argument(data, model, kwargs, error, text):
    student = data[0].copy()
    before = adata_hash(student)
    with pytest.raises(error, match=re.escape(text)):
        ssc.tl.apply_semiclipped(student, model, **kwargs)
    assert adata_hash(student) == before


def test_apply_rejects_another_object(data):
    with pytest.raises(TypeError, match="`model`"):
        ssc.tl.apply_semiclipped(data[0], "model.pt")


@pytest.fixture(scope="module")
def gene_map(data):
    student, _, pairs = data
    return student, pairs


RECALL_CASES = [
    ("known_relationship_recall", {"threshold": 0}, ValueError, "threshold"),
    ("known_relationship_recall", {"threshold": 0.6}, ValueError, "threshold"),
    ("known_relationship_recall", {"threshold": NAN}, ValueError, "threshold"),
    ("known_relationship_recall", {"threshold": "0.05"}, TypeError, "threshold"),
    ("known_relationship_recall", {"key_added": 1}, TypeError, "key_added"),
    ("known_relationship_recall", {"use_rep": 3}, TypeError, "use_rep"),
    ("known_relationship_recall", {"perturbation_key": 5}, TypeError, "perturbation_key"),
    ("known_relationship_recall", {"control_key": "nope"}, KeyError, "control_key"),
    ("known_relationship_recall_curve", {"thresholds": []}, ValueError, "thresholds"),
    ("known_relationship_recall_curve", {"thresholds": [0.05, 0.9]}, ValueError, "thresholds"),
    ("known_relationship_recall_curve", {"thresholds": [NAN]}, ValueError, "thresholds"),
    ("retrieved_relationships", {"threshold": -0.1}, ValueError, "threshold"),
    ("retrieved_relationships", {"key_added": ""}, ValueError, "key_added"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "text"), RECALL_CASES, ids=[f"{c[0]}-{c[3]}" for c in RECALL_CASES]
)
def test_recall_bad_argument(gene_map, name, kwargs, error, text):
    adata, pairs = gene_map
    adata = adata.copy()
    before = adata_hash(adata)
    with pytest.raises(error, match=re.escape(text)):
        getattr(ssc.tl, name)(adata, **{"use_rep": "X_emb", "sources": {"toy": pairs}, **kwargs})
    assert adata_hash(adata) == before
    assert not adata.uns


RANDOM_CASES = [
    ({"kind": "gaussian"}, ValueError, "kind"),
    ({"kind": None}, TypeError, "kind"),
    ({"use_rep": None}, TypeError, "use_rep"),
    ({"control_key": 1}, TypeError, "control_key"),
    ({"copy": "True"}, TypeError, "copy"),
    ({"rng": 1.5}, TypeError, "rng"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), RANDOM_CASES, ids=[c[2] for c in RANDOM_CASES])
def test_random_baseline_bad_argument(data, kwargs, error, text):
    adata = data[0].copy()
    with pytest.raises(error, match=re.escape(text)):
        ssc.tl.random_baseline(adata, **{"use_rep": "X_emb", **kwargs})
    assert not adata.uns


def test_non_finite_loss_stops_training_naming_epoch_and_step(data):
    student, teacher, _ = data
    student = student.copy()
    # a huge learning rate makes SGD diverge within the first epochs
    with pytest.raises(ssc.model.TrainingDivergedError, match=r"epoch \d+, step \d+.*Lower the learning rate"):
        ssc.tl.fit_semiclipped(
            student, teacher, **{**TINY, "max_epochs": 30, "lr": 1e30, "optimizer": "sgd", "pea": False}
        )
    assert "X_semiclipped" not in student.obsm


def test_pairing_missing_key_names_the_rows(data):
    student, teacher, _ = data
    student = student.copy()
    labels = student.obs["perturbation"].astype(object)
    row = np.flatnonzero(~student.obs["is_control"].to_numpy())[0]
    labels.iloc[row] = np.nan
    student.obs["perturbation"] = pd.Categorical(labels)
    with pytest.raises(ValueError, match=re.escape(repr(student.obs_names[row]))):
        ssc.tl.fit_semiclipped(student, teacher, **TINY)


BENCHMARK_CASES = [
    ({"max_epochs": 0}, ValueError, "max_epochs"),
    ({"interpretability": "no"}, TypeError, "interpretability"),
    ({"output_tvn": None}, TypeError, "output_tvn"),
    ({"student_rep": 3}, TypeError, "student_rep"),
    ({"perturbation_key": None}, TypeError, "perturbation_key"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), BENCHMARK_CASES, ids=[c[2] for c in BENCHMARK_CASES])
def test_benchmark_bad_argument(data, kwargs, error, text):
    student, teacher, _ = data
    with pytest.raises(error, match=re.escape(text)):
        ssc.tl.benchmark(student, teacher=teacher, ood_sets={"ood": student}, **{"student_rep": "X_emb", **kwargs})


def test_interpretability_needs_epochs(data):
    with pytest.raises(ValueError, match="max_epochs"):
        ssc.tl.interpretability_preservation(data[0], use_rep="X_emb", max_epochs=0)


EVALUATE_CASES = [
    ({"output_tvn": "yes"}, TypeError, "output_tvn"),
    ({"interpretability": 1}, TypeError, "interpretability"),
    ({"perturbation_key": 3}, TypeError, "perturbation_key"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), EVALUATE_CASES, ids=[c[2] for c in EVALUATE_CASES])
def test_evaluate_representations_bad_argument(data, kwargs, error, text):
    adata = data[0].copy()
    with pytest.raises(error, match=re.escape(text)):
        ssc.tl.evaluate_representations(adata, use_reps="X_emb", **kwargs)
    assert not adata.uns and list(adata.obsm) == ["X_emb"]
