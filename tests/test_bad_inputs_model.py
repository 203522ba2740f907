"""Bad inputs of the model: arguments, training, and model files (save / load), each a named error."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_weakly_paired

from scsemiclip.model import SemiClipped, TrainingDivergedError
from scsemiclip.module import Augmentation

sys.path.insert(0, str(Path(__file__).parent / "data"))
from make_model_fixture import HERE as FIXTURE
from make_model_fixture import adatas, inputs

NAN = float("nan")
FAST = {"enable_progress_bar": False, "enable_model_summary": False}

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def paired():
    student, teacher, _ = make_weakly_paired(n_genes=10, n_rep=2, n_teacher_rep=1, n_controls=4)
    SemiClipped.setup_anndata(student, student_rep="X_emb")
    return student, teacher


@pytest.fixture(scope="module")
def trained(paired, tmp_path_factory):
    student, teacher = paired
    model = SemiClipped(student, teacher, hidden_dims=(8,), pea_bank_size=2)
    model.train(1, batch_size=32, **FAST)
    path = tmp_path_factory.mktemp("saved") / "model"
    model.save(path)
    return model, path


INIT_CASES = [
    ({"temperature": NAN}, ValueError, "temperature"),
    ({"temperature": float("inf")}, ValueError, "temperature"),
    ({"temperature": -0.1}, ValueError, "temperature"),
    ({"hidden_dims": (8, 2.5)}, TypeError, "hidden_dims"),
    ({"hidden_dims": 8}, TypeError, "hidden_dims"),
    ({"pea_bank_size": 0}, ValueError, "pea_bank_size"),
    ({"pea_transforms": "tvn"}, TypeError, "pea_transforms"),
    ({"p_drop": -0.1}, ValueError, "p_drop"),
    ({"min_control_fraction": NAN}, ValueError, "min_control_fraction"),
    ({"coral_reg": -1}, ValueError, "coral_reg"),
    ({"teacher_rep": None}, TypeError, "teacher_rep"),
    ({"teacher_batch_key": 1}, TypeError, "teacher_batch_key"),
    ({"pea": "true"}, TypeError, "pea"),
    ({"teacher_tvn": None}, TypeError, "teacher_tvn"),
    ({"objective": "nope"}, ValueError, "objective"),
    ({"n_keys": 0}, ValueError, "n_keys"),
    ({"rng": [0]}, TypeError, "rng"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), INIT_CASES, ids=[c[2] for c in INIT_CASES])
def test_model_bad_argument(paired, kwargs, error, text):
    student, teacher = paired
    with pytest.raises(error, match=re.escape(text)):
        SemiClipped(student, teacher, **{"hidden_dims": (8,), **kwargs})


def test_inference_model_needs_its_dimensions(paired):
    with pytest.raises(ValueError, match="n_teacher_dims"):
        SemiClipped(paired[0], None)


TRAIN_CASES = [
    ({"max_epochs": 0}, ValueError, "max_epochs"),
    ({"max_epochs": -1}, ValueError, "max_epochs"),
    ({"max_epochs": "2"}, TypeError, "max_epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 16.0}, TypeError, "batch_size"),
    ({"accelerator": "quantum"}, ValueError, "accelerator"),
    ({"plan_kwargs": "sgd"}, TypeError, "plan_kwargs"),
    ({"plan_kwargs": {"lr": NAN}}, ValueError, "lr"),
    ({"plan_kwargs": {"lr": float("inf")}}, ValueError, "lr"),
    ({"plan_kwargs": {"lr_min": 1.0}}, ValueError, "lr_min"),
    ({"plan_kwargs": {"eps": 0}}, ValueError, "eps"),
    ({"plan_kwargs": {"optimizer": "lbfgs"}}, ValueError, "optimizer"),
    ({"plan_kwargs": {"optimizer": None}}, TypeError, "optimizer"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), TRAIN_CASES, ids=[c[2] + repr(c[0]) for c in TRAIN_CASES])
def test_train_bad_argument(paired, kwargs, error, text):
    student, teacher = paired
    model = SemiClipped(student, teacher, hidden_dims=(8,), pea_bank_size=2)
    with pytest.raises(error, match=re.escape(text)):
        model.train(**{"max_epochs": 1, "batch_size": 32, **FAST, **kwargs})
    assert not model.is_trained_


def test_latent_bad_arguments(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="batch_size"):
        model.get_latent_representation(batch_size=0)
    with pytest.raises(TypeError, match="`adata`"):
        model.get_latent_representation(np.zeros((3, 12)))


# ----------------------------------------------------------------------------------------------- model files
def test_save_onto_a_file_names_the_path(trained, tmp_path):
    model, _ = trained
    file = tmp_path / "model_file"
    file.write_text("x")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=re.escape(f"{str(file)!r} is a file")):
            model.save(file, overwrite=overwrite)
    assert file.read_text() == "x"


def test_save_into_an_existing_directory(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match="already exists"):
        model.save(tmp_path)
    with pytest.raises(TypeError, match="overwrite"):
        model.save(tmp_path, overwrite="yes")
    model.save(tmp_path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no partial file left


def test_save_an_untrained_model_is_an_error(paired, tmp_path):
    model = SemiClipped(*paired, hidden_dims=(8,))
    with pytest.raises(ValueError, match="not trained"):
        model.save(tmp_path / "m")


def _saved(path: Path) -> dict:
    return torch.load(path / "model.pt", weights_only=True)


def _write(tmp_path: Path, content: dict | bytes) -> Path:
    out = tmp_path / "bad"
    out.mkdir()
    if isinstance(content, bytes):
        (out / "model.pt").write_bytes(content)
    else:
        torch.save(content, out / "model.pt")
    return out


class _Custom:
    pass


def _corruptions(saved: dict, raw: bytes) -> list[tuple[str, object, str]]:
    sd = saved["state_dict"]
    first = next(iter(sd))
    return [
        ("random bytes", np.random.default_rng(0).bytes(500), "is not a model file"),
        ("legacy pickle", b"\x80\x02}q\x00.", "is not a model file"),
        ("truncated", raw[: len(raw) // 2], "is corrupt or truncated"),
        ("not a dict", [1, 2, 3], "is not a model file"),
        ("no setup_args", {k: v for k, v in saved.items() if k != "setup_args"}, "lacks ['setup_args']"),
        ("other model", {**saved, "model": "SCVI"}, "holds a 'SCVI' model"),
        ("newer format", {**saved, "format_version": 99}, "format 99"),
        ("missing tensor", {**saved, "state_dict": {k: v for k, v in sd.items() if k != first}}, "missing"),
        ("mis-shaped tensor", {**saved, "state_dict": {**sd, first: torch.zeros(1, 1)}}, "mis-shaped"),
        ("extra tensor", {**saved, "state_dict": {**sd, "nope": torch.zeros(1)}}, "unexpected"),
        ("no tensors", {**saved, "state_dict": {first: "x"}}, "no tensors"),
        ("unknown option", {**saved, "init_params": {**saved["init_params"], "warp": 9}}, "options ['warp']"),
        ("code", {**saved, "extra": _Custom()}, "objects other than tensors"),
    ]


CORRUPTIONS = [
    "random bytes",
    "legacy pickle",
    "truncated",
    "not a dict",
    "no setup_args",
    "other model",
    "newer format",
    "missing tensor",
    "mis-shaped tensor",
    "extra tensor",
    "no tensors",
    "unknown option",
    "code",
]


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_load_reports_a_bad_model_file_naming_the_path(trained, paired, tmp_path, case):
    _, path = trained
    raw = (path / "model.pt").read_bytes()
    cases = {name: (content, message) for name, content, message in _corruptions(_saved(path), raw)}
    content, message = cases[case]
    bad = _write(tmp_path, content)
    with pytest.raises(ValueError, match=re.escape(str(bad / "model.pt"))) as info:
        SemiClipped.load(bad, adata=paired[0].copy())
    assert message in str(info.value)
    assert "weights_only=False" not in str(info.value)


def test_load_path_errors(trained, paired, tmp_path):
    _, path = trained
    adata = paired[0].copy()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        SemiClipped.load(tmp_path / "nope", adata=adata)
    with pytest.raises(FileNotFoundError, match="has no model.pt"):
        SemiClipped.load(tmp_path, adata=adata)
    with pytest.raises(ValueError, match="is a file"):
        SemiClipped.load(path / "model.pt", adata=adata)
    with pytest.raises(TypeError, match="`adata`"):
        SemiClipped.load(path, adata=adata.obs)
    with pytest.raises(ValueError, match="accelerator"):
        SemiClipped.load(path, adata=adata, accelerator="quantum")
    with pytest.raises(TypeError, match="dir_path"):
        SemiClipped.load(3, adata=adata)


def test_a_model_saved_by_format_1_keeps_loading(tmp_path):
    """tests/data/semiclipped_v1 was saved by scsemiclip's first model format; it must load to the same output."""
    student, _ = adatas(inputs())
    directory = tmp_path / "v1"
    shutil.copytree(FIXTURE, directory)
    model = SemiClipped.load(directory, adata=student, accelerator="cpu")
    np.testing.assert_allclose(model.get_latent_representation(), np.load(FIXTURE / "latent.npy"), rtol=1e-5, atol=1e-6)
    assert _saved(FIXTURE)["format_version"] == 1


