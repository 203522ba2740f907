"""Bad inputs of ``pp``: every one is a ValueError / TypeError / KeyError naming the argument, before any work."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import adata_hash, make_embedding_adata

import scsemiclip as ssc

NAN, INF = float("nan"), float("inf")

CASES = [
    # (function, keyword arguments, exception, text the message must contain)
    ("center", {"use_rep": 3}, TypeError, "use_rep"),
    ("center", {"use_rep": "X_nope"}, KeyError, "X_nope"),
    ("center", {"use_rep": "X_emb", "batch_key": 1}, TypeError, "batch_key"),
    ("center", {"use_rep": "X_emb", "batch_key": "nope"}, KeyError, "nope"),
    ("center", {"use_rep": "X_emb", "control_key": None}, TypeError, "control_key"),
    ("center", {"use_rep": "X_emb", "control_key": "perturbation"}, ValueError, "perturbation"),
    ("center", {"use_rep": "X_emb", "key_added": "X_emb"}, ValueError, "key_added"),
    ("center", {"use_rep": "X_emb", "key_added": ""}, ValueError, "key_added"),
    ("center", {"use_rep": "X_emb", "copy": "yes"}, TypeError, "copy"),
    ("standardize", {"use_rep": "X_emb", "copy": 1}, TypeError, "copy"),
    ("standardize", {"use_rep": "X_emb", "control_key": "nope"}, KeyError, "nope"),
    ("tvn", {"use_rep": "X_emb", "coral_reg": -5}, ValueError, "coral_reg"),
    ("tvn", {"use_rep": "X_emb", "coral_reg": NAN}, ValueError, "coral_reg"),
    ("tvn", {"use_rep": "X_emb", "coral_reg": INF}, ValueError, "coral_reg"),
    ("tvn", {"use_rep": "X_emb", "coral_reg": "0.5"}, TypeError, "coral_reg"),
    ("tvn", {"use_rep": "X_emb", "basis": "svd"}, ValueError, "basis"),
    ("tvn", {"use_rep": "X_emb", "coral": "no"}, TypeError, "coral"),
    ("pea_augment", {"use_rep": "X_emb", "n_augmentations": 2.5}, TypeError, "n_augmentations"),
    ("pea_augment", {"use_rep": "X_emb", "n_augmentations": 0}, ValueError, "n_augmentations"),
    ("pea_augment", {"use_rep": "X_emb", "n_augmentations": True}, TypeError, "n_augmentations"),
    ("pea_augment", {"use_rep": "X_emb", "transforms": "center"}, TypeError, "transforms"),
    ("pea_augment", {"use_rep": "X_emb", "transforms": ()}, ValueError, "transforms"),
    ("pea_augment", {"use_rep": "X_emb", "transforms": ("center", "zca")}, ValueError, "transforms"),
    ("pea_augment", {"use_rep": "X_emb", "p_drop": 1.0}, ValueError, "p_drop"),
    ("pea_augment", {"use_rep": "X_emb", "p_drop": NAN}, ValueError, "p_drop"),
    ("pea_augment", {"use_rep": "X_emb", "min_control_fraction": 0}, ValueError, "min_control_fraction"),
    ("pea_augment", {"use_rep": "X_emb", "min_control_fraction": 1.5}, ValueError, "min_control_fraction"),
    ("pea_augment", {"use_rep": "X_emb", "bank_size": 0}, ValueError, "bank_size"),
    ("pea_augment", {"use_rep": "X_emb", "bank_size": 2.0}, TypeError, "bank_size"),
    ("pea_augment", {"use_rep": "X_emb", "coral_reg": -1}, ValueError, "coral_reg"),
    ("pea_augment", {"use_rep": "X_emb", "rng": "seed"}, TypeError, "rng"),
    ("aggregate", {"use_rep": "X_emb", "method": "sum"}, ValueError, "method"),
    ("aggregate", {"use_rep": "X_emb", "method": None}, TypeError, "method"),
    ("aggregate", {"use_rep": "X_emb", "by": 0}, TypeError, "by"),
    ("aggregate", {"use_rep": "X_emb", "by": "nope"}, KeyError, "nope"),
    ("aggregate", {"use_rep": "X_emb", "control_key": 5}, TypeError, "control_key"),
    ("mark_controls", {"perturbation_key": "perturbation", "control_values": []}, ValueError, "control_values"),
    ("mark_controls", {"perturbation_key": "nope", "control_values": "NTC"}, KeyError, "nope"),
    ("mark_controls", {"perturbation_key": None, "control_values": "NTC"}, TypeError, "perturbation_key"),
    (
        "mark_controls",
        {"perturbation_key": "perturbation", "control_values": "NTC", "key_added": "perturbation"},
        ValueError,
        "key_added",
    ),
    ("mark_controls", {"perturbation_key": "perturbation", "control_values": "DMSO"}, ValueError, "DMSO"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "text"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_bad_argument_is_a_named_error_and_changes_nothing(name, kwargs, error, text):
    adata = make_embedding_adata(n_obs=80, n_dims=4, n_batches=2, n_perts=4)
    before = adata_hash(adata)
    with pytest.raises(error, match=re.escape(text)):
        getattr(ssc.pp, name)(adata, **kwargs)
    assert adata_hash(adata) == before
    assert not adata.uns


def test_empty_anndata_is_an_error():
    adata = make_embedding_adata(n_obs=40, n_dims=3, n_batches=1)[:0].copy()
    with pytest.raises(ValueError, match="no rows"):
        ssc.pp.center(adata, use_rep="X_emb")


def test_missing_labels_to_aggregate_name_the_column_and_row():
    adata = make_embedding_adata(n_obs=40, n_dims=3, n_batches=1)
    labels = adata.obs["perturbation"].astype(object)
    row = np.flatnonzero(~adata.obs["is_control"].to_numpy())[0]
    labels.iloc[row] = None
    adata.obs["perturbation"] = labels
    with pytest.raises(ValueError, match=rf"'perturbation'.*{adata.obs_names[row]}"):
        ssc.pp.aggregate(adata, use_rep="X_emb")


def test_missing_labels_on_controls_are_fine():
    adata = make_embedding_adata(n_obs=40, n_dims=3, n_batches=1)
    labels = adata.obs["perturbation"].astype(object)
    labels[adata.obs["is_control"].to_numpy()] = None
    adata.obs["perturbation"] = labels
    assert ssc.pp.aggregate(adata, use_rep="X_emb").n_obs > 0


def test_mark_controls_compares_canonical_labels():
    obs = pd.DataFrame({"compound": [0, 0, 12_345_678, 12_345_679]}, index=list("abcd"))
    adata = ad.AnnData(obs=obs)
    ssc.pp.mark_controls(adata, perturbation_key="compound", control_values=["0", 12_345_679.0])
    assert adata.obs["is_control"].tolist() == [True, True, False, True]
