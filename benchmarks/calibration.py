"""False-positive rates of the package's significance calls on pure noise (docs/evaluation.md, calibration section).

Run from the repository root::

    python benchmarks/calibration.py [--controls 4 12 40] [--corrections standardize center tvn none]
                                     [--dims 8 32] [--layouts single spread] [--perturbations 200] [--seeds 0]
                                     [--skip-enrichment] [--enrichment-seeds 0 1 2 3 4 5]

1. Perturbation maps: pure-noise screens (Gaussian profiles plus a random shift per batch, 4 batches,
   ``--perturbations`` perturbations of 6 replicates with no effect; ``single``: all replicates of a perturbation in
   one batch, ``spread``: replicate ``r`` in batch ``r mod 4``) scored by :func:`scsemiclip.tl.evaluate_map` with
   every ``profile_correction`` and both nulls: ``efaar`` (the correction fitted on all controls, efaar's and
   copairs' nulls: the numbers before the calibration work) and ``permutation`` (the default: cross-fitted
   correction, within-batch permutation null). Printed per grid point and metric: the fraction flagged significant
   (q < 0.05) and the fraction at p < 0.05 (nominal 0.05), means over ``--seeds``.
2. Enrichment: Table 3's chance level (``benchmarks/table3.py``): the sim-OOD transcriptomics map with its rows
   shuffled, against the unshuffled Tx and Img maps, both queries, :func:`scsemiclip.tl.relationship_enrichment`
   against Reactome with the hypergeometric and the permutation test: the share of sets at p < 0.01 (nominal
   0.01) and the sets at q < 0.05, over ``--enrichment-seeds``.
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401 (the data folder)
import anndata as ad
import numpy as np
import pandas as pd

import scsemiclip as ssc

FAMILIES = ["phenotypic_activity", "perturbation_consistency", "perturbation_magnitude"]


def noise_screen(
    n_controls: int,
    d: int = 16,
    layout: str = "spread",
    n_perts: int = 30,
    seed: int = 0,
    n_batches: int = 4,
    k: int = 6,
) -> ad.AnnData:
    """Pure noise with batch effects: ``n_perts`` perturbations of ``k`` replicates, ``n_controls`` per batch.

    Profiles (``obsm["X_noise"]``, ``d`` dimensions) are standard normal plus a shift per batch of scale 2.
    ``layout="spread"``: replicate ``r`` in batch ``r mod n_batches``; ``"single"``: all replicates of a
    perturbation in one random batch (the layout that makes a shared correction error count most). Also the
    screen of ``tests/test_calibration.py``.
    """
    rng = np.random.default_rng(seed)
    if layout == "spread":
        pert_batch = np.tile(np.arange(k) % n_batches, n_perts)
    else:
        pert_batch = np.repeat(rng.integers(0, n_batches, n_perts), k)
    batch = np.r_[pert_batch, np.repeat(np.arange(n_batches), n_controls)]
    labels = np.r_[np.repeat([f"G{i}" for i in range(n_perts)], k), ["NTC"] * (n_batches * n_controls)]
    x = rng.normal(size=(batch.size, d)) + 2.0 * rng.normal(size=(n_batches, d))[batch]
    obs = pd.DataFrame(
        {"perturbation": labels, "batch": pd.Categorical([f"b{b}" for b in batch]), "is_control": labels == "NTC"},
        index=[f"s{i}" for i in range(batch.size)],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_noise"] = x
    return adata


def map_grid(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for layout in args.layouts:
        for n_controls in args.controls:
            for d in args.dims:
                for correction in args.corrections:
                    for null in ("efaar", "permutation"):
                        if null == "permutation" and n_controls < 4:
                            continue
                        for seed in args.seeds:
                            adata = noise_screen(n_controls, d, layout, args.perturbations, seed)
                            ssc.tl.evaluate_map(
                                adata,
                                use_reps="X_noise",
                                metrics=FAMILIES,
                                profile_correction=None if correction == "none" else correction,
                                null=null,
                                calibration=False,
                                null_size=2000,
                                signal_null_size=1000,
                                rng=seed,
                            )
                            details = adata.uns["evaluate_map"]["details"]["X_noise"]
                            for family in FAMILIES:
                                table = details[family]
                                rows.append(
                                    {
                                        "layout": layout,
                                        "controls_per_batch": n_controls,
                                        "dims": d,
                                        "correction": correction,
                                        "null": null,
                                        "metric": family,
                                        "significant": float(table["significant"].mean()),
                                        "p_below_0.05": float((table["p_value"] < 0.05).mean()),
                                    }
                                )
                        print(*rows[-len(FAMILIES) :], sep="\n", flush=True)
    keys = ["layout", "controls_per_batch", "dims", "correction", "null", "metric"]
    return pd.DataFrame(rows).groupby(keys, sort=False).mean().reset_index()


def enrichment_rates(seeds: list[int], n_permutations: int = 1000) -> pd.DataFrame:
    """Table 3's chance level: the sim-OOD Tx map with its rows shuffled, both queries, both tests."""
    import table3

    data = ssc.datasets.simulate_weakly_paired(rng=0, n_controls=32)
    base = {
        table3.TX: (data["ood"], "X_emb", "batch", "is_control"),
        table3.IMG: (data["ood_teacher"], "X_phenom", "batch", "is_control"),
    }
    rows = []
    for seed in seeds:
        shuffled = data["ood"].copy()
        ssc.tl.random_baseline(
            shuffled, use_rep="X_emb", kind="shuffled", control_key="is_control", rng=seed, key_added=table3.DIST
        )
        gmap = table3.gene_level({**base, table3.DIST: (shuffled, table3.DIST, "batch", "is_control")})
        for label, (include, exclude) in table3.QUERIES.items():
            for test in ("hypergeometric", "permutation"):
                start = time.perf_counter()
                table = ssc.tl.relationship_enrichment(
                    gmap,
                    include=include,
                    exclude=exclude,
                    perturbation_key=None,
                    control_key=None,
                    test=test,
                    n_permutations=n_permutations,
                    rng=seed,
                )
                rows.append(
                    {
                        "seed": seed,
                        "query": label.format("Shuffled"),
                        "test": test,
                        "sets": len(table),
                        "p_below_0.01": float((table["p_value"] < 0.01).mean()),
                        "q_below_0.05": int((table["q_value"] < 0.05).sum()),
                        "seconds": time.perf_counter() - start,
                    }
                )
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controls", type=int, nargs="+", default=[4, 12, 40])
    parser.add_argument("--corrections", nargs="+", default=["standardize", "center", "tvn", "none"])
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--layouts", nargs="+", default=["single", "spread"])
    parser.add_argument("--perturbations", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--skip-enrichment", action="store_true")
    parser.add_argument("--enrichment-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    args = parser.parse_args()
    grid = map_grid(args)
    pd.set_option("display.width", 200)
    wide = grid.pivot_table(
        index=["layout", "controls_per_batch", "dims", "correction", "metric"],
        columns="null",
        values=["significant", "p_below_0.05"],
        sort=False,
    )
    print("\nPure noise: fraction significant (q < 0.05) and at p < 0.05, efaar's null vs the calibrated one")
    print(wide.round(3).to_string())
    if not args.skip_enrichment:
        print("\nLabel-shuffled map (Table 3's chance level), Reactome: share of sets at p < 0.01 (nominal 0.01), sets")
        print("at q < 0.05, means over the seeds")
        rates = enrichment_rates(args.enrichment_seeds)
        print(rates.groupby(["query", "test"]).mean(numeric_only=True).drop(columns="seed").round(4).to_string())


if __name__ == "__main__":
    main()
