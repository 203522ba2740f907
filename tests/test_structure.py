"""The public API follows API.md and scanpy's ``test_sig_conventions``: signatures, annotations and numpy docstrings.

Covered: every public function of ``pp`` / ``tl`` / ``pl`` / ``datasets`` (their ``__all__``), the public methods
that our model, module, objective and training classes define themselves (not the inherited ones) and the
parameters of their constructors. Annotations are compared as strings (the sources use
``from __future__ import annotations``), without module prefixes (``ad.AnnData`` is ``AnnData``).
"""

from __future__ import annotations

import importlib
import inspect
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from numpydoc.docscrape import NumpyDocString

SUBPACKAGES = ("pp", "tl", "pl", "datasets")
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _public_functions() -> Iterator[tuple[str, Callable]]:
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"scsemiclip.{sub}")
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                yield f"{sub}.{name}", obj


FUNCTIONS = dict(_public_functions())
#: API.md gives these functions a second positional argument (the other modality, the trained model).
TWO_POSITIONAL = {"tl.fit_semiclipped": "teacher", "tl.apply_semiclipped": "model"}


def _signature(name: str) -> inspect.Signature:
    return inspect.signature(FUNCTIONS[name], eval_str=False)


def _union_members(annotation: object) -> set[str]:
    """Top-level members of an annotation without module prefixes: ``"ad.AnnData | None"`` -> AnnData, None."""
    if annotation is inspect.Parameter.empty:
        return set()
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    members, depth, start = [], 0, 0
    for i, char in enumerate(text + "|"):
        depth += (char == "[") - (char == "]")
        if char == "|" and depth == 0:
            members.append(text[start:i].strip())
            start = i + 1
    return {head.rsplit(".", 1)[-1] + bracket + rest for head, bracket, rest in (m.partition("[") for m in members)}


# ---- signatures ------------------------------------------------------------------------------------------------


def test_api_has_the_contract_names():
    expected = {
        "pp.mark_controls",
        "pp.center",
        "pp.standardize",
        "pp.tvn",
        "pp.aggregate",
        "pp.pea_augment",
        "datasets.relationships",
    }
    assert expected <= set(FUNCTIONS)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_at_most_one_positional_parameter(name):
    params = list(_signature(name).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    allowed = 2 if name in TWO_POSITIONAL else 1
    assert len(positional) <= allowed, (
        f"{name}: only the data argument may be positional, got {[p.name for p in positional]}"
    )
    if name in TWO_POSITIONAL:
        assert positional[1].name == TWO_POSITIONAL[name], name
    assert not any(p.kind is p.VAR_POSITIONAL for p in params), name


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_randomness_is_rng_not_random_state(name):
    params = _signature(name).parameters
    assert "random_state" not in params and "seed" not in params, name


@pytest.mark.parametrize("name", sorted(n for n in FUNCTIONS if next(iter(_signature(n).parameters), "") == "adata"))
def test_adata_is_annotated_anndata(name):
    adata = next(iter(_signature(name).parameters.values()))
    assert "AnnData" in _union_members(adata.annotation), f"{name}: `adata` is annotated {adata.annotation!r}"


@pytest.mark.parametrize("name", sorted(n for n in FUNCTIONS if "copy" in _signature(n).parameters))
def test_copy_is_keyword_only_false_and_returns_anndata_or_none(name):
    signature = _signature(name)
    copy = signature.parameters["copy"]
    assert copy.kind is copy.KEYWORD_ONLY, f"{name}: `copy` must be keyword-only"
    assert copy.default is False, f"{name}: `copy` defaults to {copy.default!r}"
    assert _union_members(signature.return_annotation) == {"AnnData", "None"}, (
        f"{name}: a function with `copy` returns `AnnData | None`, annotated {signature.return_annotation!r}"
    )


@pytest.mark.parametrize("name", sorted(n for n in FUNCTIONS if n.startswith("pl.")))
def test_plots_take_ax_and_return_axes_or_figure(name):
    signature = _signature(name)
    ax = signature.parameters.get("ax")
    assert ax is not None, f"{name}: plots take `ax`"
    assert ax.kind is ax.KEYWORD_ONLY and ax.default is None, f"{name}: `ax` is keyword-only and defaults to None"
    assert _union_members(ax.annotation) == {"Axes", "None"}, f"{name}: `ax` is annotated {ax.annotation!r}"
    returned = _union_members(signature.return_annotation)
    assert returned and returned <= {"Axes", "Figure"}, f"{name} returns {signature.return_annotation!r}"
    returns_text = " ".join(" ".join([p.name, p.type, *p.desc]) for p in _parse(FUNCTIONS[name].__doc__)[0]["Returns"])
    assert all(member in returns_text for member in returned), f"{name}: the Returns section does not name {returned}"


# ---- numpy docstrings ------------------------------------------------------------------------------------------


class Documented(NamedTuple):
    """What :func:`test_numpydoc` checks of one object."""

    doc: str | None
    params: list[inspect.Parameter]
    needs_returns: bool


def _own_members(cls: type) -> Iterator[tuple[str, Documented]]:
    """The constructor and the public methods that ``cls`` defines itself (inherited ones are tested in their class)."""
    if "__init__" in vars(cls):
        yield "", Documented(cls.__doc__, list(inspect.signature(cls.__init__).parameters.values())[1:], False)
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, classmethod | staticmethod):
            func, params = attr.__func__, list(inspect.signature(getattr(cls, name)).parameters.values())
        elif inspect.isfunction(attr):
            func, params = attr, list(inspect.signature(attr).parameters.values())[1:]
        else:
            continue
        if not func.__module__.startswith("scsemiclip"):
            continue  # an alias of a third-party function (e.g. Lightning's no-op ``validation_step``): not ours
        returns = inspect.signature(func, eval_str=False).return_annotation
        # an override without a docstring shows (in Sphinx too) the one it overrides
        doc = func.__doc__ or inspect.getdoc(getattr(cls, name))
        yield f".{name}", Documented(doc, params, returns not in ("None", None))