@pytest.fixture
def fresh(paired):
    """The paired data set up anew (the tests above load models onto ``paired``'s student)."""
    student, teacher = paired
    student = student.copy()
    SemiClipped.setup_anndata(student, student_rep="X_emb")
    return student, teacher


AUGMENTATION_CASES = [
    ({"augmentations": ["mwo"], "augmentation_kwargs": {"mwo": {"p": True}}}, TypeError, "`p`"),
    ({"augmentations": ["mwo"], "augmentation_kwargs": {"mwo": {"p": "0.5"}}}, TypeError, "`p`"),
    ({"augmentations": ["mwo"], "augmentation_kwargs": {"mwo": {"p": 1.5}}}, ValueError, "`p`"),
    ({"augmentations": ["mdwgan_gp"], "augmentation_kwargs": {"mdwgan_gp": {"hidden": 0}}}, ValueError, "`hidden`"),
    ({"augmentations": ["mdwgan_gp"], "augmentation_kwargs": {"mdwgan_gp": {"lr": -1}}}, ValueError, "`lr`"),
    (
        {"augmentations": ["mdwgan_gp"], "augmentation_kwargs": {"mdwgan_gp": {"noise_dim": -1}}},
        ValueError,
        "noise_dim",
    ),
    (
        {"augmentations": ["mdwgan_gp"], "augmentation_kwargs": {"mdwgan_gp": {"gp_weight": NAN}}},
        ValueError,
        "gp_weight",
    ),
    ({"objective_kwargs": {"gather_negatives": "no"}}, TypeError, "gather_negatives"),
    ({"objective_kwargs": {"symmetric": 1}}, TypeError, "symmetric"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "text"), AUGMENTATION_CASES, ids=[f"{c[2]}-{c[0]}" for c in AUGMENTATION_CASES]
)
def test_augmentation_and_objective_options_bad_argument(fresh, kwargs, error, text):
    student, teacher = fresh
    with pytest.raises(error, match=re.escape(text)) as info:
        SemiClipped(student, teacher, **{"hidden_dims": (8,), **kwargs})
    if "augmentation_kwargs" in kwargs:  # `lr` or `p` alone would be ambiguous: the augmentation is named
        assert f"Augmentation {kwargs['augmentations'][0]!r}" in str(info.value)


