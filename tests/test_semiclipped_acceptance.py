"""Acceptance: on the simulator's out-of-distribution screen, Semi-Clipped (with and without PEA) beats the student.

Recall is measured as the paper does (TVN on the embedding, aggregation per gene, mean over the five databases);
interpretability preservation with a decoder trained long enough to learn on the small simulated screen (the
default 30 epochs at lr 1e-4 leave every embedding, random included, at the random level of about 25).

The simulator's teacher is wider than its student here (48 > 32 dims, as the paper's 768 > 256) and its
unrelated programmes are weak (``nuisance_scale=0.5``): the expression counts are driven by the whole student
embedding, so with the default strong unrelated programmes (which the teacher lacks, and the adapter therefore
drops) no distilled embedding, not even the true latent biology, can preserve interpretability.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scsemiclip as ssc

SIM = {"n_teacher_dims": 48, "nuisance_scale": 0.5}
FIT = {
    "student_rep": "X_emb",
    "teacher_rep": "X_phenom",
    "pair_keys": ("perturbation", "dose"),
    "max_epochs": 30,
    "batch_size": 128,
    "hidden_dims": (256, 256),
    "optimizer": "sgd",
    "lr": 1e-2,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}
INTERPRETABILITY = {"max_epochs": 200, "lr": 1e-3}
SEEDS = (0, 1)


def _recall(adata, rep: str) -> float:
    ssc.pp.tvn(adata, use_rep=rep, key_added="_eval_tvn")
    return float(ssc.tl.known_relationship_recall(adata, use_rep="_eval_tvn").loc["mean", "recall"])


def _interpretability(adata, rep: str) -> float:
    return float(ssc.tl.interpretability_preservation(adata, use_rep=rep, **INTERPRETABILITY)["score"])


@pytest.mark.slow
def test_semiclipped_beats_student_on_ood(shared_data):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = ssc.datasets.simulate_weakly_paired(rng=0, **SIM)
        student, teacher, ood = data["student"], data["teacher"], data["ood"]
        ood.obsm["X_random"] = np.random.default_rng(0).normal(size=ood.obsm["X_emb"].shape)
        recall = {"student": _recall(ood, "X_emb"), "random": _recall(ood, "X_random")}
        interp = {"student": _interpretability(ood, "X_emb"), "random": _interpretability(ood, "X_random")}
        for pea in (False, True):
            name = "semiclipped+pea" if pea else "semiclipped"
            recalls, scores = [], []
            for seed in SEEDS:
                model = ssc.tl.fit_semiclipped(student, teacher, **FIT, pea=pea, rng=seed)
                ssc.tl.apply_semiclipped(ood, model, key_added="X_sc")
                recalls.append(_recall(ood, "X_sc"))
                scores.append(_interpretability(ood, "X_sc"))
            recall[name], interp[name] = np.mean(recalls), np.mean(scores)
    finally:
        torch.set_num_threads(before)
    print("recall", recall, "interpretability", interp)
    # recall: clearly above the unimodal student, far above random; PEA does not hurt
    assert recall["random"] < 0.13
    for name in ("semiclipped", "semiclipped+pea"):
        assert recall[name] >= recall["student"] + 0.04, recall
        assert recall[name] >= recall["random"] + 0.07, recall
    assert recall["semiclipped+pea"] >= recall["semiclipped"] - 0.02, recall
    # interpretability: within a few points of the student, well above random
    assert interp["student"] >= interp["random"] + 5, interp
    for name in ("semiclipped", "semiclipped+pea"):
        assert interp[name] >= interp["student"] - 5, interp