def _classes() -> Iterator[tuple[str, type]]:
    model = importlib.import_module("scsemiclip.model")
    module = importlib.import_module("scsemiclip.module")
    train = importlib.import_module("scsemiclip.train")
    yield "model.SemiClipped", model.SemiClipped
    yield "module.SemiClippedModule", module.SemiClippedModule
    for objective in {module.Objective, module.ContrastiveObjective, *module.OBJECTIVES.values()}:
        yield f"module.{objective.__name__}", objective
    for augmentation in {module.Augmentation, *module.AUGMENTATIONS.values()}:
        yield f"module.{augmentation.__name__}", augmentation
    yield "train.SemiClippedTrainingPlan", train.SemiClippedTrainingPlan
    yield "train.DeviceDataSplitter", train.DeviceDataSplitter


DOCUMENTED = {
    **{
        name: Documented(func.__doc__, list(_signature(name).parameters.values()), True)
        for name, func in FUNCTIONS.items()
    },
    **{f"{prefix}{member}": doc for prefix, cls in _classes() for member, doc in _own_members(cls)},
}


def _parse(doc: str | None) -> tuple[NumpyDocString, list[str]]:
    """The parsed docstring and numpydoc's complaints (unknown sections, bad underlines) as problems."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = NumpyDocString(inspect.cleandoc(doc or ""))
    return parsed, [f"numpydoc: {w.message}" for w in caught]


def _doc_problems(target: Documented) -> list[str]:
    if not (target.doc or "").strip():
        return ["no docstring"]
    parsed, problems = _parse(target.doc)
    entries = parsed["Parameters"] + parsed["Other Parameters"]
    documented = [n.strip().lstrip("*") for p in entries for n in p.name.split(",")]
    expected = [p.name for p in target.params]
    if documented != expected:
        problems.append(f"documented parameters {documented} != signature {expected}")
    problems += [f"parameter {p.name!r} has no description" for p in entries if not "".join(p.desc).strip()]
    returns = parsed["Returns"] + parsed["Yields"]
    if target.needs_returns and not any((p.name + p.type + "".join(p.desc)).strip() for p in returns):
        problems.append("no Returns section")
    return problems


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_numpydoc(name):
    """Parameters documented in signature order, each with a description, and a non-empty Returns section."""
    problems = _doc_problems(DOCUMENTED[name])
    assert not problems, f"{name}: " + "; ".join(problems)


# ---- project layout --------------------------------------------------------------------------------------------


def test_dependency_groups_mirror_the_extras():
    """CI installs the ``test`` / ``doc`` extras, ``pip install --group`` the PEP 735 groups: they stay equal."""
    pyproject = tomllib.loads(PYPROJECT.read_text())
    extras, groups = pyproject["project"]["optional-dependencies"], pyproject["dependency-groups"]
    for name in ("test", "doc"):
        assert sorted(groups[name]) == sorted(extras[name]), name
        assert {"include-group": name} in groups["dev"]