class _Narrow(Augmentation):
    """A custom augmentation returning one dimension too few."""

    name = "narrow"

    def __init__(self) -> None:
        super().__init__(p=0.5)

    def augment(self, x, minibatch, generator):
        return x[:, 1:]


class _Nameless(Augmentation):
    """A custom augmentation whose class has no name."""

    def __init__(self) -> None:
        super().__init__(p=0.5)

    def augment(self, x, minibatch, generator):
        return x


def test_custom_augmentation_of_the_wrong_width_is_named_before_training(fresh, capsys):
    student, teacher = fresh
    model = SemiClipped(student, teacher, hidden_dims=(8,), pea_bank_size=2, augmentations=[_Narrow()])
    with pytest.raises(
        ValueError, match=r"Augmentation 'narrow' returned \(8, 11\) for a minibatch of shape \(8, 12\)"
    ):
        model.train(1, batch_size=32, **FAST)
    assert not model.is_trained_
    assert "Exception raised during training" not in capsys.readouterr().out


def test_custom_augmentation_without_a_name(fresh):
    student, teacher = fresh
    with pytest.raises(ValueError, match="Augmentation _Nameless has no `name`"):
        SemiClipped(student, teacher, hidden_dims=(8,), augmentations=[_Nameless()])


def test_divergence_names_the_options_and_surfaces_cleanly(fresh, capsys):
    student, teacher = fresh
    model = SemiClipped(student, teacher, hidden_dims=(8,), pea_bank_size=2, pea=False)
    with pytest.raises(TrainingDivergedError, match=r"Lower the learning rate.*`objective_kwargs`, `augmentations`"):
        model.train(30, batch_size=32, plan_kwargs={"lr": 1e30, "optimizer": "sgd"}, **FAST)
    assert not model.is_trained_
    # raised by scsemiclip after Lightning returned: no "Exception raised during training. NameError" of scvi-tools
    assert "Exception raised during training" not in capsys.readouterr().out


def test_objective_built_directly_checks_its_temperature():
    from scsemiclip.module import OBJECTIVES

    for name in ("semiclipped", "clip"):
        with pytest.raises(ValueError, match="`temperature`"):
            OBJECTIVES[name](d_student=4, d_teacher=4, n_classes=2, temperature=NAN)
