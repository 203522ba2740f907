"""pl.training_history draws the model's loss curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import scsemiclip as ssc


@pytest.fixture(scope="module")
def tiny_model():
    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=30, n_doses=1, n_replicates=2, n_batches=2, n_controls=6, n_genes=60, n_ood_genes=25, rng=0
    )
    return ssc.tl.fit_semiclipped(
        data["student"],
        data["teacher"],
        student_rep="X_emb",
        teacher_rep="X_phenom",
        pair_keys=("perturbation", "dose"),
        max_epochs=3,
        batch_size=16,
        hidden_dims=(16,),
        accelerator="cpu",
    )


def test_training_history_draws_the_loss(tiny_model):
    ax = ssc.pl.training_history(tiny_model)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [k for k in tiny_model.history if "loss" in k]
    loss = tiny_model.history["train_loss"].iloc[:, 0].to_numpy(dtype=float)
    np.testing.assert_allclose(lines[0].get_ydata(), loss)
    assert len(loss) == 3
    assert ax.get_xlabel() == "epoch"
    _, given = plt.subplots()
    assert ssc.pl.training_history(tiny_model, keys=("train_loss",), ax=given) is given
    assert [line.get_label() for line in given.get_lines()] == ["train_loss"]
    plt.close("all")


def test_training_history_errors(tiny_model):
    with pytest.raises(KeyError, match="nope"):
        ssc.pl.training_history(tiny_model, keys=("nope",))
