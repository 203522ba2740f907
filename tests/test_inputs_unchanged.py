"""Every public function of pp, tl and pl leaves its inputs as they were, but for the documented keys it writes.

Each input (AnnData, DataFrame, mapping) is hashed component by component (``X``, every ``obs`` / ``var`` column,
every ``obsm`` / ``layers`` / ``uns`` entry, ...) before and after the call: no existing component may change, and
new components are only ``obsm[key_added]`` / ``uns[key_added]`` (``obs[key_added]`` for ``pp.mark_controls``).
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import make_embedding_adata
from scipy import sparse

import scsemiclip as ssc

FAST = {"enable_progress_bar": False, "enable_model_summary": False}
TINY_FIT = {"student_rep": "X_emb", "hidden_dims": (8,), "pea_bank_size": 2, "batch_size": 32, **FAST}

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def _digest(value: object) -> str:
    h = hashlib.sha256()
    if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
        h.update(pickle.dumps(value))
    elif sparse.issparse(value):
        h.update(pickle.dumps(value.tocsr()))
    elif isinstance(value, np.ndarray):
        h.update(str((value.dtype, value.shape)).encode())
        h.update(np.ascontiguousarray(value).tobytes() if value.dtype != object else pickle.dumps(value))
    elif isinstance(value, Mapping):
        for k in sorted(value, key=str):
            h.update(str(k).encode() + _digest(value[k]).encode())
    else:
        h.update(pickle.dumps(value))
    return h.hexdigest()


def components(obj: object) -> dict[str, str]:
    """Hash of every component of an input."""
    if isinstance(obj, ad.AnnData):
        out = {"X": _digest(obj.X), "obs_names": _digest(obj.obs_names), "var_names": _digest(obj.var_names)}
        for attr in ("obs", "var"):
            out |= {f"{attr}/{c}": _digest(getattr(obj, attr)[c]) for c in getattr(obj, attr).columns}
        for attr in ("obsm", "varm", "layers", "obsp", "uns"):
            out |= {f"{attr}/{k}": _digest(v) for k, v in getattr(obj, attr).items()}
        return out
    if isinstance(obj, Mapping):
        return {f"[{k}]/{c}": h for k, v in obj.items() for c, h in components(v).items()}
    return {"": _digest(obj)}


@pytest.fixture(scope="module")
def world():
    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=20,
        n_doses=1,
        n_replicates=2,
        n_batches=2,
        n_controls=6,
        n_genes=60,
        n_ood_genes=24,
        n_ood_replicates=5,
        rng=0,
    )
    student, teacher, ood = data["student"], data["teacher"], data["ood"]
    for a in (student, ood):
        a.obsm["X_rand"] = np.random.default_rng(1).normal(size=a.obsm["X_emb"].shape)
    genes = sorted(set(ood.obs["perturbation"]) - {"non-targeting"})
    pairs = pd.DataFrame({"entity1": genes[:-1:2], "entity2": genes[1::2]})
    sets = {"set_a": genes[:8], "set_b": genes[8:16], "set_c": genes[4:20]}
    model = ssc.tl.fit_semiclipped(student.copy(), teacher, max_epochs=1, **TINY_FIT)
    evaluated = ood.copy()
    toy = {"toy": pairs}
    ssc.tl.known_relationship_recall(evaluated, use_rep="X_emb", sources=toy)
    ssc.tl.known_relationship_recall_curve(evaluated, use_rep="X_emb", sources=toy)
    ssc.tl.known_relationship_recall_curve(evaluated, use_rep="X_rand", sources=toy, key_added="curve_rand")
    for rep in ("X_emb", "X_rand"):
        ssc.tl.retrieved_relationships(evaluated, use_rep=rep, sources=toy, key_added=f"retrieved_{rep}")
    ssc.tl.relationship_enrichment(
        evaluated, include="X_emb", exclude="X_rand", gene_sets=sets, sources=toy, min_size=1, background="map"
    )
    ssc.tl.evaluate_map(evaluated, use_reps=["X_emb", "X_rand"], metrics=["recall"], sources=toy)
    bench = pd.DataFrame(
        {
            "method": ["semiclipped"] * 4,
            "pea": [False, False, True, True],
            "seed": [0, 1, 0, 1],
            "dataset": ["ood"] * 4,
            "recall_mean": [0.1, 0.12, 0.2, 0.22],
            "interpretability": [50.0, 52.0, 60.0, 61.0],
        }
    )
    # a screen with controls enough for the calibration check (10 pseudo-perturbations, 4 controls kept per batch)
    labels = np.r_[np.repeat([f"G{i}" for i in range(20)], 4), ["NTC"] * 80]
    screen = ad.AnnData(
        obs=pd.DataFrame(
            {"perturbation": labels, "batch": np.arange(labels.size) % 2, "is_control": labels == "NTC"},
            index=[f"s{i}" for i in range(labels.size)],
        )
    )
    screen.obsm["X_emb"] = np.random.default_rng(2).normal(size=(labels.size, 6))
    return {
        "screen": screen,
        "student": student,
        "teacher": teacher,
        "ood": ood,
        "pairs": pairs,
        "sets": sets,
        "model": model,
        "evaluated": evaluated,
        "bench": bench,
    }


def _first(name: str, w: dict) -> object:
    if name in ("tl.fit_semiclipped", "tl.benchmark"):
        return w["student"]
    if name in ("tl.benchmark_summary", "pl.benchmark"):
        return w["bench"]
    if name == "pl.training_history":
        return w["model"]
    if name == "tl.calibration_check":
        return w["screen"]
    return w["evaluated"] if name.startswith("pl.") else w["ood"]


def _kwargs(name: str, func, w: dict) -> dict:
    """Arguments by parameter name (required ones, plus the settings that keep every call small)."""
    toy = {"toy": w["pairs"]}
    pool = {
        "use_rep": "X_emb",
        "use_reps": ["X_emb", "X_rand"],
        "sources": toy,
        "teacher": w["teacher"],
        "include": "X_emb",
        "exclude": "X_rand",
        "gene_sets": w["sets"],
        "min_size": 1,
        "ood_sets": {"ood": w["ood"]},
        "model": w["model"],
        "perturbation_key": "perturbation",
        "control_values": "non-targeting",
        "max_epochs": 1,
        "interpretability": False,
        "null_size": 100,
        "signal_null_size": 100,
        "bank_size": 2,
    }
    overrides = {
        "tl.fit_semiclipped": TINY_FIT,
        "tl.benchmark": {
            "seeds": (0,),
            "pea": (False,),
            "baselines": ("unimodal",),
            "student_rep": "X_emb",
            "method_kwargs": {"semiclipped": {"hidden_dims": (8,), "pea_bank_size": 2, "batch_size": 32, **FAST}},
        },
        "tl.evaluate_map": {"metrics": ["recall", "phenotypic_activity"]},
        "tl.perturbation_magnitude": {"min_replicates": 2},
        "tl.distillation_gain": {"student_rep": "X_rand", "distilled_rep": "X_emb", "n_bootstrap": 50},
        "tl.interpretability_preservation": {"max_epochs": 1, "batch_size": 64, "min_steps": 1},
        "tl.interpretability_preservation_split": {
            "test": w["ood"].copy(),
            "max_epochs": 1,
            "batch_size": 64,
            "min_steps": 1,
        },
        "pl.recall": {},
        "pl.relationship_venn": {"use_reps": ["X_emb", "X_rand"], "keys": None},
        "pl.recall_thresholds": {"use_reps": None, "keys": ["known_relationship_recall_curve", "curve_rand"]},
        "pl.relationship_enrichment": {},
        "pl.evaluation_summary": {},
        "pl.benchmark": {},
    }
    params = inspect.signature(func).parameters
    chosen = {k: v for k, v in pool.items() if k in params and (name.startswith("tl.") or name.startswith("pp."))}
    if name == "pl.relationship_venn":
        chosen = {}
    if "key_added" in params:
        chosen["key_added"] = f"K_{name.split('.')[1]}"
    return {**chosen, **overrides.get(name, {})}


#: Writes of functions without ``key_added`` (or beyond it), as their docstrings list them.
DOCUMENTED_WRITES = {
    "tl.fit_semiclipped": {"obsm/X_semiclipped", "uns/X_semiclipped"},
    "tl.evaluate_representations": {f"{attr}/{rep}_tvn_eval" for attr in ("obsm", "uns") for rep in ("X_emb", "X_rand")}
    | {"uns/recall_X_emb", "uns/recall_X_rand", "uns/interpretability_preservation"},
}

#: The public functions (constants such as ``tl.RANDOM_LEVELS`` have no inputs).
PUBLIC = [
    f"{sub}.{n}"
    for sub in ("pp", "tl", "pl")
    for n in getattr(ssc, sub).__all__
    if callable(getattr(getattr(ssc, sub), n))
]


@pytest.mark.parametrize("name", PUBLIC)
def test_inputs_are_unchanged_but_for_the_documented_keys(world, name):
    func = getattr(getattr(ssc, name.split(".")[0]), name.split(".")[1])
    kwargs = _kwargs(name, func, world)
    if name == "pl.relationship_venn":
        kwargs = {"keys": ["retrieved_X_emb", "retrieved_X_rand"]}
    _check_unchanged(name, func, _first(name, world), kwargs)


def _variants(w: dict, gmt: str) -> dict[str, tuple[str, dict]]:
    """Calls of the evaluation functions with the options their default calls above leave out."""
    genes = sorted(set(w["ood"].obs["perturbation"]) - {"non-targeting"})
    modules = {g: [f"m{i % 4}", None] for i, g in enumerate(genes)}  # a missing label among them
    small = {"null_size": 100, "key_added": "K_variant"}
    signal = {"use_rep": "X_emb", "null_perturbations": genes[:4], "signal_null_size": 100, **small}
    return {
        "consistency-mapping": ("tl.phenotypic_consistency", {"use_rep": "X_emb", "annotations": modules, **small}),
        "consistency-gmt": ("tl.phenotypic_consistency", {"use_rep": "X_emb", "annotations": Path(gmt), **small}),
        "perturbation_consistency-null": ("tl.perturbation_consistency", {**signal, "max_controls": 4}),
        "magnitude-null": ("tl.perturbation_magnitude", {**signal, "min_replicates": 2}),
        "enrichment-gmt": (
            "tl.relationship_enrichment",
            {"include": "X_emb", "gene_sets": gmt, "sources": {"toy": w["pairs"]}, "min_size": 1, **small},
        ),
        "evaluate-all": (
            "tl.evaluate_map",
            {
                "use_reps": ["X_emb", "X_rand"],
                "metrics": None,
                "sources": {"toy": w["pairs"]},
                "annotations": modules,
                "interpretability_kwargs": {"max_epochs": 1, "batch_size": 64, "min_steps": 1},
                "signal_null_size": 100,
                **small,
            },
        ),
        "calibration-options": (  # on a screen with enough controls per batch for pseudo-perturbations
            "tl.calibration_check",
            {"use_rep": "X_emb", "profile_correction": "tvn", "n_pseudo": 10, "warn": False, **small},
        ),
        "interpretability-options": (
            "tl.interpretability_preservation",
            {"use_rep": "X_emb", "max_epochs": 1, "min_steps": 1, "train_fraction": 0.5, "warmup_fraction": 0, **small},
        ),
    }


VARIANTS = [
    "consistency-mapping",
    "consistency-gmt",
    "perturbation_consistency-null",
    "magnitude-null",
    "enrichment-gmt",
    "evaluate-all",
    "calibration-options",
    "interpretability-options",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_evaluation_options_leave_inputs_unchanged(world, tmp_path, variant):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("".join(f"{k}\tdescription\t" + "\t".join(v) + "\n" for k, v in world["sets"].items()))
    name, kwargs = _variants(world, str(gmt))[variant]
    func = getattr(ssc.tl, name.split(".")[1])
    signature = inspect.signature(func).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in signature}  # signal_null_size: only where it is an option
    first = (
        make_embedding_adata(n_obs=600, n_perts=60, control_fraction=0.5)
        if variant == "calibration-options"
        else world["ood"]
    )
    _check_unchanged(name, func, first.copy(), kwargs)


def _check_unchanged(name: str, func, first: object, kwargs: dict) -> None:
    """Call ``func(first, **kwargs)``; no input may change but for the documented keys it writes."""
    inputs = {"first": first, **{k: v for k, v in kwargs.items() if isinstance(v, ad.AnnData | pd.DataFrame | Mapping)}}
    before = {k: components(v) for k, v in inputs.items() if not isinstance(v, ssc.model.SemiClipped)}
    func(first, **kwargs)
    plt.close("all")
    key = kwargs.get("key_added")
    allowed = {f"obsm/{key}", f"uns/{key}", f"obs/{key}"} if key else set()
    allowed |= DOCUMENTED_WRITES.get(name, set())
    for arg, hashes in before.items():
        after = components(inputs[arg])
        changed = {c for c in hashes if after.get(c) != hashes[c]}
        added = set(after) - set(hashes)
        assert not changed, f"{name} modified {arg}: {sorted(changed)}"
        assert added <= (allowed if arg == "first" else set()), f"{name} added {sorted(added - allowed)} to {arg}"


def test_model_methods_leave_their_data_unchanged(world, tmp_path):
    model = world["model"]
    ood = world["ood"].copy()
    before = components(ood)
    model.get_latent_representation(ood)
    assert components(ood) == before
    model.save(tmp_path / "m")
    loaded = ssc.model.SemiClipped.load(tmp_path / "m", adata=ood)
    after = components(ood)
    # load sets the data up with scvi-tools (its documented uns entries); nothing else changes
    assert {c for c in after if after[c] != before.get(c)} == {"uns/_scvi_uuid", "uns/_scvi_manager_uuid"}
    np.testing.assert_allclose(loaded.get_latent_representation(ood), model.get_latent_representation(ood), rtol=1e-6)
