"""``validation_recall``: known-relationship recall of the held-out genes, logged while a gene screen trains."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from conftest import make_weakly_paired

import scsemiclip as ssc

pytestmark = [pytest.mark.usefixtures("shared_data", "one_thread")]


def _corum_genes(n: int) -> np.ndarray:
    """``n`` genes of CORUM, taken pair by pair so that many known relationships lie among them."""
    pairs = ssc.datasets.relationships("CORUM")
    return pd_unique(pairs[["entity1", "entity2"]].to_numpy().ravel())[:n]


def pd_unique(values: np.ndarray) -> np.ndarray:
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def test_the_scorer_is_known_relationship_recall():
    genes = _corum_genes(40)
    rng = np.random.default_rng(0)
    profiles = rng.normal(size=(40, 8))
    scorer = ssc.tl.validation_recall([*genes, "compound_1", "compound_2"])
    keys = np.arange(40)
    value = scorer(profiles, keys)
    adata = ad.AnnData(obs={"perturbation": genes, "is_control": np.zeros(40, dtype=bool)})
    adata.obsm["X_profiles"] = profiles
    expected = ssc.tl.known_relationship_recall(adata, use_rep="X_profiles").loc["mean", "recall"]
    assert value == pytest.approx(expected, abs=1e-12)
    assert scorer(profiles[:10], keys[:10]) is None  # fewer than 20 held-out genes: no value
    twice = scorer(np.vstack([profiles, profiles]), np.r_[keys, keys])  # a gene's keys (its doses) are averaged
    assert twice == pytest.approx(value, abs=1e-12)


def test_compound_screens_get_no_recall():
    assert ssc.tl.validation_recall([f"compound_{i}" for i in range(100)]) is None


def test_a_gene_screen_logs_held_out_recall():
    student, teacher, _ = make_weakly_paired(n_genes=60)
    names = dict(zip([f"G{i}" for i in range(60)], _corum_genes(60), strict=True))
    for side in (student, teacher):
        side.obs["perturbation"] = side.obs["perturbation"].astype(str).map(lambda g: names.get(g, g))
    model = ssc.tl.fit_semiclipped(
        student,
        teacher,
        student_rep="X_emb",
        recipe="base",
        max_epochs=2,
        hidden_dims=(16,),
        validation_size=0.4,
        train_size=0.6,
        enable_progress_bar=False,
    )
    recall = model.history["validation_recall"].to_numpy()
    assert recall.shape == (2, 1) and np.all((recall >= 0) & (recall <= 1))
