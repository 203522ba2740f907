"""Bad inputs of the evaluation toolkit: interpretability options, label forms, annotation and gene-set mappings."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import adata_hash, make_embedding_adata

import scsemiclip as ssc

NAN = float("nan")

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def expression():
    """Counts of 4 batches x (3 controls + 6 perturbations x 2 replicates), 20 genes, and an embedding."""
    rng = np.random.default_rng(0)
    n_batches, n_ctrl, n_perts, reps = 4, 3, 6, 2
    code = np.tile(np.r_[np.full(n_ctrl, -1), np.repeat(np.arange(n_perts), reps)], n_batches)
    batch = np.repeat(np.arange(n_batches), n_ctrl + n_perts * reps)
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical([f"b{b}" for b in batch]),
            "perturbation": np.where(code < 0, "NTC", np.char.add("G", code.astype(str))),
            "is_control": code < 0,
        },
        index=[f"s{i}" for i in range(code.size)],
    )
    adata = ad.AnnData(X=rng.poisson(5, size=(code.size, 20)).astype(np.float32), obs=obs)
    adata.obsm["X_emb"] = rng.normal(size=(code.size, 4))
    return adata


INTERPRETABILITY_CASES = [
    ({"train_fraction": 1.5}, ValueError, "train_fraction"),
    ({"train_fraction": 0}, ValueError, "train_fraction"),
    ({"train_fraction": -1}, ValueError, "train_fraction"),
    ({"train_fraction": NAN}, ValueError, "train_fraction"),
    ({"train_fraction": "0.7"}, TypeError, "train_fraction"),
    ({"warmup_fraction": 2}, ValueError, "warmup_fraction"),
    ({"warmup_fraction": -0.5}, ValueError, "warmup_fraction"),
    ({"warmup_fraction": NAN}, ValueError, "warmup_fraction"),
    ({"weight_decay": -1}, ValueError, "weight_decay"),
    ({"weight_decay": NAN}, ValueError, "weight_decay"),
    ({"weight_decay": "1e-6"}, TypeError, "weight_decay"),
    ({"key_added": ""}, ValueError, "key_added"),
    ({"key_added": None}, TypeError, "key_added"),
    ({"layer": "counts"}, KeyError, "adata.layers"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "text"), INTERPRETABILITY_CASES, ids=[f"{c[2]}-{c[0]}" for c in INTERPRETABILITY_CASES]
)
def test_interpretability_bad_argument(expression, kwargs, error, text):
    adata = expression.copy()
    before = adata_hash(adata)
    with pytest.raises(error, match=re.escape(text)):
        ssc.tl.interpretability_preservation(adata, use_rep="X_emb", max_epochs=1, min_steps=1, **kwargs)
    assert adata_hash(adata) == before and not adata.uns


SPLIT_CASES = [
    ({"normalize": "False"}, TypeError, "normalize"),
    ({"key_added": None}, TypeError, "key_added"),
    ({"key_added": ""}, ValueError, "key_added"),
    ({"weight_decay": "no"}, TypeError, "weight_decay"),
    ({"warmup_fraction": 1.5}, ValueError, "warmup_fraction"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), SPLIT_CASES, ids=[f"{c[2]}-{c[0]}" for c in SPLIT_CASES])
def test_interpretability_split_bad_argument(expression, kwargs, error, text):
    train, test = expression[:40].copy(), expression[40:].copy()
    with pytest.raises(error, match=re.escape(text)):
        ssc.tl.interpretability_preservation_split(train, test=test, use_rep="X_emb", max_epochs=1, **kwargs)
    assert not train.uns


def test_interpretability_split_names_the_anndata_of_a_missing_layer(expression):
    train, test = expression[:40].copy(), expression[40:].copy()
    train.layers["counts"] = train.X.copy()  # only the training AnnData has the layer
    with pytest.raises(KeyError, match=re.escape("`layer='counts'` is not in test.layers")):
        ssc.tl.interpretability_preservation_split(train, test=test, use_rep="X_emb", layer="counts", max_epochs=1)


@pytest.mark.parametrize("which", ["adata", "test"])
def test_interpretability_split_duplicate_var_names(expression, which):
    train, test = expression[:40].copy(), expression[40:].copy()
    dup = train if which == "adata" else test
    dup.var_names = ["0", "0", *dup.var_names[2:]]
    with pytest.raises(ValueError, match=re.escape(f"{which}.var_names repeat 1 gene name(s) (first: '0')")):
        ssc.tl.interpretability_preservation_split(train, test=test, use_rep="X_emb", max_epochs=1)


# ------------------------------------------------------------------------------------------------- label forms
@pytest.fixture(scope="module")
def float_labels():
    """A map whose perturbation labels are floats (``3.0``), controls ``-1.0``."""
    adata = make_embedding_adata(n_obs=360, n_perts=12, seed=3)
    labels = adata.obs["perturbation"].str.lstrip("G").replace("NTC", "-1").astype(float)
    adata.obs["perturbation"] = labels.to_numpy()
    return adata


def test_null_perturbations_as_floats_name_float_labels(float_labels):
    adata = float_labels.copy()
    table = ssc.tl.perturbation_consistency(adata, use_rep="X_emb", null_perturbations=[3.0, 4], null_size=50)
    assert adata.uns["perturbation_consistency"]["params"]["null_perturbations"] == ["3", "4"]
    assert not {"3", "4"} & set(table.index.astype(str))
    with pytest.raises(ValueError, match=re.escape("`null_perturbations` names 1 label(s)")):
        ssc.tl.perturbation_consistency(adata, use_rep="X_emb", null_perturbations=[3.5], null_size=50)


def test_annotations_keyed_by_int_annotate_float_labels(float_labels):
    adata = float_labels.copy()
    table = ssc.tl.phenotypic_consistency(
        adata, use_rep="X_emb", annotations={i: f"m{i % 3}" for i in range(12)}, null_size=50
    )
    assert list(table.index) == ["m0", "m1", "m2"] and (table["n_perturbations"] == 4).all()


def test_nullable_integer_annotation_labels_keep_their_form(float_labels):
    adata = float_labels.copy()
    labels = (adata.obs["perturbation"] % 3).astype("Int64")
    labels[adata.obs["perturbation"].to_numpy() == 11] = pd.NA  # a missing label: no annotation
    adata.obs["module"] = labels.to_numpy()
    table = ssc.tl.phenotypic_consistency(adata, use_rep="X_emb", annotations="module", null_size=50)
    assert list(table.index) == ["0", "1", "2"]
    assert table.loc["2", "n_perturbations"] == 3  # 2, 5, 8; 11 is missing


# ------------------------------------------------------------------------------- annotation and gene-set mappings
@pytest.fixture(scope="module")
def gene_labels():
    return make_embedding_adata(n_obs=360, n_perts=12, seed=4)


def test_missing_values_of_an_annotation_mapping_are_no_label(gene_labels):
    adata = gene_labels.copy()
    annotations = {f"G{i}": f"m{i % 3}" for i in range(9)} | {"G9": None, "G10": NAN, "G11": ["m0", None, NAN]}
    table = ssc.tl.phenotypic_consistency(adata, use_rep="X_emb", annotations=annotations, null_size=50)
    assert list(table.index) == ["m0", "m1", "m2"]
    assert table["n_perturbations"].tolist() == [4, 3, 3]  # G11 carries m0; G9 and G10 carry nothing


def test_gene_sets_drop_missing_genes():
    sets = ssc.datasets.gene_sets({"a": ["X", None, NAN, "Y"], "b": [None], "c": {"B", "A", NAN}})
    assert sets == {"a": ["X", "Y"], "c": ["A", "B"]}


def test_gmt_path_as_annotations(gene_labels, tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("m0\tfirst\tG0\tG1\tG2\nm1\tsecond\tG3\tG4\tG5\n")
    adata = gene_labels.copy()
    table = ssc.tl.phenotypic_consistency(adata, use_rep="X_emb", annotations=gmt, null_size=50)
    assert list(table.index) == ["m0", "m1"]
    assert adata.uns["phenotypic_consistency"]["params"]["annotations"] == str(gmt)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("m0\tfirst\tCAF\xe9\tG1\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 on line 1)"),
        (b"\x00\x01", "is a binary file"),
    ],
    ids=["latin-1", "binary"],
)
def test_gmt_that_is_not_utf8_text_names_the_file(tmp_path, content, text):
    gmt = tmp_path / "sets.gmt"
    gmt.write_bytes(content)
    for name in (gmt, str(gmt)):
        with pytest.raises(ValueError, match=re.escape(f"{str(gmt)!r} {text}")):
            ssc.datasets.gene_sets(name)


def test_annotations_of_another_type(gene_labels):
    with pytest.raises(TypeError, match="`annotations` must be"):
        ssc.tl.phenotypic_consistency(gene_labels.copy(), use_rep="X_emb", annotations=3, null_size=50)


def test_path_is_a_gmt_path_for_the_loader(tmp_path):
    gmt = Path(tmp_path) / "one.gmt"
    gmt.write_text("s\td\tA\tB\n")
    assert ssc.datasets.gene_sets(gmt) == {"s": ["A", "B"]}


def test_evaluate_map_annotates_float_labels_by_int_keys(float_labels):
    adata = float_labels.copy()
    annotations = {i: f"m{i % 3}" for i in range(12)}
    table = ssc.tl.evaluate_map(
        adata, use_reps="X_emb", metrics=["phenotypic_consistency"], annotations=annotations, null_size=50
    )
    assert set(table["metric"]) == {"phenotypic_consistency"}
