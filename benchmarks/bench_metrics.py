"""Mean average precision and perturbation signal: speed and equality against copairs and efaar_benchmarking.

Run from the repository root (``--quick``: a small version of every part, a minute on a laptop)::

    python benchmarks/bench_metrics.py [--quick] [--accelerator auto] [--efaar-jobs 5]

1. Phenotypic activity on ``--profiles`` profiles (default 20,000: ``--perturbations`` 1,000 perturbations with
   the same number of replicates, and 10 % controls): ``scsemiclip.tl.phenotypic_activity`` against copairs 0.5.5
   (``map.average_precision`` with the reference-index recipe, then ``map.mean_average_precision``), same
   ``--null-size``; prints both times, the ratio, the largest mAP difference and how many p-values agree within
   Monte-Carlo error (5 standard deviations of the difference of two independent estimates).
2. Phenotypic consistency on the consensus profiles of those perturbations, each with 1-2 of 100 random labels:
   ``tl.phenotypic_consistency`` against ``copairs.map.multilabel.average_precision`` + ``mean_average_precision``.
3. Perturbation signal on ``--signal-perturbations`` perturbations (default 5,000; 5 replicates each, 10 % of them
   null perturbations without effect, 1,000 controls): ``tl.perturbation_consistency`` /
   ``tl.perturbation_magnitude`` against efaar's ``pert_signal_consistency_benchmark`` /
   ``pert_signal_magnitude_benchmark`` (``n_jobs=--efaar-jobs``; with 1,000 controls = ``max_controls`` efaar uses
   them all, so both are deterministic); prints the times, the ratios and the largest differences.

The reference is timed in the same run on the same inputs, after its imports; ours after one small untimed call of
each function (imports, device start-up). Threads as the process gets them (set ``OMP_NUM_THREADS`` etc. to
compare at a fixed budget).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "SCSEMICLIP_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SCSEMICLIP_DATA_DIR"] = str(SHARED_DATA)


def screen(n_perts: int, replicates: int, n_controls: int, dims: int, *, seed: int = 0):
    """Profiles of perturbations of varied strength (a tenth of them without effect, ``G0`` ...) and controls."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    strength = rng.gamma(2.0, 0.4, size=n_perts) * (np.arange(n_perts) >= n_perts // 10)
    effect = rng.normal(size=(n_perts, dims)) * strength[:, None] / np.sqrt(dims) * 4
    x = np.repeat(effect, replicates, axis=0) + rng.normal(size=(n_perts * replicates, dims))
    x = np.vstack([x, rng.normal(size=(n_controls, dims))])
    labels = np.r_[np.repeat([f"G{i}" for i in range(n_perts)], replicates), ["NTC"] * n_controls]
    obs = pd.DataFrame(
        {"perturbation": labels, "is_control": labels == "NTC"}, index=[f"s{i}" for i in range(len(labels))]
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_emb"] = x
    return adata


def timed(func):
    start = time.perf_counter()
    out = func()
    return out, time.perf_counter() - start


def p_agreement(ours: np.ndarray, ref: np.ndarray, null_size: int) -> str:
    tol = 5 * np.sqrt(2 * ref * (1 - ref) / null_size) + 3 / null_size
    within = int((np.abs(ours - ref) <= tol).sum())
    return f"{within}/{ref.size} within Monte-Carlo error (max |dp| {np.abs(ours - ref).max():.2g})"


def report(name: str, ours: float, ref: float, reference: str) -> None:
    print(f"  {name}: scsemiclip {ours:.2f} s, {reference} {ref:.2f} s -> {ref / ours:.1f}x faster")


def bench_map(args, cache: str) -> None:
    import copairs.map as cm

    import scsemiclip as ssc

    replicates = round(args.profiles * 0.9 / args.perturbations)
    n_controls = args.profiles - replicates * args.perturbations
    adata = screen(args.perturbations, replicates, n_controls, args.dims)
    x = adata.obsm["X_emb"]
    print(
        f"1. phenotypic activity: {adata.n_obs} profiles, {args.perturbations} perturbations x {replicates}, "
        f"{n_controls} controls, null {args.null_size}"
    )
    ours, t_ours = timed(
        lambda: ssc.tl.phenotypic_activity(
            adata, use_rep="X_emb", null_size=args.null_size, accelerator=args.accelerator
        )
    )

    def reference():
        meta = adata.obs[["perturbation", "is_control"]].reset_index(drop=True).copy()
        meta["reference"] = np.where(meta["is_control"], np.arange(len(meta)), -1)
        ap = cm.average_precision(
            meta, x, pos_sameby=["perturbation", "reference"], pos_diffby=[], neg_sameby=[],
            neg_diffby=["perturbation", "reference"], progress_bar=False,
        )  # fmt: skip
        return copairs_map(ap, "perturbation", args.null_size, cache)

    compare_map(ours, t_ours, reference, "perturbations", args.null_size)

    consensus = ssc.pp.aggregate(adata, use_rep="X_emb")
    rng = np.random.default_rng(1)
    labels = {g: sorted({f"T{rng.integers(0, 100)}" for _ in range(rng.integers(1, 3))}) for g in consensus.obs_names}
    consensus.obsm["X_emb"] = consensus.X
    print(f"2. phenotypic consistency: {consensus.n_obs} consensus profiles, 100 labels, null {args.null_size}")
    ours, t_ours = timed(
        lambda: ssc.tl.phenotypic_consistency(
            consensus, use_rep="X_emb", annotations=labels, perturbation_key=None, control_key=None,
            null_size=args.null_size, accelerator=args.accelerator,
        )
    )  # fmt: skip

    def reference_consistency():
        meta = pd.DataFrame({"labels": [labels[g] for g in consensus.obs_names]})
        ap = cm.multilabel.average_precision(
            meta, consensus.X, pos_sameby=["labels"], pos_diffby=[], neg_sameby=[], neg_diffby=["labels"],
            multilabel_col="labels", progress_bar=False,
        )  # fmt: skip
        return copairs_map(ap, "labels", args.null_size, cache)

    compare_map(ours, t_ours, reference_consistency, "labels", args.null_size)


def copairs_map(ap: pd.DataFrame, sameby: str, null_size: int, cache: str) -> pd.DataFrame:
    """copairs' ``mean_average_precision`` of per-profile APs, indexed by the group."""
    import copairs.map as cm

    out = cm.mean_average_precision(
        ap, sameby=[sameby], null_size=null_size, threshold=0.05, seed=0, progress_bar=False, cache_dir=cache
    )
    return out.set_index(sameby)


def compare_map(ours: pd.DataFrame, t_ours: float, reference, what: str, null_size: int) -> None:
    """Time copairs (``reference()``) and print the ratio, the largest mAP difference and the p-value agreement."""
    ref, t_ref = timed(reference)
    ref = ref.loc[ours.index]
    report("time", t_ours, t_ref, "copairs")
    diff = np.abs(ours["mean_average_precision"] - ref["mean_average_precision"]).max()
    verdict = "identical to 1e-9" if diff <= 1e-9 else "DIFFERENT"
    print(f"  mAP: max |difference| {diff:.2g} over {len(ours)} {what} ({verdict})")
    print(f"  p-values: {p_agreement(ours['p_value'].to_numpy(), ref['p_value'].to_numpy(), null_size)}")
    print(
        f"  significant at q < 0.05: scsemiclip {int(ours['significant'].sum())}, "
        f"copairs {int(ref['below_corrected_p'].sum())}"
    )


def bench_signal(args) -> None:
    from efaar_benchmarking import benchmarking as efaar

    import scsemiclip as ssc

    adata = screen(args.signal_perturbations, 5, 1000, args.dims, seed=2)
    null_perts = [f"G{i}" for i in range(args.signal_perturbations // 10)]
    rows = ~adata.obs["is_control"].to_numpy()
    print(
        f"3. perturbation signal: {args.signal_perturbations} perturbations x 5, {len(null_perts)} null "
        "perturbations, 1000 controls"
    )
    common = {"use_rep": "X_emb", "null_perturbations": null_perts, "accelerator": args.accelerator}
    ours, t_ours = timed(lambda: ssc.tl.perturbation_consistency(adata, **common))
    ref, t_ref = timed(
        lambda: efaar.pert_signal_consistency_benchmark(
            adata.obsm["X_emb"][rows], adata.obs[rows], "perturbation", null_perts, n_jobs=args.efaar_jobs
        ).set_index("pert")
    )
    ref = ref.loc[ours.index]
    report("consistency time", t_ours, t_ref, f"efaar (n_jobs={args.efaar_jobs})")
    print(
        f"  consistency: max |d value| {np.abs(ours['value'] - ref['avgcossim']).max():.2g}, "
        f"p-values identical: {np.array_equal(ours['p_value'], ref['pval'])}"
    )
    ours, t_ours = timed(lambda: ssc.tl.perturbation_magnitude(adata, **common))
    ref, t_ref = timed(
        lambda: efaar.pert_signal_magnitude_benchmark(
            adata.obsm["X_emb"], adata.obs, "perturbation", null_perts, "NTC", n_jobs=args.efaar_jobs
        ).set_index("pert")
    )
    ref = ref.drop("NTC").loc[ours.index]
    report("magnitude time", t_ours, t_ref, f"efaar (n_jobs={args.efaar_jobs})")
    rel = (np.abs(ours["value"] - ref["edist"]) / np.abs(ref["edist"])).max()
    print(
        f"  magnitude: max relative |d value| {rel:.2g}, "
        f"p-values identical: {np.array_equal(ours['p_value'], ref['pval'])}"
    )


def warm_up(accelerator: str) -> None:
    """One small call of each function, untimed: the imports and device start-up are not part of the timings."""
    import scsemiclip as ssc

    small = screen(20, 5, 30, 8, seed=3)
    ssc.tl.phenotypic_activity(small, use_rep="X_emb", null_size=10, accelerator=accelerator)
    ssc.tl.phenotypic_consistency(
        small, use_rep="X_emb", annotations={"G1": "a", "G2": "a", "G3": "b"}, null_size=10, accelerator=accelerator
    )
    ssc.tl.perturbation_consistency(small, use_rep="X_emb", null_size=10, accelerator=accelerator)
    ssc.tl.perturbation_magnitude(small, use_rep="X_emb", null_size=10, accelerator=accelerator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: 4,000 profiles, 200 / 500 perturbations")
    parser.add_argument("--profiles", type=int, default=20000)
    parser.add_argument("--perturbations", type=int, default=1000)
    parser.add_argument("--signal-perturbations", type=int, default=5000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--null-size", type=int, default=10000)
    parser.add_argument("--accelerator", default="auto", help="scsemiclip's device: auto, cpu, gpu")
    parser.add_argument("--efaar-jobs", type=int, default=5, help="efaar's n_jobs (its default: 5)")
    parser.add_argument("--skip", choices=("map", "signal"), nargs="*", default=[])
    args = parser.parse_args()
    if args.quick:
        args.profiles, args.perturbations, args.signal_perturbations = 4000, 200, 500
    logging.getLogger("copairs").setLevel(logging.WARNING)
    import torch

    print(f"torch threads {torch.get_num_threads()}, CUDA: {torch.cuda.is_available()}, accelerator {args.accelerator}")
    warm_up(args.accelerator)
    with tempfile.TemporaryDirectory() as cache:  # copairs caches its nulls: a fresh cache, as on a first run
        if "map" not in args.skip:
            bench_map(args, cache)
    if "signal" not in args.skip:
        bench_signal(args)


if __name__ == "__main__":
    main()
