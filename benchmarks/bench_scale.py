"""Scaling of ``tl.fit_semiclipped``: setup time, epoch time, samples/s and peak memory against the data size.

Run from the repository root::

    python benchmarks/bench_scale.py                 # 100,000 / 300,000 / 1,000,000 / 1,300,000 student rows
    python benchmarks/bench_scale.py --quick         # 20,000 / 60,000 rows, a few minutes
    python benchmarks/bench_scale.py --sizes 1300000 --no-pea-runs --no-contention   # the paper-scale fit alone

Data as a new user would try it: random float32 embeddings, student ``d_S = 256``, teacher ``d_T = 768`` with a
fifth as many rows, 5,000 perturbations, 50 batches, 5 % controls on both sides; one epoch at batch 1024, then the
embedding of every student row (``obsm``). Every fit runs in a fresh child process (spawned), so its memory is its
own: the peak resident set size (``/proc/self/statm`` polled every 2 ms by a thread, no tracemalloc) minus the resident set size
just before the fit (data built, packages imported) is the memory the fit adds, reported against the bytes of the
input embeddings (target: at most 3x). The growth exponents ``log(t2 / t1) / log(n2 / n1)`` between consecutive
sizes are printed for the epoch time and the added memory (target: close to 1, linear).

Contention (the same run): the smallest size is fitted once alone and once beside another process running torch
matrix products with torch's default thread count; the printed ratio loaded / quiet of the fit's time has the target
at most 3 (on a 2-core machine a fair share of the cores is 2). The fit's CPU threads follow
``scsemiclip.settings.n_jobs`` (``--threads``); run it without ``OMP_NUM_THREADS`` in the environment.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time

import numpy as np

#: The competing load of the contention measurement: torch matrix products with torch's default threads.
COMPETITOR = "import torch\na = torch.randn(2048, 2048)\nwhile True:\n    a @ a\n"


def make_data(n_student: int, *, d_student: int, d_teacher: int, n_perts: int, n_batches: int, seed: int = 0):
    """Random float32 student / teacher AnnData: a fifth as many teacher rows, 5 % controls, categorical obs."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)

    def side(n: int, d: int, rep: str) -> ad.AnnData:
        ctrl = rng.random(n) < 0.05
        pert = rng.integers(0, n_perts, n)
        pert[ctrl] = n_perts
        batch = rng.integers(0, n_batches, n)
        batch[ctrl] = np.arange(ctrl.sum()) % n_batches  # the controls spread evenly over the batches
        obs = pd.DataFrame(
            {
                "batch": pd.Categorical.from_codes(batch, [f"b{b}" for b in range(n_batches)]),
                "perturbation": pd.Categorical.from_codes(pert, [f"G{k}" for k in range(n_perts)] + ["NTC"]),
                "is_control": ctrl,
            },
            index=pd.Index(np.arange(n).astype(str)),
        )
        out = ad.AnnData(obs=obs)
        out.obsm[rep] = rng.standard_normal((n, d), dtype=np.float32)
        return out

    return side(n_student, d_student, "X_emb"), side(max(n_perts, n_student // 5), d_teacher, "X_phenom")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(conn, n_student: int, opts: dict, *, pea: bool) -> None:
    """One fit in a fresh process: sends the timings and the memory."""
    import gc

    from lightning.pytorch.callbacks import Callback

    import scsemiclip as ssc
    from scsemiclip.model import SemiClipped  # noqa: F401  (imported before the baseline)

    ssc.settings.progress_bar = False
    if opts["threads"] is not None:
        ssc.settings.n_jobs = opts["threads"]
    student, teacher = make_data(
        n_student,
        d_student=opts["d_student"],
        d_teacher=opts["d_teacher"],
        n_perts=opts["n_perts"],
        n_batches=opts["n_batches"],
    )
    input_bytes = student.obsm["X_emb"].nbytes + teacher.obsm["X_phenom"].nbytes
    gc.collect()

    class Marks(Callback):
        def __init__(self) -> None:
            self.epoch_start: list[float] = []
            self.epoch_end: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.epoch_start.append(time.perf_counter())

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.epoch_end.append(time.perf_counter())

    marks = Marks()
    baseline = _rss()
    peak = [baseline]
    done = threading.Event()

    def poll() -> None:  # the resident set size every 2 ms (ru_maxrss would include the peaks before the fit)
        while not done.wait(0.002):
            peak[0] = max(peak[0], _rss())

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    start = time.perf_counter()
    model = ssc.tl.fit_semiclipped(
        student,
        teacher,
        student_rep="X_emb",
        teacher_rep="X_phenom",
        pea=pea,
        max_epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        accelerator=opts["accelerator"],
        callbacks=[marks],
        enable_model_summary=False,
    )
    end = time.perf_counter()
    done.set()
    poller.join()
    peak = max(peak[0], _rss())
    epochs = [b - a for a, b in zip(marks.epoch_start, marks.epoch_end, strict=True)]
    conn.send(
        {
            "n_student": n_student,
            "pea": pea,
            "n_train": model.pair_counts_["n_student_paired"],
            "setup_s": marks.epoch_start[0] - start,
            "epoch_s": float(np.median(epochs)),
            "apply_s": end - marks.epoch_end[-1],
            "total_s": end - start,
            "input_gb": input_bytes / 1e9,
            "baseline_gb": baseline / 1e9,
            "added_gb": (peak - baseline) / 1e9,
            "threads": ssc.settings.n_jobs,
            "dtype": str(student.obsm["X_semiclipped"].dtype),
        }
    )


def measure(n_student: int, opts: dict, *, pea: bool) -> dict:
    """Fit in a spawned child process and return its measurements."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, n_student, opts), kwargs={"pea": pea})
    proc.start()
    child.close()  # a child that dies closes the pipe: no wait for the timeout
    try:
        result = parent.recv() if parent.poll(timeout=opts["timeout"]) else None
    except EOFError:
        result = None
    proc.join()
    if result is None or proc.exitcode != 0:
        raise RuntimeError(f"the fit of {n_student} rows (pea={pea}) failed (exit code {proc.exitcode}).")
    result["samples_per_s"] = (result["n_train"] // opts["batch_size"]) * opts["batch_size"] / result["epoch_s"]
    return result


def competitor_env() -> dict:
    """The environment of the competing process: torch's default threads (no thread-count variables)."""
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def contention(n_student: int, opts: dict) -> tuple[dict, dict]:
    """The same fit alone and beside a process running torch matrix products with default threads."""
    quiet = measure(n_student, opts, pea=True)
    load = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=competitor_env())
    try:
        time.sleep(2.0)  # let it start its thread pool
        loaded = measure(n_student, opts, pea=True)
    finally:
        load.kill()
        load.wait()
    return quiet, loaded


def _exponent(rows: list[dict], key: str) -> str:
    out = []
    for a, b in zip(rows, rows[1:], strict=False):
        if a[key] > 0 and b[key] > 0:
            out.append(f"{math.log(b[key] / a[key]) / math.log(b['n_student'] / a['n_student']):.2f}")
        else:
            out.append("n/a")
    return ", ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="student rows (default: 1e5 3e5 1e6 1.3e6)")
    parser.add_argument("--quick", action="store_true", help="20,000 and 60,000 rows, contention at 20,000")
    parser.add_argument("--no-pea-runs", action="store_true", help="only the fits with PEA")
    parser.add_argument("--no-contention", action="store_true", help="skip the quiet vs loaded measurement")
    parser.add_argument("--contention-rows", type=int, default=None, help="rows of the contention fit")
    parser.add_argument("--d-student", type=int, default=256)
    parser.add_argument("--d-teacher", type=int, default=768)
    parser.add_argument("--n-perts", type=int, default=5000)
    parser.add_argument("--n-batches", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="scsemiclip.settings.n_jobs (default: all cores)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per fit")
    parser.add_argument("--accelerator", default="cpu", help="cpu, gpu, ... (default: cpu)")
    args = parser.parse_args()
    sizes = args.sizes or ([20_000, 60_000] if args.quick else [100_000, 300_000, 1_000_000, 1_300_000])
    opts = {
        k: getattr(args, k)
        for k in (
            "d_student",
            "d_teacher",
            "n_perts",
            "n_batches",
            "epochs",
            "batch_size",
            "threads",
            "timeout",
            "accelerator",
        )
    }
    print(
        f"student d={args.d_student}, teacher d={args.d_teacher} (a fifth of the rows), {args.n_perts} perturbations, "
        f"{args.n_batches} batches, 5 % controls, {args.epochs} epoch(s) at batch {args.batch_size}; "
        f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    header = (
        "| student rows | PEA | setup (s) | epoch (s) | samples/s | apply (s) | input (GB) | added peak (GB) "
        "| added / input |"
    )
    print(header)
    print("|" + "---|" * 9)
    results: dict[bool, list[dict]] = {True: [], False: []}
    for n in sizes:
        for pea in (True,) if args.no_pea_runs else (True, False):
            r = measure(n, opts, pea=pea)
            results[pea].append(r)
            print(
                f"| {n:,} | {'on' if pea else 'off'} | {r['setup_s']:.1f} | {r['epoch_s']:.1f} | "
                f"{r['samples_per_s']:,.0f} | {r['apply_s']:.1f} | {r['input_gb']:.2f} | {r['added_gb']:.2f} | "
                f"{r['added_gb'] / r['input_gb']:.2f} |",
                flush=True,
            )
    for pea, rows in results.items():
        if len(rows) > 1:
            print(
                f"growth exponents (PEA {'on' if pea else 'off'}) between sizes: epoch time {_exponent(rows, 'epoch_s')}; "
                f"added memory {_exponent(rows, 'added_gb')}"
            )
    if not args.no_contention:
        n = args.contention_rows or sizes[0]
        quiet, loaded = contention(n, opts)
        print(
            f"contention ({n:,} rows, PEA, {quiet['threads']} threads): fit {quiet['total_s']:.1f} s alone, "
            f"{loaded['total_s']:.1f} s beside torch matmuls with default threads: ratio "
            f"{loaded['total_s'] / quiet['total_s']:.2f} (target <= 3; epoch alone {quiet['epoch_s']:.1f} s, loaded "
            f"{loaded['epoch_s']:.1f} s: {loaded['epoch_s'] / quiet['epoch_s']:.2f})"
        )


if __name__ == "__main__":
    main()
