"""The public API follows the conventions of API.md: ``adata`` first and alone positional, the rest keyword-only."""

from __future__ import annotations

import inspect

import pytest

import scsemiclip as ssc

SUBPACKAGES = ("pp", "tl", "pl", "datasets")


def _public_functions():
    for sub in SUBPACKAGES:
        module = getattr(ssc, sub, None)
        if module is None:
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                yield f"{sub}.{name}", obj


FUNCTIONS = dict(_public_functions())
#: API.md gives these functions a second positional argument (the other modality, the trained model).
TWO_POSITIONAL = {"tl.fit_semiclipped": "teacher", "tl.apply_semiclipped": "model"}


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
    params = list(inspect.signature(FUNCTIONS[name]).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    allowed = 2 if name in TWO_POSITIONAL else 1
    assert len(positional) <= allowed, (
        f"{name}: only the data argument may be positional, got {[p.name for p in positional]}"
    )
    if name in TWO_POSITIONAL:
        assert positional[1].name == TWO_POSITIONAL[name], name
    assert not any(p.kind is p.VAR_POSITIONAL for p in params), name


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_docstring_has_parameters_and_returns(name):
    doc = inspect.getdoc(FUNCTIONS[name]) or ""
    params = [p for p in inspect.signature(FUNCTIONS[name]).parameters if p not in ("kwargs", "train_kwargs")]
    if params:
        assert "Parameters\n----------" in doc, name
        for p in params:
            assert p in doc, f"{name}: parameter {p!r} is not documented"
    assert "Returns\n-------" in doc, name


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_randomness_is_rng_not_random_state(name):
    params = inspect.signature(FUNCTIONS[name]).parameters
    assert "random_state" not in params and "seed" not in params, name
