"""Cost of the input validation (issue 10): argument checks against a small fit, canonical keys against before.

Usage: ``python benchmarks/bench_validation.py [--quick] [--n-obs 200000]``. Prints

- the time of the ~40 argument checks one ``tl.fit_semiclipped`` call runs (its own, the model's and the training
  plan's), the time of a small fit (1 epoch) and their ratio (target: below 1 %);
- ``canonical_keys`` (the one key form of pairing and aggregation) against the per-column canonicalisation it
  replaced (kept below as the reference), on string, categorical and float label columns, and their ratio.
"""

from __future__ import annotations

import argparse
import time
import timeit

import numpy as np
import pandas as pd

import scsemiclip as ssc
from scsemiclip._keys import canonical_keys
from scsemiclip._validate import check_choices, check_flag, check_int, check_key, check_real


def boundary_checks() -> None:
    """The checks of one ``fit_semiclipped`` call with its defaults (tl, model and plan)."""
    for name in ("student_rep", "teacher_rep", "key_added", "student_mod", "teacher_mod", "objective", "optimizer"):
        check_key("x", name=name)
    for name in ("batch_key", "control_key", "teacher_batch_key", "teacher_control_key"):
        check_key(None, name=name, none_ok=True)
    for name, value in (("max_epochs", 150), ("batch_size", 1024), ("pea_bank_size", 16), ("hidden_dims", 512)):
        check_int(value, name=name, minimum=1)
    for name in ("lr", "temperature", "eps"):
        check_real(0.1, name=name, low=0, low_open=True)
    for name in ("p_drop", "min_control_fraction", "coral_reg", "weight_decay", "momentum", "lr_min"):
        check_real(0.5, name=name, low=0, high=1)
    for name, value in (("teacher_tvn", True), ("pea", True)):
        check_flag(value, name=name)
    check_flag(None, name="inference_tvn", none_ok=True)
    check_choices(("center", "standardize", "tvn"), name="pea_transforms", choices=("center", "standardize", "tvn"))


def previous_keys(column: pd.Series) -> np.ndarray:
    """The canonicalisation before issue 10 (per column, 7 significant digits), as the reference."""
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    values = np.asarray(uniques, dtype=object)
    texts = [str(v) for v in values]
    if not any(isinstance(v, bool | np.bool_) for v in values):
        try:
            numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="raise").astype(float)
            texts = [f"{v:.7g}" for v in numbers]
        except (ValueError, TypeError):
            pass
    return np.array([*texts, ""], dtype=object)[codes]


def small_fit_seconds() -> float:
    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=40, n_doses=1, n_replicates=2, n_batches=2, n_controls=8, n_genes=80, n_ood_genes=20, rng=0
    )
    start = time.perf_counter()
    ssc.tl.fit_semiclipped(
        data["student"],
        data["teacher"],
        student_rep="X_emb",
        max_epochs=1,
        batch_size=64,
        hidden_dims=(64,),
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats")
    parser.add_argument("--n-obs", type=int, default=200_000, help="rows of the label columns (default: 200000)")
    args = parser.parse_args()
    n_obs, repeats = (20_000, 3) if args.quick else (args.n_obs, 5)

    checks = min(timeit.repeat(boundary_checks, number=1000, repeat=repeats)) / 1000
    small_fit_seconds()  # warm-up: imports, first Lightning run
    fit = min(small_fit_seconds() for _ in range(2 if args.quick else 3))
    print(
        f"argument checks of one fit: {checks * 1e6:.1f} us; small fit (1 epoch): {fit:.2f} s; "
        f"ratio {checks / fit * 100:.4f} % (target < 1 %)"
    )

    rng = np.random.default_rng(0)
    genes = np.array([f"G{i}" for i in range(2000)])
    columns = {
        "string labels": pd.Series(genes[rng.integers(0, 2000, n_obs)]),
        "categorical labels": pd.Series(pd.Categorical(genes[rng.integers(0, 2000, n_obs)])),
        "float doses": pd.Series(rng.choice([0.1, 1.0, 10.0], n_obs)),
        "8-digit integer IDs": pd.Series(rng.integers(10_000_000, 10_002_000, n_obs)),
    }
    for label, column in columns.items():
        ours = min(timeit.repeat(lambda c=column: canonical_keys(c), number=3, repeat=repeats)) / 3
        ref = min(timeit.repeat(lambda c=column: previous_keys(c), number=3, repeat=repeats)) / 3
        print(
            f"{n_obs} rows, {label}: canonical_keys {ours * 1e3:.1f} ms, previous {ref * 1e3:.1f} ms, "
            f"ratio {ours / ref:.2f}"
        )


if __name__ == "__main__":
    main()
