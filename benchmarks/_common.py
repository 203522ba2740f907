"""Shared pieces of the reproduction scripts (table1-3.py, figure2b.py, figure3.py): data, settings, markdown output."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import warnings
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
    "default": "Semi-Clipped (default: auto schedule and recipe)",
}


#: Default training seeds: with n seeds the two-sided exact Wilcoxon test cannot give less than 2 / 2**n, so 6 is the
#: fewest that can reach p < 0.05 (the paper uses 5 or 15).
SEEDS = (0, 1, 2, 3, 4, 5)

#: The paper's training settings per method (appendix A.2; Semi-Clipped: section 4): the student (Tx) adapter's peak
#: learning rate ``lr``, the epochs, the final learning rate ``lr_min`` of the cosine schedule, and the batch size
#: where the paper gives one. The other learning rates of the appendix (teacher adapters, classifiers, shadow
#: head) are ratios to the adapter's that the objectives' defaults already encode (``Objective.lr_scales``), as
#: are the loss settings (KD / SHAKE: T 9, alpha 10, beta 0.001; C2KD: T 2, Kendall threshold 0.3; Semi-Clipped and
#: SigLIP: temperature 0.1). The paper gives nothing for CLIP: it gets Semi-Clipped's settings.
PAPER_SETTINGS: dict[str, dict[str, float]] = {
    "semiclipped": {"lr": 1e-3, "max_epochs": 150, "lr_min": 0.0, "batch_size": 1024},
    "clip": {"lr": 1e-3, "max_epochs": 150, "lr_min": 0.0, "batch_size": 1024},
    "siglip": {"lr": 0.1, "max_epochs": 10, "lr_min": 1e-10},
    "vicreg": {"lr": 0.1, "max_epochs": 10, "lr_min": 1e-10},
    "dcca": {"lr": 1e-6, "max_epochs": 50, "lr_min": 1e-10},
    "kd": {"lr": 0.1, "max_epochs": 10, "lr_min": 1e-10},
    "shake": {"lr": 0.1, "max_epochs": 10, "lr_min": 1e-10},
    "c2kd": {"lr": 0.1, "max_epochs": 30, "lr_min": 1e-7},
}
#: Paper settings replaced on the simulated screen, with the reason: method -> (the settings that replace the paper's,
#: the note printed in the report). Empty: with SGD and gradient-norm clipping at 1.0 every method trains without
#: divergence at its paper settings there (docs/benchmarks.md, "Training settings"); without clipping VICReg, KD and
#: SHAKE diverge at learning rate 0.1 (hence ``--clip 1.0``, the default).
PAPER_FALLBACKS: dict[str, tuple[dict[str, float], str]] = {}
#: ``--settings`` choices.
SETTINGS = ("paper", "uniform")


def add_common_args(parser: argparse.ArgumentParser, *, epochs: int, settings: str = "paper") -> None:
    """Seeds, training settings, threads and output of every script."""
    seeds = " ".join(map(str, SEEDS))
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help=f"training seeds (default: {seeds}; fewer than 6 cannot give a two-sided Wilcoxon p below 0.05)",
    )
    parser.add_argument(
        "--settings",
        choices=SETTINGS,
        default=settings,
        help="paper: every method with the paper's learning rate, epochs, final learning rate and batch size "
        "(PAPER_SETTINGS, with PAPER_FALLBACKS where they diverge here); uniform: every method with --lr, "
        f"--epochs and --batch-size (default: {settings})",
    )
    parser.add_argument(
        "--epochs", type=int, default=epochs, help=f"training epochs with --settings uniform (default: {epochs})"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="minibatch size with --settings uniform, and of the methods the paper gives none for (default: 64)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="learning rate of the student adapter with --settings uniform (default: 1e-3)",
    )
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


def add_default_args(parser: argparse.ArgumentParser) -> None:
    """The option of the scripts with rows of Semi-Clipped's default fit (:func:`default_fit`)."""
    parser.add_argument(
        "--default-max-epochs",
        type=int,
        default=None,
        help="most epochs of the default fit (default: its schedule's, 150; fewer for smoke runs only)",
    )


