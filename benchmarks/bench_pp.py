"""Benchmark ``pp.tvn`` against efaar's ``tvn_on_controls`` and measure ``pp.pea_augment`` throughput.

Usage: ``python benchmarks/bench_pp.py [--n-obs 100000] [--n-dims 256] [--n-batches 50] [--repeats 3]``.
Prints both timings, their ratio (target: ours at least 3x faster), the largest difference of the outputs
(target: identical to 1e-6) and PEA samples per second.
"""

from __future__ import annotations

import argparse
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
from efaar_benchmarking.efaar import tvn_on_controls

import scsemiclip as ssc


def make_data(n_obs: int, n_dims: int, n_batches: int, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, n_batches, n_obs)
    is_ctrl = rng.random(n_obs) < 0.1
    x = (
        rng.normal(size=(n_obs, n_dims)) @ rng.normal(size=(n_dims, n_dims))
        + rng.normal(size=(n_batches, n_dims))[batch]
    )
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical([f"b{b:02d}" for b in batch]),
            "perturbation": np.where(is_ctrl, "NTC", "G"),
            "is_control": is_ctrl,
        },
        index=[f"s{i}" for i in range(n_obs)],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_emb"] = x
    return adata


def best_of(repeats: int, func) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-obs", type=int, default=100_000)
    parser.add_argument("--n-dims", type=int, default=256)
    parser.add_argument("--n-batches", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    adata = make_data(args.n_obs, args.n_dims, args.n_batches)
    meta = adata.obs.reset_index(drop=True).astype({"batch": str})
    x = adata.obsm["X_emb"]
    print(f"data: {args.n_obs} x {args.n_dims}, {args.n_batches} batches, {int(adata.obs.is_control.sum())} controls")

    t_ours, _ = best_of(args.repeats, lambda: ssc.pp.tvn(adata, use_rep="X_emb"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref, ref = best_of(args.repeats, lambda: tvn_on_controls(x, meta, "perturbation", "NTC", "batch"))
    diff = float(np.abs(adata.obsm["X_emb_tvn"] - ref).max())
    print(f"pp.tvn            {t_ours:8.3f} s")
    print(f"efaar tvn         {t_ref:8.3f} s")
    print(f"speed-up          {t_ref / t_ours:8.2f} x   (target >= 3)")
    print(f"max |difference|  {diff:8.2e}     (target <= 1e-6)")

    n_aug = int((~adata.obs.is_control).sum())
    t_pea, _ = best_of(args.repeats, lambda: ssc.pp.pea_augment(adata, use_rep="X_emb", bank_size=16, rng=0))
    print(f"pea_augment       {t_pea:8.3f} s   {n_aug / t_pea:,.0f} samples/s (bank of 16 maps per batch)")


if __name__ == "__main__":
    main()
