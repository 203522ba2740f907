"""Write ``tests/data/semiclipped_v1``: a tiny model saved by scsemiclip's format 1, its input and its output.

Run once (``python tests/data/make_model_fixture.py``) when the fixture is first made; never to "fix" a failing
load test: the point of the fixture is that files saved by older versions keep loading to the same output.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import scsemiclip as ssc

HERE = Path(__file__).resolve().parent / "semiclipped_v1"


def inputs() -> dict[str, np.ndarray]:
    """Student and teacher embeddings and ``obs`` columns (2 batches, 3 controls each, 6 perturbations)."""
    rng = np.random.default_rng(0)
    pert = np.tile(np.r_[np.repeat([f"G{i}" for i in range(6)], 2), ["NTC"] * 3], 2)
    batch = np.repeat(["b0", "b1"], pert.size // 2)
    return {
        "x": rng.normal(size=(pert.size, 4)),
        "z": rng.normal(size=(pert.size, 3)),
        "perturbation": pert,
        "batch": batch,
        "is_control": pert == "NTC",
    }


def adatas(arrays: dict[str, np.ndarray]) -> tuple[ad.AnnData, ad.AnnData]:
    """The student (``obsm["X_emb"]``) and teacher (``obsm["X_phenom"]``) AnnData of :func:`inputs`."""
    obs = pd.DataFrame({k: arrays[k] for k in ("perturbation", "batch", "is_control")})
    obs.index = [f"r{i}" for i in range(len(obs))]
    student, teacher = ad.AnnData(obs=obs.copy()), ad.AnnData(obs=obs.copy())
    student.obsm["X_emb"] = arrays["x"]
    teacher.obsm["X_phenom"] = arrays["z"]
    return student, teacher


def main() -> None:
    arrays = inputs()
    student, teacher = adatas(arrays)
    model = ssc.tl.fit_semiclipped(
        student,
        teacher,
        student_rep="X_emb",
        hidden_dims=(4,),
        pea_bank_size=2,
        max_epochs=1,
        batch_size=8,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model.save(HERE, overwrite=True)
    np.save(HERE / "latent.npy", student.obsm["X_semiclipped"])


if __name__ == "__main__":
    main()
