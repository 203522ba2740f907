"""tl.fit_semiclipped / tl.apply_semiclipped: outputs, inputs left untouched, MuData, and bad input."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pytest
from conftest import adata_hash, make_weakly_paired

import scsemiclip as ssc

FAST = {
    "student_rep": "X_emb",
    "max_epochs": 2,
    "batch_size": 64,
    "hidden_dims": (16,),
    "pea_bank_size": 4,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_writes_only_its_keys(paired, tmp_path):
    student, teacher = paired
    before_s, before_t = adata_hash(student), adata_hash(teacher)
    uns_t = dict(teacher.uns)
    model = ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST)
    assert isinstance(model, ssc.model.SemiClipped)
    out = student.obsm.pop("X_semiclipped")
    assert out.shape == (student.n_obs, teacher.obsm["X_phenom"].shape[1]) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert adata_hash(student) == before_s and adata_hash(teacher) == before_t
    assert set(student.uns) == {"X_semiclipped"} and dict(teacher.uns) == uns_t
    info = student.uns["X_semiclipped"]
    assert {"params", "final_losses", "pair_counts", "version"} <= set(info)
    assert info["params"]["pair_keys"] == ["perturbation"]
    assert info["params"]["inference_tvn"] is (info["recipe"]["chosen"] == "pea")  # "auto" chose base or pea
    assert set(info["final_losses"]) >= {"train_loss", "top1_accuracy_train"}
    assert info["pair_counts"]["n_student_controls"] == int(student.obs["is_control"].sum())
    student.obsm["X_semiclipped"] = out
    student.write_h5ad(tmp_path / "s.h5ad")  # uns is h5ad-storable
    back = ad.read_h5ad(tmp_path / "s.h5ad")
    assert back.uns["X_semiclipped"]["params"]["objective"] == "semiclipped"
    np.testing.assert_array_equal(model.get_latent_representation(), out)


def test_fit_mudata_and_apply_to_new_data(paired):
    student, teacher = paired
    with md.set_options(pull_on_update=False):  # mudata >= 0.4 behaviour, without its FutureWarning
        mdata = md.MuData({"rna": student, "image": teacher})
    model = ssc.tl.fit_semiclipped(mdata, **FAST, pea=False, key_added="X_sc")
    assert "X_sc" in mdata.mod["rna"].obsm and "X_sc" in mdata.mod["rna"].uns
    new, _, _ = make_weakly_paired(seed=3, gene_offset=100)
    before = adata_hash(new)
    copy = ssc.tl.apply_semiclipped(new, model=model, key_added="X_sc", copy=True)
    assert adata_hash(new) == before and "X_sc" not in new.obsm
    assert copy.obsm["X_sc"].shape == (new.n_obs, teacher.obsm["X_phenom"].shape[1])
    assert copy.uns["X_sc"]["params"]["inference_tvn"] is True
    assert ssc.tl.apply_semiclipped(new, model=model, key_added="X_sc") is None
    np.testing.assert_array_equal(new.obsm["X_sc"], copy.obsm["X_sc"])
    np.testing.assert_array_equal(model.get_latent_representation(new), new.obsm["X_sc"])
    with pytest.raises(ValueError, match="is not both|not both"):
        ssc.tl.fit_semiclipped(mdata, teacher=teacher, **FAST)


def test_gene_level_profiles_without_controls(paired):
    student, teacher = paired
    student = student[~student.obs["is_control"]].copy()
    teacher = teacher[~teacher.obs["is_control"]].copy()
    with pytest.raises(ValueError, match=r"`pea=True` needs the student's controls.*control_key=None"):
        ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, control_key=None, teacher_tvn=False, recipe="pea")
    with pytest.raises(ValueError, match="teacher_tvn=True.*no control column"):
        ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, control_key=None, pea=False)
    model = ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, control_key=None, teacher_tvn=False)
    assert not model.inference_tvn and not model.pea  # "auto" without controls: the base recipe
    assert student.uns["X_semiclipped"]["recipe"]["chosen"] == "base"
    assert student.uns["X_semiclipped"]["params"]["control_key"] == ""
    assert student.uns["X_semiclipped"]["pair_counts"]["n_student_paired"] == student.n_obs


def test_keys_of_different_dtypes_pair(paired):
    student, teacher = paired
    student.obs["dose"] = np.where(student.obs["is_control"], np.nan, 1.0)  # float, NaN for controls
    teacher.obs["dose"] = np.ones(teacher.n_obs, dtype=np.int64)  # int
    teacher.obs["perturbation"] = teacher.obs["perturbation"].astype("category")
    model = ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, pair_keys=("perturbation", "dose"))
    assert model.pair_counts_["n_keys_paired"] == 40
    teacher.obs["dose"] = "1.0"  # numbers stored as text
    model = ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, pair_keys=("perturbation", "dose"))
    assert model.pair_counts_["n_keys_paired"] == 40
    teacher.obs["dose"] = "1 uM"
    with pytest.raises(ValueError, match=r"No weak pairs.*adata 'G0 \| 1', teacher 'G0 \| 1 uM'"):
        ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, pair_keys=("perturbation", "dose"))
    student.obs.loc[student.obs_names[0], "dose"] = np.nan
    with pytest.raises(ValueError, match=r"missing values in 1 non-control row"):
        ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, pair_keys=("perturbation", "dose"))


def test_bad_input_errors(paired):
    student, teacher = paired
    renamed = teacher.copy()
    renamed.obs["perturbation"] = "x" + renamed.obs["perturbation"].astype(str)
    with pytest.raises(
        ValueError, match=r"No weak pairs: none of the 40 pairing keys.*e\.g\. adata 'G0', teacher 'xG0'"
    ):
        ssc.tl.fit_semiclipped(student, teacher=renamed, **FAST)
    with pytest.raises(KeyError, match=r"adata\.obs has no column 'dose' \(a pairing key"):
        ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, pair_keys=("perturbation", "dose"))
    dosed = student.copy()
    dosed.obs["dose"] = 1.0
    with pytest.raises(KeyError, match=r"teacher\.obs has no column 'dose' \(a pairing key"):
        ssc.tl.fit_semiclipped(dosed, teacher=teacher, **FAST, pair_keys=("perturbation", "dose"))
    no_ctrl = teacher.copy()
    no_ctrl.obs["is_control"] = False
    with pytest.raises(ValueError, match=r"teacher has no controls.*teacher_tvn=False"):
        ssc.tl.fit_semiclipped(student, teacher=no_ctrl, **FAST)
    nan = teacher.copy()
    nan.obsm["X_phenom"][3, 1] = np.nan
    with pytest.raises(ValueError, match=r"teacher\.obsm\['X_phenom'\] contains NaN .* \(first: row 3\)"):
        ssc.tl.fit_semiclipped(student, teacher=nan, **FAST)
    nan = student.copy()
    nan.obsm["X_emb"][5] = np.inf
    with pytest.raises(ValueError, match=r"adata\.obsm\['X_emb'\] contains NaN"):
        ssc.tl.fit_semiclipped(nan, teacher=teacher, **FAST)
    with pytest.raises(KeyError, match=r"'X_phenom' is not in teacher\.obsm"):
        ssc.tl.fit_semiclipped(student, teacher=student, **FAST)
    few = student.copy()
    ctrl_b1 = np.flatnonzero(few.obs["is_control"] & (few.obs["batch"] == "s0_b1"))
    few.obs.loc[few.obs_names[ctrl_b1[1:]], "is_control"] = False
    with pytest.raises(ValueError, match=r"adata: batch 's0_b1' of obs\['batch'\] has 1 control\(s\); at least 2"):
        ssc.tl.fit_semiclipped(few, teacher=teacher, **FAST)
    few_t = teacher.copy()
    ctrl_b0 = np.flatnonzero(few_t.obs["is_control"] & (few_t.obs["batch"] == "t0_b0"))
    few_t.obs.loc[few_t.obs_names[ctrl_b0[1:]], "is_control"] = False
    with pytest.raises(ValueError, match=r"teacher: batch 't0_b0' of obs\['batch'\] has 1 control"):
        ssc.tl.fit_semiclipped(student, teacher=few_t, **FAST)
    with pytest.raises(ValueError, match="`teacher` is required"):
        ssc.tl.fit_semiclipped(student, **FAST)
    with pytest.raises(ValueError, match="equals `use_rep`"):
        ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, key_added="X_emb")


def test_apply_checks_dimension_and_controls(paired):
    student, teacher = paired
    model = ssc.tl.fit_semiclipped(student, teacher=teacher, **FAST, recipe="pea")
    new, _, _ = make_weakly_paired(d_student=7)
    with pytest.raises(ValueError, match=r"obsm\['X_emb'\] has 7 dimensions, but the model's adapter takes 12"):
        ssc.tl.apply_semiclipped(new, model=model)
    new, _, _ = make_weakly_paired()
    with pytest.raises(ValueError, match="`inference_tvn=True`.*`control_key` is None"):
        ssc.tl.apply_semiclipped(new, model=model, control_key=None)
    new.obs["plate"] = new.obs["batch"]
    ssc.tl.apply_semiclipped(new, model=model, batch_key="plate")
    assert new.obsm["X_semiclipped"].shape[0] == new.n_obs


def test_fit_exposes_every_model_option_and_stores_them(paired):
    import inspect

    from scsemiclip.tl._semiclipped import model_options

    fit_params = inspect.signature(ssc.tl.fit_semiclipped).parameters
    missing = [name for name in model_options() if name not in fit_params]
    assert not missing, f"fit_semiclipped lacks the model options {missing}"
    student, teacher = paired
    ssc.tl.fit_semiclipped(
        student, teacher, **{**FAST, "max_epochs": 1}, coral_reg=0.7, pea_transforms=("center", "tvn")
    )
    params = student.uns["X_semiclipped"]["params"]
    assert params["coral_reg"] == 0.7 and params["pea_transforms"] == ["center", "tvn"]
    assert set(model_options()) <= set(params)
    assert params["teacher_batch_key"] == "batch" and params["objective_kwargs"] == {}


def test_latent_representation_is_the_seam_of_apply(paired):
    student, teacher = paired
    model = ssc.tl.fit_semiclipped(student, teacher, **{**FAST, "max_epochs": 1})
    new, _, _ = make_weakly_paired(seed=3, gene_offset=100)
    new.obs = new.obs.rename(columns={"batch": "plate", "is_control": "ntc"})
    new.obsm["X_other"] = new.obsm.pop("X_emb")
    out = ssc.tl.apply_semiclipped(new, model, student_rep="X_other", batch_key="plate", control_key="ntc", copy=True)
    direct = model.get_latent_representation(new, student_rep="X_other", batch_key="plate", control_key="ntc")
    np.testing.assert_array_equal(out.obsm["X_semiclipped"], direct)
    with pytest.raises(KeyError, match="has no column"):
        model.get_latent_representation(new, student_rep="X_other")  # the model's set-up columns by default


def test_a_fit_prints_nothing_but_its_progress(paired, capfd):
    student, teacher = paired
    kwargs = {k: v for k, v in FAST.items() if k != "enable_progress_bar"}
    ssc.tl.fit_semiclipped(student, teacher, **kwargs)
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines and all(line.startswith("Epoch ") for line in lines), lines
    assert len(lines) <= FAST["max_epochs"]
    previous = ssc.settings.progress_bar
    try:
        ssc.settings.progress_bar = False
        ssc.tl.fit_semiclipped(student, teacher, **kwargs)
        assert capfd.readouterr() == ("", "")
    finally:
        ssc.settings.progress_bar = previous
