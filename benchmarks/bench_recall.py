"""Known-relationship recall: speed and exactness against efaar_benchmarking, memory at genome scale.

Run from the repository root::

    python benchmarks/bench_recall.py [--genes-compare 5000] [--genes-large 13000] [--dims 256]

1. ``--genes-compare`` genes drawn from the five databases' genes (plus 5 % absent from every database), two
   replicates each plus controls, random embedding: ``scsemiclip.tl.known_relationship_recall`` on the
   per-sample data (aggregation included; the first call also reads the five files, later ones reuse them) and on
   the aggregated float64 map, against ``efaar_benchmarking.benchmarking.known_relationship_benchmark`` on that
   map; prints the times, the ratios and whether every recall is identical.
2. ``--genes-large`` genes (genome scale), ours only, in a fresh subprocess: wall time and peak resident memory
   (``resource.getrusage``), with the resident memory right before the call for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "SCSEMICLIP_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SCSEMICLIP_DATA_DIR"] = str(SHARED_DATA)


def make_adata(n_genes: int, dims: int, *, replicates: int, seed: int = 0):
    """Per-sample AnnData: real gene symbols (5 % absent from the databases), replicates and controls."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    from scsemiclip.datasets import SOURCES, relationships

    rng = np.random.default_rng(seed)
    pool = sorted(set().union(*(set(t.entity1) | set(t.entity2) for t in map(relationships, SOURCES))))
    n_absent = n_genes // 20
    genes = [*rng.choice(pool, n_genes - n_absent, replace=False), *(f"ABSENT{i}" for i in range(n_absent))]
    labels = np.repeat(genes, replicates).tolist() + ["NTC"] * 100
    obs = pd.DataFrame(
        {"perturbation": labels, "is_control": [lab == "NTC" for lab in labels]},
        index=[f"s{i}" for i in range(len(labels))],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_emb"] = rng.normal(size=(len(labels), dims))
    return adata


REPEATS = 5


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def compare(n_genes: int, dims: int) -> None:
    import numpy as np
    import pandas as pd
    from efaar_benchmarking.benchmarking import known_relationship_benchmark
    from sklearn.utils import Bunch

    from scsemiclip import pp, tl
    from scsemiclip.datasets import SOURCES, data_dir

    adata = make_adata(n_genes, dims, replicates=2)
    start = time.perf_counter()
    ours = tl.known_relationship_recall(adata, use_rep="X_emb")
    t_cold = time.perf_counter() - start
    t_warm = min(timed(lambda: tl.known_relationship_recall(adata, use_rep="X_emb")) for _ in range(REPEATS))

    agg = pp.aggregate(adata, use_rep="X_emb")
    t_map = min(
        timed(lambda: tl.known_relationship_recall(agg, use_rep="X", perturbation_key=None, control_key=None))
        for _ in range(REPEATS)
    )
    map_data = Bunch(features=pd.DataFrame(agg.X), metadata=pd.DataFrame({"gene": agg.obs_names}))
    refs = []

    def efaar() -> None:
        refs.append(
            known_relationship_benchmark(
                map_data,
                pert_col="gene",
                benchmark_sources=list(SOURCES),
                recall_thr_pairs=[(0.05, 0.95)],
                benchmark_data_dir=str(data_dir() / "relationships"),
            )
        )

    t_ref = min(timed(efaar) for _ in range(2))
    ref_recall = refs[-1].set_index("source")["recall_0.05_0.95"]
    same = bool(np.array_equal(ours.loc[list(SOURCES), "recall"].to_numpy(), ref_recall.loc[list(SOURCES)].to_numpy()))
    print(f"== {n_genes} genes x {dims} dims ({adata.n_obs} samples), {int(ours.loc['mean', 'n_pairs'])} pairs")
    print(ours.to_string())
    print(
        f"scsemiclip on the samples: first call {t_cold:.2f} s (reads the five files), later calls {t_warm:.3f} s "
        f"(best of {REPEATS}); on the aggregated map (as efaar): {t_map:.3f} s; efaar_benchmarking: {t_ref:.2f} s "
        "(best of 2)"
    )
    print(
        f"speed-up: {t_ref / t_cold:.1f}x first call, {t_ref / t_warm:.1f}x later calls, {t_ref / t_map:.1f}x on the "
        f"same aggregated map; identical recall: {same}"
    )
    if not same:
        raise SystemExit("recall differs from efaar_benchmarking")


def large_child(n_genes: int, dims: int) -> None:
    from scsemiclip import tl

    adata = make_adata(n_genes, dims, replicates=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    table = tl.known_relationship_recall(adata, use_rep="X_emb")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_null = adata.uns["known_relationship_recall"]["params"]["n_null"]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": peak,
                "before_mib": before,
                "n_null": n_null,
                "mean_recall": float(table.loc["mean", "recall"]),
            }
        )
    )


def large(n_genes: int, dims: int) -> None:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n_genes), "--dims", str(dims)],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"== {n_genes} genes x {dims} dims, {res['n_null']:,} null pairs (ours only, fresh process)")
    print(
        f"time {res['seconds']:.1f} s; peak RSS {res['peak_mib'] / 1024:.2f} GiB "
        f"({res['before_mib'] / 1024:.2f} GiB before the call); mean recall {res['mean_recall']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes-compare", type=int, default=5000)
    parser.add_argument("--genes-large", type=int, default=13000)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        large_child(args.child, args.dims)
        return
    compare(args.genes_compare, args.dims)
    large(args.genes_large, args.dims)


if __name__ == "__main__":
    main()