def setup(args: argparse.Namespace) -> None:
    """Refuse at once a run that would publish from uncommitted sources (see :func:`check_publishable`); quiet
    logging, CPU threads."""
    import logging
    import warnings

    import torch

    if hasattr(args, "out"):
        check_publishable(args.out or DOCS / "page.md")

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def fit_kwargs(args: argparse.Namespace) -> dict:
    """Training settings shared by every method of a run: the paper's schedule (no validation split, no early
    stopping, full whitening; ``tl.fit_semiclipped(schedule="paper")``) with the run's epochs and batch size."""
    return {
        "schedule": "paper",
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "accelerator": args.accelerator,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "gradient_clip_val": args.clip or None,
    }


def _paper_settings(method: str) -> tuple[dict[str, float], str]:
    """The settings a method trains with under ``--settings paper`` (its :data:`PAPER_SETTINGS` with its
    :data:`PAPER_FALLBACKS` applied) and the note on the replacement (``""`` when there is none)."""
    replaced, note = PAPER_FALLBACKS.get(method, ({}, ""))
    return dict(PAPER_SETTINGS[method]) | replaced, note


def method_settings(args: argparse.Namespace, methods) -> dict[str, dict]:
    """Per-method keyword arguments of ``tl.benchmark`` (its ``method_kwargs``) for ``args.settings``.

    ``"uniform"``: none (every method trains with ``fit_kwargs(args)`` and ``args.epochs``). ``"paper"``: each
    method's :data:`PAPER_SETTINGS` (with :data:`PAPER_FALLBACKS` applied): ``lr``, ``max_epochs``, ``batch_size``
    where given, and ``plan_kwargs={"lr_min": ...}`` (the final learning rate of the plan's cosine schedule).
    """
    if args.settings == "uniform":
        return {}
    out = {}
    for method in methods:
        settings, _ = _paper_settings(method)
        lr_min = settings.pop("lr_min", 0.0)
        out[method] = {**settings, "plan_kwargs": {"lr_min": lr_min}}
    return out


def settings_markdown(args: argparse.Namespace, methods) -> str:
    """The training settings of every method as markdown (a sentence for uniform settings, a table for the paper's)."""
    clip = f"gradient-norm clipping at {args.clip or 'none'}"
    if args.settings == "uniform":
        return (
            f"Uniform settings: {args.epochs} epochs, batch size {args.batch_size}, {args.optimizer} with learning "
            f"rate {args.lr} (cosine schedule to 0) and {clip} for every method."
        )
    lines = [
        f"The paper's settings per method (appendix A.2; `--settings paper`), {args.optimizer} with {clip} for every "
        "method; the teacher-side and classifier learning rates are the paper's ratios to the adapter's (the "
        "objectives' defaults):\n",
        "| Method | adapter lr | final lr | epochs | batch size | note |",
        "|---|---|---|---|---|---|",
    ]
    for method in methods:
        paper = PAPER_SETTINGS[method]
        used, note = _paper_settings(method)
        if method == "clip":
            note = "the paper gives none: Semi-Clipped's"
        cells = []
        for key in ("lr", "lr_min", "max_epochs", "batch_size"):
            value = used.get(key, args.batch_size if key == "batch_size" else None)
            text = f"{value:g}"
            if key in paper and used[key] != paper[key]:
                text += f" (paper: {paper[key]:g})"
            elif key == "batch_size" and key not in paper:
                text += " (paper: not given)"
            cells.append(text)
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + f" | {note} |")
    return "\n".join(lines)


