"""Training throughput of ``model.SemiClipped`` against a bare PyTorch loop (the compute bound).

Run from the repository root::

    python benchmarks/bench_train.py [--n-obs 20000] [--d-student 256] [--d-teacher 768] [--batch-size 1024]
        [--epochs 4] [--n-batches 8] [--bank-size 8] [--repeats 2] [--threads N] [--accelerator cpu]

On the same synthetic weakly paired data (``n-obs`` student samples over ``n-keys`` pairing keys, each key with
``teacher-per-key`` teacher samples; ``controls`` controls per batch on both sides) it measures samples per second
of

(a) a bare PyTorch loop over pre-paired tensors (one fixed partner per sample), same adapter, same InfoNCE, same
    SGD, a shuffled index per epoch: what any trainer has to compute;
(b) ``SemiClipped.train`` without PEA (Lightning, device-resident data module, a fresh partner per sample and step);
(c) the same with PEA (a new bank of ``bank-size`` corrections per batch every epoch, one per sample and step);
(d) the cost per minibatch of every augmentation of ``scsemiclip.module.AUGMENTATIONS`` and of PEA's correction
    (one forward on a ``batch-size`` minibatch of the training inputs, on the device, median of ``aug-repeats``),
    next to one training step of (a) on the same minibatch measured in the same run, and the one-off cost of
    fitting each augmentation (MDWGAN-GP: ``gan-steps`` generator steps; scVI denoising: the posterior scale is
    random here, its one-off computation by the scVI model is not timed). ``--augmentations-only`` runs only (d).

Throughput is samples per epoch over the median epoch time (bank refreshes included) of the epochs after the
first (warm-up) of ``repeats`` interleaved runs, in wall-clock time and, on CPU, in CPU time of the process
(which other processes on a busy machine do not inflate; use it with ``--threads 1``, as several threads per
process also slow down a lot when the cores are oversubscribed). Targets: (b)/(a) >= 0.85, (c)/(b) >= 0.8.
"""

from __future__ import annotations

import argparse
import time

import _common
import anndata as ad
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from scsemiclip.model import SemiClipped
from scsemiclip.module import info_nce, mlp


def make_data(args: argparse.Namespace) -> tuple[ad.AnnData, ad.AnnData]:
    """Random student / teacher embeddings with ``n-keys`` perturbations, batches and controls."""
    rng = np.random.default_rng(0)

    def side(n: int, d: int, keys: np.ndarray, rep: str) -> ad.AnnData:
        n_ctrl = args.controls * args.n_batches
        batch = np.r_[rng.integers(0, args.n_batches, n), np.repeat(np.arange(args.n_batches), args.controls)]
        obs = pd.DataFrame(
            {
                "batch": pd.Categorical([f"b{b}" for b in batch]),
                "perturbation": np.r_[[f"G{k}" for k in keys], ["NTC"] * n_ctrl],
                "is_control": np.r_[np.zeros(n, bool), np.ones(n_ctrl, bool)],
            },
            index=[f"{d}_{i}" for i in range(n + n_ctrl)],
        )
        out = ad.AnnData(obs=obs)
        out.obsm[rep] = rng.normal(size=(n + n_ctrl, d)).astype(np.float32)
        return out

    student = side(args.n_obs, args.d_student, rng.integers(0, args.n_keys, args.n_obs), "X_emb")
    teacher = side(
        args.n_keys * args.teacher_per_key,
        args.d_teacher,
        np.repeat(np.arange(args.n_keys), args.teacher_per_key),
        "X_phenom",
    )
    return student, teacher


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


class EpochTimer(Callback):
    """Wall and CPU time of every training epoch (from the first epoch-start hook: the PEA refresh counts)."""

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = _clock()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(_since(self._start))


