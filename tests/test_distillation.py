"""tl.distillation_gain: the student against the distilled map on held-out perturbations, with a bootstrap interval."""

from __future__ import annotations

import itertools

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scsemiclip as ssc

N_COMPLEXES, COMPLEX_SIZE, N_REPLICATES, N_CONTROLS, DIM = 12, 5, 3, 12, 8
GENES = [f"G{i}" for i in range(N_COMPLEXES * COMPLEX_SIZE)]
#: Known relationships: every pair within a complex of 5 genes (120 pairs over 60 genes).
PAIRS = pd.DataFrame(
    [
        (GENES[c * COMPLEX_SIZE + i], GENES[c * COMPLEX_SIZE + j])
        for c in range(N_COMPLEXES)
        for i, j in itertools.combinations(range(COMPLEX_SIZE), 2)
    ],
    columns=["entity1", "entity2"],
)
SOURCES = {"complexes": PAIRS}


def _screen(rng: np.random.Generator, *, signal: float = 0.0) -> ad.AnnData:
    """Replicates of 60 genes in 2 batches plus controls; ``X_noise`` has no structure, ``X_signal`` has complexes."""
    labels = np.repeat(GENES, N_REPLICATES).tolist() + ["ctrl"] * (2 * N_CONTROLS)
    n = len(labels)
    obs = pd.DataFrame(
        {
            "perturbation": labels,
            "batch": (["b0", "b1"] * n)[:n],
            "is_control": [lab == "ctrl" for lab in labels],
        },
        index=[f"r{i}" for i in range(n)],
    )
    adata = ad.AnnData(obs=obs)
    centers = rng.normal(size=(N_COMPLEXES, DIM))
    complex_of = {g: i // COMPLEX_SIZE for i, g in enumerate(GENES)}
    structured = np.array([centers[complex_of[g]] if g in complex_of else np.zeros(DIM) for g in labels])
    adata.obsm["X_noise"] = rng.normal(size=(n, DIM))
    adata.obsm["X_other_noise"] = rng.normal(size=(n, DIM))
    adata.obsm["X_signal"] = signal * structured + rng.normal(size=(n, DIM))
    return adata


def _gain(adata, teacher=None, *, student="X_noise", distilled="X_other_noise", **kwargs):
    kwargs = {"sources": SOURCES, "n_bootstrap": 200, **kwargs}
    return ssc.tl.distillation_gain(adata, teacher=teacher, student_rep=student, distilled_rep=distilled, **kwargs)


def test_a_map_with_signal_is_said_to_help_and_the_reverse_to_hurt():
    adata = _screen(np.random.default_rng(0), signal=1.5)
    result = _gain(adata, distilled="X_signal")
    assert result["criterion"] == "recall"
    assert result["verdict"] == "helped"
    assert result["ci_low"] > 0
    assert result["distilled"] > 0.5 > 0.25 > result["student"]
    assert result["n_perturbations"] == len(GENES) and result["n_pairs"] == len(PAIRS)
    assert result["message"].startswith("Distillation helped: recall")
    assert "over 60 held-out genes" in result["message"]
    # the point estimate is the recall of the held-out map, as tl.known_relationship_recall computes it
    work = adata.copy()
    ssc.pp.tvn(work, use_rep="X_signal", key_added="t")
    reference = ssc.tl.known_relationship_recall(work, use_rep="t", sources=SOURCES)
    assert result["distilled"] == pytest.approx(reference.loc["mean", "recall"])
    stored = adata.uns["distillation_gain"]
    assert stored["result"]["verdict"] == "helped" and stored["params"]["perturbations"].startswith("all")
    assert _gain(adata, student="X_signal", distilled="X_noise")["verdict"] == "hurt"


def test_noise_against_noise_rarely_claims_help():
    """Pure-noise null: two maps without signal. The 95 % interval covers 0 in >= 90 % of repeats (stated rate 5 %,
    2.5 % per side) and 'helped' is claimed in <= 10 %."""
    covers, helped = [], []
    for seed in range(30):
        result = _gain(_screen(np.random.default_rng(100 + seed)), rng=seed)
        covers.append(result["ci_low"] <= 0 <= result["ci_high"])
        helped.append(result["verdict"] == "helped")
    assert np.mean(covers) >= 0.9
    assert np.mean(helped) <= 0.1


def test_label_shuffled_map_does_not_help():
    """A map with signal whose labels were shuffled has none left: it is not said to help over noise."""
    claims = []
    for seed in range(12):
        rng = np.random.default_rng(200 + seed)
        adata = _screen(rng, signal=1.5)
        genes = ~adata.obs["is_control"].to_numpy()
        shuffled = adata.obsm["X_signal"].copy()
        shuffled[genes] = shuffled[genes][rng.permutation(genes.sum())]
        adata.obsm["X_shuffled"] = shuffled
        claims.append(_gain(adata, distilled="X_shuffled", rng=seed)["verdict"] == "helped")
    assert np.mean(claims) <= 0.1


def test_same_seed_same_result_and_inputs_unchanged():
    adata = _screen(np.random.default_rng(3), signal=0.5)
    adata.obs["held"] = True  # every row (controls included): the controls are left out, the column is not touched
    before = {k: v.copy() for k, v in adata.obsm.items()}
    obs = adata.obs.copy()
    first = _gain(adata, distilled="X_signal", rng=7)
    second = _gain(adata, distilled="X_signal", rng=7, perturbations="held")
    pd.testing.assert_series_equal(first, second)
    for key, value in before.items():
        np.testing.assert_array_equal(adata.obsm[key], value)
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert set(adata.uns) == {"distillation_gain"}


def test_held_out_keys_recorded_by_a_fit_are_the_default():
    adata = _screen(np.random.default_rng(4), signal=1.5)
    held = GENES[:40]
    adata.uns["X_signal"] = {"params": {"pair_keys": ["perturbation"]}, "validation_keys": [[g] for g in held]}
    result = _gain(adata, distilled="X_signal")
    assert result["n_perturbations"] == 40
    assert adata.uns["distillation_gain"]["params"]["perturbations"] == "uns['X_signal']['validation_keys']"
    explicit = _gain(adata, distilled="X_signal", perturbations=held)
    mask = _gain(adata, distilled="X_signal", perturbations=adata.obs["perturbation"].isin(held).to_numpy())
    for other in (explicit, mask):
        assert other["distilled"] == result["distilled"] and other["student"] == result["student"]
    # a map fitted on this data without a validation split saw every perturbation: no silent optimistic default
    adata.uns["X_signal"] = {"params": {"pair_keys": ["perturbation"]}, "pair_counts": {"n_keys_paired": 60}}
    with pytest.raises(ValueError, match="every perturbation was seen in training"):
        _gain(adata, distilled="X_signal")
    with pytest.raises(ValueError, match="not in obs"):
        _gain(adata, distilled="X_signal", perturbations=["G1", "NOPE"])


def test_teacher_agreement_when_the_perturbations_are_not_genes():
    rng = np.random.default_rng(5)
    adata = _screen(rng, signal=1.5)
    adata.obs["perturbation"] = adata.obs["perturbation"].str.replace("G", "compound-")  # not in the databases
    teacher = adata.copy()
    teacher.obsm["X_phenom"] = teacher.obsm["X_signal"] @ rng.normal(size=(DIM, 12)) + 0.3 * rng.normal(
        size=(teacher.n_obs, 12)
    )
    verdict = _gain(adata, teacher, distilled="X_signal")
    assert verdict["criterion"] == "teacher_agreement"
    assert verdict["verdict"] == "helped"
    assert "teacher agreement" in verdict["message"]
    nulls = [_gain(adata, teacher, rng=seed)["verdict"] for seed in range(3)]
    assert "helped" not in nulls
    unknown = _gain(adata, distilled="X_signal")
    assert unknown["verdict"] == "cannot tell" and np.isnan(unknown["difference"])
    assert unknown["message"].startswith("Cannot tell whether distillation helped")
    with pytest.raises(ValueError, match="criterion='recall'"):
        _gain(adata, distilled="X_signal", criterion="recall")
    with pytest.raises(ValueError, match="needs `teacher`"):
        _gain(adata, distilled="X_signal", criterion="teacher_agreement")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"criterion": "best"}, "criterion"),
        ({"n_bootstrap": 2}, "n_bootstrap"),
        ({"confidence": 1.0}, "confidence"),
        ({"distilled": "X_noise"}, "same map"),
        ({"perturbations": "batch"}, "not boolean"),
        ({"perturbations": np.ones(3, dtype=bool)}, "one value per row"),
        ({"perturbations": "none_held"}, "No held-out"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    adata = _screen(np.random.default_rng(6))
    adata.obs["none_held"] = False
    with pytest.raises((ValueError, TypeError), match=match):
        _gain(adata, **kwargs)


def test_a_fit_with_a_validation_split_is_scored_on_its_held_out_keys():
    """End to end: the held-out keys fit_semiclipped records are the default perturbations (compounds: teacher
    agreement), and only they are scored."""
    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=30, n_doses=1, n_replicates=2, n_batches=2, n_controls=6, n_genes=60, n_ood_genes=25, rng=2
    )
    student, teacher = data["student"], data["teacher"]
    ssc.tl.fit_semiclipped(
        student,
        teacher,
        student_rep="X_emb",
        teacher_rep="X_phenom",
        pair_keys=("perturbation", "dose"),
        recipe="base",
        max_epochs=2,
        batch_size=16,
        hidden_dims=(16,),
        accelerator="cpu",
        train_size=0.6,
        validation_size=0.4,
    )
    held = student.uns["X_semiclipped"]["validation_keys"]
    result = ssc.tl.distillation_gain(student, teacher=teacher, student_rep="X_emb", n_bootstrap=50)
    assert result["criterion"] == "teacher_agreement"
    assert result["n_perturbations"] == len(held) >= 10
    assert result["verdict"] in ("helped", "did not help", "hurt")