def simulated(seed: int, *, n_controls: int) -> tuple:
    """The simulated HUVEC-like compound screen (student, teacher) and its out-of-distribution screens.

    Returns ``(student, teacher, ood_sets)`` with ``ood_sets`` the name -> AnnData of the evaluation screens:
    ``"sim-OOD"`` (the HUVEC-like knockout screen, ``data["ood"]``) and, when the simulator makes it,
    ``"sim-SC-OOD"`` (the RPE1-like single-cell knockout screen, ``data["ood_sc"]``); without it a note is printed.
    """
    import scsemiclip as ssc

    data = ssc.datasets.simulate_weakly_paired(rng=seed, n_controls=n_controls)
    ood_sets = {"sim-OOD": data["ood"]}
    if "ood_sc" in data:
        ood_sets["sim-SC-OOD"] = data["ood_sc"]
    else:
        print(
            "Note: this simulate_weakly_paired makes no single-cell out-of-distribution screen ('ood_sc'); "
            "evaluating on sim-OOD only.",
            flush=True,
        )
    return data["student"], data["teacher"], ood_sets


def scvi_encoder(student, ood_sets: dict, *, epochs: int, seed: int):
    """Train scVI (32 latent dimensions, minibatches of 256, CPU) on the student's counts; write
    ``obsm["X_scVI"]`` (the posterior mean) into ``student`` and, the model frozen, into every set of ``ood_sets``;
    return the model."""
    import scvi

    counts = student.copy()
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(counts)
    vae = scvi.model.SCVI(counts, n_latent=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False, batch_size=256)
    student.obsm["X_scVI"] = vae.get_latent_representation()
    for data in ood_sets.values():
        copy = data.copy()
        scvi.model.SCVI.setup_anndata(copy)
        data.obsm["X_scVI"] = vae.get_latent_representation(copy)
    return vae


def default_fit(
    student,
    *,
    teacher,
    seeds,
    student_rep: str,
    teacher_rep: str,
    pair_keys,
    accelerator: str,
    max_epochs: int | None = None,
    **scoring,
) -> tuple:
    """Semi-Clipped with ``tl.fit_semiclipped``'s defaults (``schedule="auto"``, ``recipe="auto"``), scored as
    ``tl.benchmark`` scores every other row.

    ``tl.benchmark`` gives every fit its ``pea`` flag, which fixes the recipe; so, per seed, the default fit on a
    light copy of ``student`` names the recipe it chooses by its pilot fits on the validation split, then
    ``tl.benchmark`` trains that recipe with the auto schedule (the default fit's final fit, bit for bit: same
    seed, split and settings) and scores it. ``max_epochs``: the schedule's (150) unless given (smoke runs).
    ``scoring``: further arguments of ``tl.benchmark`` (``ood_sets``, ``interpretability``,
    ``interpretability_kwargs``, ...); no other training setting is passed (the defaults: SGD at 1e-3, no gradient
    clipping).

    Returns
    -------
    ``(rows, chosen)``: the rows of ``tl.benchmark`` (method ``"semiclipped"``, ``pea`` that of the chosen recipe)
    with a column ``recipe``, and seed -> the recipe chosen.
    """
    import anndata as ad
    import pandas as pd

    import scsemiclip as ssc
    from scsemiclip.model import RECIPES

    keys = {"student_rep": student_rep, "teacher_rep": teacher_rep, "pair_keys": pair_keys}
    quiet = {"accelerator": accelerator, "enable_progress_bar": False, "enable_model_summary": False}
    epochs = {} if max_epochs is None else {"max_epochs": max_epochs}
    light = ad.AnnData(obs=student.obs.copy(), obsm={student_rep: student.obsm[student_rep]})
    frames, chosen = [], {}
    for seed in seeds:
        model = ssc.tl.fit_semiclipped(light, teacher, rng=seed, **keys, **quiet, **epochs)
        recipe = chosen[seed] = model.init_args["recipe"]
        df = ssc.tl.benchmark(
            student,
            teacher=teacher,
            methods=("semiclipped",),
            seeds=(seed,),
            pea=RECIPES[recipe]["pea"],
            baselines=(),
            method_kwargs={"semiclipped": {"recipe": recipe}},
            **keys,
            **quiet,
            **epochs,
            **scoring,
        )
        frames.append(df.assign(recipe=recipe))
    return pd.concat(frames, ignore_index=True), chosen