def bare_loop(
    x: torch.Tensor, z: torch.Tensor, args: argparse.Namespace, device: torch.device
) -> list[tuple[float, float]]:
    """(a): adapter + InfoNCE + SGD over pre-paired device tensors; returns the epoch (wall, CPU) times."""
    torch.manual_seed(0)
    adapter = mlp(x.shape[1], (512, 1024), z.shape[1]).to(device)
    optimizer = torch.optim.SGD(adapter.parameters(), lr=1e-3, momentum=0.95, weight_decay=1e-4)
    scale = torch.tensor(10.0, device=device)
    x, z = x.to(device), z.to(device)
    n_steps = x.shape[0] // args.batch_size
    times = []
    for _ in range(args.epochs):
        start = _clock()
        order = torch.randperm(x.shape[0], device=device)[: n_steps * args.batch_size]
        total = torch.zeros((), device=device)
        for idx in order.split(args.batch_size):
            loss, _ = info_nce(adapter(x[idx]), z[idx], scale=scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        float(total)  # one synchronisation per epoch, as the model's epoch-level logging
        times.append(_since(start))
    return times


def model_loop(
    student: ad.AnnData, teacher: ad.AnnData, args: argparse.Namespace, *, pea: bool
) -> list[tuple[float, float]]:
    """(b) / (c): ``SemiClipped.train``; returns the epoch (wall, CPU) times."""
    model = SemiClipped(student, teacher, teacher_rep="X_phenom", pea=pea, pea_bank_size=args.bank_size, rng=0)
    timer = EpochTimer()
    model.train(
        args.epochs,
        batch_size=args.batch_size,
        accelerator=args.accelerator,
        devices=1,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return timer.times


def _synchronised(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def augmentation_costs(
    student: ad.AnnData, teacher: ad.AnnData, args: argparse.Namespace, device: torch.device
) -> None:
    """(d): milliseconds per minibatch of each augmentation and of PEA, against one bare training step."""
    from scsemiclip.module import AUGMENTATIONS

    model = SemiClipped(student, teacher, teacher_rep="X_phenom", pea=True, pea_bank_size=args.bank_size, rng=0)
    module = model.module.to(device)
    rows = torch.as_tensor(model.pairing.student_rows)
    tensors = model._training_tensors()
    x, keys, batch = (tensors[k][rows].to(device) for k in ("x", "key", "batch"))
    module.start_training(0)
    module.refresh_bank()
    generator = module.generator
    idx = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(0))[: args.batch_size].to(device)
    xb, kb, bb = x[idx], keys[idx], batch[idx]
    z = module.sample(kb)
    optimizer = torch.optim.SGD(module.adapter.parameters(), lr=1e-3, momentum=0.95)
    scale = torch.tensor(10.0, device=device)

    def step() -> None:
        loss, _ = info_nce(module.adapter(xb), z, scale=scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    costs = {"training step of (a)": (step, 0.0), "pea": (lambda: module.bank.augment(xb, bb, generator), 0.0)}
    n_keys = int(keys.max()) + 1
    for name, cls in AUGMENTATIONS.items():
        aug = cls(p=1.0, **({"n_steps": args.gan_steps} if name == "mdwgan_gp" else {})).to(device)
        start = time.perf_counter()
        if name == "scvi_denoise":
            aug.set_posterior(torch.rand(x.shape, generator=torch.Generator().manual_seed(1)).to(device))
        else:
            aug.fit(x, keys, n_keys=n_keys, generator=torch.Generator(device=device).manual_seed(0))
        _synchronised(device)
        fitted = time.perf_counter() - start
        costs[name] = (lambda aug=aug: aug(xb, batch=bb, key=kb, index=idx, generator=generator), fitted)
    print(f"(d) cost per minibatch of {args.batch_size} ({args.d_student} dims, median of {args.aug_repeats}):")
    reference = None
    for name, (run, fitted) in costs.items():
        for _ in range(3):
            run()
        times = []
        for _ in range(args.aug_repeats):
            _synchronised(device)
            start = time.perf_counter()
            run()
            _synchronised(device)
            times.append(time.perf_counter() - start)
        ms = 1e3 * float(np.median(times))
        reference = reference or ms
        fit_text = f", fit once {fitted:.2f} s" if fitted else ""
        print(f"  {name:22s} {ms:8.2f} ms   {ms / reference:6.3f} x a training step{fit_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-obs", type=int, default=20_000, help="student training samples (default: 20000)")
    parser.add_argument("--d-student", type=int, default=256)
    parser.add_argument("--d-teacher", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is warm-up (default: 4)")
    parser.add_argument("--n-keys", type=int, default=2000, help="pairing keys (default: 2000)")
    parser.add_argument("--teacher-per-key", type=int, default=2)
    parser.add_argument("--n-batches", type=int, default=8, help="experimental batches (default: 8)")
    parser.add_argument("--controls", type=int, default=64, help="controls per batch and side (default: 64)")
    parser.add_argument("--bank-size", type=int, default=8, help="PEA corrections per batch and epoch (default: 8)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs, best kept (default: 2)")
    parser.add_argument("--accelerator", default="cpu", help="cpu, gpu, ... (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--augmentations-only", action="store_true", help="only (d), the augmentation costs")
    parser.add_argument("--aug-repeats", type=int, default=20, help="timed minibatches per augmentation (default: 20)")
    parser.add_argument("--gan-steps", type=int, default=50, help="MDWGAN-GP generator steps in (d) (default: 50)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")
    _common.setup(args)

    student, teacher = make_data(args)
    SemiClipped.setup_anndata(student, student_rep="X_emb")
    device = torch.device("cuda" if args.accelerator in ("gpu", "cuda") else args.accelerator)
    if args.augmentations_only:
        augmentation_costs(student, teacher, args, device)
        return
    # (a)'s pre-paired tensors: the training samples of the model, each with one fixed teacher partner
    probe = SemiClipped(student, teacher, teacher_rep="X_phenom", pea=False)
    tensors = probe._training_tensors()
    probe.module.start_training(0)
    rows = torch.as_tensor(probe.pairing.student_rows)
    x, z = tensors["x"][rows], probe.module.sample(tensors["key"][rows])
    n_steps = x.shape[0] // args.batch_size
    per_epoch = n_steps * args.batch_size
    print(
        f"{x.shape[0]} training samples ({n_steps} steps of {args.batch_size} per epoch), {args.d_student} -> "
        f"(512, 1024) -> {args.d_teacher}, {args.n_batches} batches x {args.controls} controls, PEA bank "
        f"{args.bank_size} per batch, {args.epochs} epochs (first = warm-up), {torch.get_num_threads()} threads, "
        f"{args.accelerator}."
    )
    runs = {
        "(a) bare loop": lambda: bare_loop(x, z, args, device),
        "(b) train": lambda: model_loop(student, teacher, args, pea=False),
        "(c) train + PEA": lambda: model_loop(student, teacher, args, pea=True),
    }
    epochs: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            times = run()
            epochs[name] += times[1:]
            shown = ", ".join(f"{wall:.2f}s ({cpu:.2f}s CPU)" for wall, cpu in times)
            print(f"  run {repeat + 1} {name:16s} epochs: {shown}")
    clocks = ("wall-clock", "CPU time") if device.type == "cpu" else ("wall-clock",)
    for i, clock in enumerate(clocks):
        rates = {name: per_epoch / float(np.median([t[i] for t in times])) for name, times in epochs.items()}
        print(f"samples/s ({clock}, median epoch):")
        for name, rate in rates.items():
            print(f"  {name:16s} {rate:9.0f}")
        a, b, c = rates.values()
        print(f"  (b)/(a) = {b / a:.2f} (target >= 0.85)   (c)/(b) = {c / b:.2f} (target >= 0.8)")
    augmentation_costs(student, teacher, args, device)


if __name__ == "__main__":
    main()
