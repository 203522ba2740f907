"""Named recipes, their choice by validation (``recipe="auto"``) and the training schedules of fit_semiclipped."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import small_model

import scsemiclip as ssc
from scsemiclip.model import RECIPES, SemiClipped, recipe_of

FAST = {"enable_progress_bar": False, "enable_model_summary": False}
FIT = {"student_rep": "X_emb", "max_epochs": 2, "batch_size": 32, "hidden_dims": (16,), "pea_bank_size": 4, **FAST}

pytestmark = pytest.mark.usefixtures("one_thread")


def _latent(student, teacher, **kwargs) -> np.ndarray:
    model = small_model(student.copy(), teacher, rng=1, **kwargs)
    model.train(2, batch_size=64, **FAST)
    return model.get_latent_representation()


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_recipe_is_its_flags_bit_for_bit(paired, name):
    flags = dict(RECIPES[name])
    np.testing.assert_array_equal(_latent(*paired, recipe=name), _latent(*paired, **flags))
    assert recipe_of(**flags) == name


def test_recipe_conflicts_and_names_are_errors(paired):
    student, teacher = paired
    SemiClipped.setup_anndata(student, student_rep="X_emb")
    with pytest.raises(ValueError, match=r"`recipe='base'` sets pea=False.*pea=True was given"):
        SemiClipped(student, teacher, recipe="base", pea=True)
    with pytest.raises(ValueError, match=r"pea_transforms=\('center',\)"):
        SemiClipped(student, teacher, recipe="pea", pea_transforms=("center",))
    with pytest.raises(ValueError, match="tl.fit_semiclipped"):
        SemiClipped(student, teacher, recipe="auto")
    with pytest.raises(ValueError, match="recipe"):
        SemiClipped(student, teacher, recipe="pca")
    model = SemiClipped(student, teacher, recipe="pea", pea=True, inference_tvn=True)  # agreeing flags are fine
    assert model.init_args["recipe"] == "pea" and model.pea and model.inference_tvn
    with pytest.raises(ValueError, match="inference_tvn=False was given"):
        ssc.tl.fit_semiclipped(student.copy(), teacher, **FIT, recipe="inference_tvn", inference_tvn=False)
    with pytest.raises(ValueError, match="schedule"):
        ssc.tl.fit_semiclipped(student.copy(), teacher, **FIT, schedule="fast")


def test_auto_records_its_choice_and_equals_the_chosen_recipe(paired, caplog):
    student, teacher = paired
    with caplog.at_level(logging.INFO, logger="scsemiclip"):
        model = ssc.tl.fit_semiclipped(student, teacher, **FIT)
    record = student.uns["X_semiclipped"]["recipe"]
    assert record["criterion"] == "validation_activity_map"  # replicates and controls: the held-out mAP
    scores = record["scores"]
    assert set(scores) == {"base", "inference_tvn"} and all(0 <= v <= 1 for v in scores.values())
    chosen = record["chosen"]
    assert chosen == ("pea" if scores["inference_tvn"] > scores["base"] else "base")  # does whitening help?
    assert model.init_args["recipe"] == chosen and model.recipe_scores_ == record["scores"]
    lines = [r.getMessage() for r in caplog.records if "recipe 'auto' chose" in r.getMessage()]
    assert len(lines) == 1 and repr(chosen) in lines[0]
    fixed = student.copy()
    ssc.tl.fit_semiclipped(fixed, teacher, **FIT, recipe=chosen)
    np.testing.assert_array_equal(fixed.obsm["X_semiclipped"], student.obsm["X_semiclipped"])
    expected = {"chosen": chosen, "scores": {}, "criterion": "the recipe given", "pilot_epochs": 0}
    assert fixed.uns["X_semiclipped"]["recipe"] == expected
    assert record["pilot_epochs"] == 2  # PILOT_EPOCHS, at most the fit's epochs


def test_a_pilot_is_the_start_of_the_full_fit(paired):
    """A pilot keeps the full fit's learning-rate schedule: its epochs are the full fit's first ones, bit for bit."""
    from scsemiclip.train import StopAfterEpochs

    student, teacher = paired

    def losses(max_epochs: int, **kwargs) -> np.ndarray:
        model = small_model(student.copy(), teacher, rng=3)
        model.train(max_epochs, batch_size=64, train_size=0.8, **FAST, **kwargs)
        return model.history["train_loss"].to_numpy().ravel()

    full, pilot = losses(6), losses(6, callbacks=[StopAfterEpochs(3)])
    np.testing.assert_array_equal(pilot, full[:3])
    assert not np.array_equal(losses(3)[1:], full[1:3])  # a 3-epoch fit anneals sooner: not the same start


def test_flags_given_fix_the_recipe(paired):
    student, teacher = paired
    model = ssc.tl.fit_semiclipped(student, teacher, **FIT, pea=False)
    record = student.uns["X_semiclipped"]["recipe"]
    assert record == {"chosen": "inference_tvn", "scores": {}, "criterion": "the flags given", "pilot_epochs": 0}
    assert model.init_args["recipe"] is None
    ssc.tl.fit_semiclipped(student, teacher, **FIT, pea_transforms=("center",))
    assert student.uns["X_semiclipped"]["recipe"]["chosen"] == "custom"


def test_paper_schedule_is_the_paper_recipe_without_validation(paired):
    student, teacher = paired
    kwargs = {k: v for k, v in FIT.items() if k not in ("max_epochs", "batch_size")}
    model = ssc.tl.fit_semiclipped(student, teacher, **kwargs, schedule="paper", max_epochs=1, batch_size=64)
    params = student.uns["X_semiclipped"]["params"]
    assert params["recipe"] == "pea" and params["batch_size"] == 64 and "train_size" not in params
    assert "validation_loss" not in model.history and model.validation_keys_ == []
    np.testing.assert_array_equal(
        student.obsm["X_semiclipped"],
        _fit_by_hand(student, teacher, pea=True, inference_tvn=True, eigenvalue_floor=0.0),
    )
    assert params["eigenvalue_floor"] == 0.0  # the paper's schedule whitens fully: the earlier fit, bit for bit


def _fit_by_hand(student, teacher, **flags) -> np.ndarray:
    """The model trained directly as fit_semiclipped(schedule="paper", max_epochs=1, batch_size=64) would."""
    model = small_model(student.copy(), teacher, **flags)
    model.train(1, batch_size=64, **FAST)
    return model.get_latent_representation()


def test_default_schedule_caps_the_batch_and_holds_out_keys(paired):
    student, teacher = paired
    kwargs = {k: v for k, v in FIT.items() if k not in ("max_epochs", "batch_size")}
    model = ssc.tl.fit_semiclipped(student, teacher, **kwargs, recipe="base", max_epochs=2)
    params = student.uns["X_semiclipped"]["params"]
    n_train = len(model.train_indices)
    assert params["batch_size"] == 32 and params["max_epochs"] == 2  # at least 16 steps per epoch, floor 32
    assert n_train < model.pair_counts_["n_student_paired"] and params["early_stopping"] is True
    assert len(model.validation_keys_) == 4  # 10 % of the 41 keys
    few = student[student.obs["perturbation"].isin([f"G{i}" for i in range(12)]) | student.obs["is_control"]].copy()
    ssc.tl.fit_semiclipped(few, teacher, **kwargs, max_epochs=1, batch_size=16)
    record = few.uns["X_semiclipped"]
    assert record["validation_keys"] == [] and record["recipe"]["chosen"] == "pea"  # too few keys to validate


def test_label_based_objectives_never_see_held_out_teacher_rows(paired, monkeypatch):
    """KD's teacher classifier is fitted in ``prepare``: with a split, on the training keys' teacher rows only."""
    from scsemiclip.module._objectives._kd import KDObjective

    seen = []
    monkeypatch.setattr(KDObjective, "prepare", lambda self, teacher, labels: seen.append(labels.unique()))
    student, teacher = paired
    model = small_model(student, teacher, objective="kd", objective_kwargs={"pretrain_steps": 1})
    model.train(1, batch_size=64, train_size=0.7, **FAST)
    pairing = model.pairing
    held_out = set(pairing.student_codes[np.isin(pairing.student_rows, model.validation_indices)].tolist())
    assert held_out and not held_out & set(seen[-1].tolist())
    model.train(1, batch_size=64, **FAST)  # no split: every key
    assert len(seen[-1]) == len(model.pairing.keys)


@pytest.mark.parametrize(
    ("criterion", "base", "whitened", "chosen"),
    [
        ("validation_activity_map", 0.62, 0.58, "base"),  # an scVI-like latent: whitening costs held-out mAP
        ("validation_activity_map", 0.20, 0.59, "pea"),  # batch effects the controls reveal: whitening helps
        ("validation_activity_map", 0.50, 0.50, "base"),  # a tie keeps the raw input
        ("validation_loss", 3.9, 3.7, "pea"),  # no activity mAP: the held-out loss, lower is better
        ("validation_loss", 3.7, 3.9, "base"),
    ],
)
def test_auto_asks_whether_whitening_helps(criterion, base, whitened, chosen):
    import pandas as pd

    from scsemiclip.tl._recipes import PILOT_EPOCHS, select_recipe

    epochs_seen = []

    def pilot(value: float):
        def run(epochs: int):
            epochs_seen.append(epochs)
            history = {"validation_loss": pd.DataFrame({"validation_loss": [value]})}
            history[criterion] = pd.DataFrame({criterion: [value]})
            return type("Pilot", (), {"history": history})()

        return run

    candidates = {"base": pilot(base), "inference_tvn": pilot(whitened), "pea": pilot(1.0)}
    result = select_recipe(candidates, max_epochs=150)
    assert result == (chosen, {"base": base, "inference_tvn": whitened}, criterion, PILOT_EPOCHS)
    assert epochs_seen == [PILOT_EPOCHS] * 2  # two pilots, not the other candidates
    assert select_recipe(candidates, max_epochs=5)[3] == 5  # never longer than the fit


def test_the_command_line_offers_every_recipe():
    from scsemiclip._cli import RECIPE_CHOICES

    assert set(RECIPE_CHOICES) == {"auto", *RECIPES}
