"""What interpretability preservation adds to ``tl.evaluate_map``: the time with it over the time without it.

Run from the repository root (``--quick``: the simulator's screen only)::

    python benchmarks/bench_interpretability.py [--quick] [--accelerator auto] [--repeats 1]

On the knockout screen of ``scsemiclip.datasets.simulate_weakly_paired(rng=0)["ood"]`` (1,296 samples: 400 genes
x 3 replicates over 3 batches and 96 controls, 500 genes of expression) and on one ten times larger (30 replicates
over 30 batches: 12,960 samples), ``tl.evaluate_map`` scores two representations (the simulator's ``X_emb`` and a
random embedding of its shape) with every metric the data allow, once with ``interpretability=False`` and once
with it (the default ``protocol="auto"``); prints both times, the ratio and the interpretability scores, in wall
clock and in the process's CPU time (the fairer one on a loaded machine). The two calls alternate, ``--repeats``
times each, and the medians are compared, so that a machine whose load changes affects both. One small untimed
call first (imports, device start-up). Threads as the process gets them (``scsemiclip.settings.n_jobs``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "SCSEMICLIP_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SCSEMICLIP_DATA_DIR"] = str(SHARED_DATA)


def screen(scale: int, **small: int):
    """The simulator's knockout screen, ``scale`` times as many replicates and batches, with a random embedding."""
    import scsemiclip as ssc

    sizes = {"n_ood_replicates": 3 * scale, "n_ood_batches": 3 * scale, **small}
    ood = ssc.datasets.simulate_weakly_paired(**sizes, rng=0)["ood"]
    ssc.tl.random_baseline(ood, use_rep="X_emb", key_added="X_random", rng=0)
    return ood


def run(adata, *, interpretability: bool, accelerator: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one ``evaluate_map`` call on ``X_emb`` and ``X_random``."""
    import scsemiclip as ssc

    start, cpu = time.perf_counter(), time.process_time()
    ssc.tl.evaluate_map(
        adata,
        use_reps={"X_emb": "X_emb", "random": "X_random"},
        interpretability=interpretability,
        accelerator=accelerator,
    )
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the simulator's screen only")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls of each kind (median)")
    args = parser.parse_args()

    import scsemiclip as ssc

    ssc.settings.progress_bar = False  # no progress lines in the timings' output
    warm = screen(1, n_compounds=20, n_genes=150, n_ood_genes=80, n_ood_replicates=5, n_panel_genes=60)
    run(warm, interpretability=True, accelerator=args.accelerator)  # imports, device start-up
    for scale in (1,) if args.quick else (1, 10):
        adata = screen(scale)
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for interpretability in (False, True):
                times[interpretability].append(
                    run(adata, interpretability=interpretability, accelerator=args.accelerator)
                )
        (without, without_cpu), (with_, with_cpu) = (np.median(times[k], axis=0) for k in (False, True))
        table = adata.uns["evaluate_map"]["table"]
        scores = table[table.metric == "interpretability"].set_index("representation")["value"].round(1).to_dict()
        print(
            f"{adata.n_obs:,} samples x {adata.n_vars} genes: evaluate_map {without:.1f} s without interpretability, "
            f"{with_:.1f} s with it: ratio {with_ / without:.1f}; CPU {without_cpu:.1f} s and {with_cpu:.1f} s: ratio "
            f"{with_cpu / without_cpu:.1f} (interpretability scores {scores})",
            flush=True,
        )


if __name__ == "__main__":
    main()
