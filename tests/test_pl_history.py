"""pl.training_history draws the model's loss curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import scsemiclip as ssc


def _fit(rng: int, **kwargs) -> ssc.model.SemiClipped:
    """Three epochs on a tiny simulated screen (``kwargs``: more options of ``tl.fit_semiclipped``)."""
    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=30, n_doses=1, n_replicates=2, n_batches=2, n_controls=6, n_genes=60, n_ood_genes=25, rng=rng
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
        **kwargs,
    )


@pytest.fixture(scope="module")
def tiny_model():
    return _fit(0)


def test_training_history_draws_the_loss(tiny_model):
    ax = ssc.pl.training_history(tiny_model)
    lines = ax.get_lines()
    labels = {"train_loss": "training", "validation_loss": "validation (held-out keys)"}
    assert [line.get_label() for line in lines] == [labels.get(k, k) for k in tiny_model.history if "loss" in k]
    loss = tiny_model.history["train_loss"].iloc[:, 0].to_numpy(dtype=float)
    np.testing.assert_allclose(lines[0].get_ydata(), loss)
    assert len(loss) == 3
    assert ax.get_xlabel() == "epoch"
    _, given = plt.subplots()
    assert ssc.pl.training_history(tiny_model, keys=("train_loss",), ax=given) is given
    assert [line.get_label() for line in given.get_lines()] == ["training"]
    plt.close("all")


def test_training_history_errors(tiny_model):
    with pytest.raises(KeyError, match="nope"):
        ssc.pl.training_history(tiny_model, keys=("nope",))


@pytest.fixture(scope="module")
def validated_model():
    return _fit(1, recipe="base", train_size=0.7, validation_size=0.3, check_val_every_n_epoch=1)


def _boxes_overlap(fig, artists) -> bool:
    renderer = fig.canvas.get_renderer()
    boxes = [a.get_window_extent(renderer) for a in artists]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_training_history_draws_validation_curves(validated_model):
    """Losses in one panel, the held-out metrics in another; readable titles, labels and legends that fit."""
    history = validated_model.history
    assert {"train_loss", "validation_loss", "validation_top1", "validation_top5"} <= set(history)
    fig = ssc.pl.training_history(validated_model)
    loss_ax, metric_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["training", "validation (held-out keys)"]
    np.testing.assert_allclose(
        loss_ax.get_lines()[1].get_ydata(), history["validation_loss"].iloc[:, 0].dropna().to_numpy(dtype=float)
    )
    labels = [line.get_label() for line in metric_ax.get_lines()]
    assert {"top-1 retrieval", "top-5 retrieval"} <= set(labels)
    for line in metric_ax.get_lines():
        assert np.all((line.get_ydata() >= 0) & (line.get_ydata() <= 1))
    assert (loss_ax.get_title(), metric_ax.get_title()) == ("Loss", "Held-out keys")
    assert (loss_ax.get_ylabel(), metric_ax.get_ylabel(), metric_ax.get_xlabel()) == ("loss", "score", "epoch")
    fig.canvas.draw()
    assert not _boxes_overlap(fig, [loss_ax, metric_ax])  # the panels (with their labels) stay apart
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    for ax in fig.axes:
        box = ax.get_tightbbox(renderer)
        assert box.x0 >= figure_box.x0 - 1 and box.x1 <= figure_box.x1 + 1
    with pytest.raises(ValueError, match="`ax` takes one panel"):
        ssc.pl.training_history(validated_model, ax=loss_ax)
    _, given = plt.subplots()
    assert ssc.pl.training_history(validated_model, keys=["validation_top1"], ax=given) is given
    plt.close("all")