def default_text(chosen: dict, *, max_epochs: int | None = None) -> str:
    """The reports' sentence on the rows of :func:`default_fit`, naming the recipe chosen per seed (``chosen``)."""
    choices = ", ".join(f"seed {seed}: {recipe}" for seed, recipe in chosen.items())
    return (
        '`tl.fit_semiclipped` with its defaults, whatever the run\'s settings (`schedule="auto"`: 10 % of the pairing '
        "keys held out, minibatches of at most 1/16 of the training pairs, early stopping with patience 15, at most "
        + ("150 epochs" if max_epochs is None else f"{max_epochs} epochs (the default: 150)")
        + ', SGD at 1e-3, no gradient clipping; `recipe="auto"`: the recipe chosen by pilot fits on the '
        "validation split), that recipe then trained with the auto schedule and scored as the other rows by "
        f"`tl.benchmark`; the recipe chosen per seed: {choices}."
    )


def describe_ood(ood_sets: dict) -> str:
    """``"sim-OOD (1296 samples), ..."``: the evaluation screens and their sizes, for the reports."""
    return ", ".join(f"{name} ({data.n_obs} samples)" for name, data in ood_sets.items())


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
        + ("" if _source_tree() == _SOURCE_TREE_AT_START else "; the sources changed during the run")
        + ")."
    )


def _git(*args: str) -> str | None:
    """Output of ``git <args>`` in the repository, ``None`` when git or the repository is unavailable."""
    root = Path(__file__).resolve().parents[1]
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def _source_changes() -> str | None:
    """``git status`` of ``src/`` (changed and untracked files; empty when clean), ``None`` without git."""
    return _git("status", "--porcelain", "--", "src")


def _source_version() -> str:
    """The repository commit of the run, with a note when the working tree differs from it."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _source_changes()
    if commit is None or dirty is None:
        return "commit unknown"
    return f"commit {commit.strip()}" + (", with uncommitted changes in src/" if dirty.strip() else "")


def check_publishable(path: Path) -> None:
    """Exit with a message when ``path`` is a published page (under ``docs/benchmarks/``) and the sources do not
    name a commit: ``src/`` had uncommitted changes when the script started, or changed during the run.

    A published result must be regenerated from a committed tree, whose commit its page names; write elsewhere
    with ``--out`` to try uncommitted changes.
    """
    if not path.resolve().is_relative_to(DOCS.resolve()):
        return
    rel = os.path.relpath(path)
    if _CHANGES_AT_START is None:
        reason = "git cannot name the commit of the sources"
    elif _CHANGES_AT_START.strip():
        files = ", ".join(line[3:] for line in _CHANGES_AT_START.splitlines()[:5])
        reason = f"src/ has uncommitted changes ({files})"
    elif _source_tree() != _SOURCE_TREE_AT_START:
        reason = "the sources changed during the run"
    else:
        return
    sys.exit(
        f"Not writing the published page {rel}: {reason}. A published result is made from a committed tree, whose "
        "commit the page names: commit first, or write elsewhere with --out."
    )


def _source_tree() -> str:
    """The content of ``src/``: its tree in the last commit and the uncommitted changes to it (commits that touch
    only other files, e.g. these reports, leave it unchanged)."""
    return f"{_git('rev-parse', 'HEAD:src')}\n{_git('diff', 'HEAD', '--', 'src')}"


def write_table(args: argparse.Namespace, name: str, table) -> Path:
    """Write ``table`` (a DataFrame) as ``<name>.csv`` beside the report; return the report's path (``--out``)."""
    out = args.out or DOCS / f"{name}.md"
    check_publishable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    return out


def write_report(path: Path, *, title: str, body: str, seconds: float) -> None:
    """Write a markdown page with the command that made it, the date, the environment and ``body``."""
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    check_publishable(path)
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
_CHANGES_AT_START = _source_changes()
_SOURCE_AT_START = _source_version()
_SOURCE_TREE_AT_START = _source_tree()
