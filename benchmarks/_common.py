"""Shared pieces of the reproduction scripts (table1.py, table2.py, figure3.py): data, settings, markdown output."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "SCSEMICLIP_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SCSEMICLIP_DATA_DIR"] = str(SHARED_DATA)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
#: The simulated screen: pairing keys and embeddings of ``datasets.simulate_weakly_paired``.
SIM = {"student_rep": "X_emb", "teacher_rep": "X_phenom", "pair_keys": ("perturbation", "dose")}
#: The paper's Table 1 / Table 2 methods and their display names.
NAMES = {
    "unimodal": "Unimodal baseline",
    "random": "Random baseline",
    "semiclipped": "Semi-Clipped",
    "clip": "CLIP",
    "siglip": "SigLIP",
    "vicreg": "VICReg",
    "dcca": "DCCA",
    "kd": "KD",
    "shake": "SHAKE",
    "c2kd": "C2KD",
}


def add_common_args(parser: argparse.ArgumentParser, *, epochs: int) -> None:
    """Seeds, training settings, threads and output of every script."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default: {epochs})")
    parser.add_argument("--batch-size", type=int, default=64, help="minibatch size (default: 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the student adapter (default: 1e-3)")
    parser.add_argument("--optimizer", default="sgd", help="sgd (the authors'), adamw or adam (default: sgd)")
    parser.add_argument("--sim-seed", type=int, default=0, help="seed of the simulated data (default: 0)")
    parser.add_argument(
        "--n-controls", type=int, default=32, help="controls per batch of the simulated screens (default: 32)"
    )
    parser.add_argument(
        "--clip",
        type=float,
        default=1.0,
        help="gradient-norm clipping of every method, 0 for none (default: 1.0; PEA's corrections fitted on few "
        "controls reach values of a few hundred, on which the unnormalised losses, VICReg's first, diverge)",
    )
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file written (default: docs/benchmarks/)")


def setup(args: argparse.Namespace) -> None:
    """Quiet logging, CPU threads."""
    import logging
    import warnings

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def fit_kwargs(args: argparse.Namespace) -> dict:
    """Training settings shared by every method of a run."""
    return {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "accelerator": args.accelerator,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "gradient_clip_val": args.clip or None,
    }


def simulated(seed: int, *, n_controls: int) -> tuple:
    """The simulated HUVEC-like compound screen (student, teacher) and its out-of-distribution knockout screen."""
    import scsemiclip as ssc

    data = ssc.datasets.simulate_weakly_paired(rng=seed, n_controls=n_controls)
    return data["student"], data["teacher"], data["ood"]


def pm(mean: float, std: float, *, scale: float = 1.0, n: int | None = None, n_seeds: int | None = None) -> str:
    """``mean ± std`` with two decimals (``std`` omitted when undefined), flagging runs that did not finish.

    ``n`` of ``n_seeds`` seeds gave a finite score (the others diverged).
    """
    if mean != mean:  # NaN
        return "diverged" if n == 0 else "n/a"
    text = f"{scale * mean:.2f}" if std != std else f"{scale * mean:.2f} ± {scale * std:.2f}"
    if n is not None and n_seeds is not None and n < n_seeds:
        text += f" ({n_seeds - int(n)} of {n_seeds} seeds diverged)"
    return text


def summary_markdown(summary, *, metrics: dict[str, tuple[str, float]], n_seeds: int) -> str:
    """A ``tl.benchmark_summary`` table as markdown: mean ± std per dataset and metric, arrows and p for PEA rows.

    ``metrics`` maps a metric column to its header and display scale (e.g. recall x 100); cells with fewer than
    ``n_seeds`` finite scores are flagged.
    """
    datasets = list(dict.fromkeys(summary.columns.get_level_values("dataset")))
    summary = summary.sort_index(axis=1)  # lexsorted columns for fast lookups (the dataset order is kept above)
    header = ["Method"] + [f"{d}: {label}" for d in datasets for label, _ in metrics.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, use_pea in summary.index:
        name = NAMES.get(method, method) + (" + PEA" if use_pea else "")
        cells = [name]
        for dataset in datasets:
            for metric, (_, scale) in metrics.items():
                stats = summary.loc[(method, use_pea), (dataset, metric)]
                cell = pm(stats["mean"], stats["std"], scale=scale, n=stats["n"], n_seeds=n_seeds)
                if use_pea and (method, False) in summary.index and stats["p_value"] == stats["p_value"]:
                    before = summary.loc[(method, False), (dataset, metric, "mean")]
                    arrow = "↑" if stats["mean"] > before else "↓" if stats["mean"] < before else "="
                    cell = f"{arrow} {cell} (p={stats['p_value']:.2g})"
                cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment() -> str:
    """Device and versions, one markdown line."""
    import numpy as np
    import torch

    import scsemiclip

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = models[0] if models else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"Device: {cpu}, {os.cpu_count()} logical cores ({torch.get_num_threads()} torch threads), {gpu}. "
        f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"scsemiclip {scsemiclip.__version__} ({_SOURCE_AT_START}"
        + ("" if _source_version() == _SOURCE_AT_START else "; the sources changed during the run")
        + ")."
    )


def _source_version() -> str:
    """The repository commit of the run, with a note when the working tree differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {commit}" + (", with uncommitted changes in src/" if dirty else "")


def write_report(path: Path, *, title: str, body: str, seconds: float) -> None:
    """Write a markdown page with the command that made it, the date, the environment and ``body``."""
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    today = datetime.date.today().isoformat()
    text = (
        f"---\norphan: true\n---\n\n# {title}\n\n"
        f"Made with `{command}` (from the repository root) on {today}, in {seconds / 60:.1f} min.\n"
        f"{environment()}\n\n{body.strip()}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"Wrote {path}.")


#: The source version when the script started (the data and the models are made from it).
_SOURCE_AT_START = _source_version()
