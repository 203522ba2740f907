"""The ``scsemiclip`` command: ``quickstart`` (the README's main job), ``fit``, ``apply`` and ``evaluate``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from scsemiclip._settings import settings

QUICKSTART_PNG = "scsemiclip_quickstart.png"


class CLIError(Exception):
    """An error reported as one line, without a traceback."""


def _read_h5ad(path: str, what: str):
    import anndata as ad

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{what} file not found: {path}")
    try:
        return ad.read_h5ad(p)
    except OSError as err:
        raise CLIError(f"{what} file {path} is not a readable .h5ad file ({err}).") from err


def _print_table(summary: pd.DataFrame) -> None:
    recall_cols = [c for c in summary.columns if c != "interpretability"]
    shown = summary.copy()
    shown[recall_cols] = shown[recall_cols] * 100
    print("\nKnown-relationship recall (%, two-sided 5 %) and interpretability preservation (0-100):")
    print(shown.round(2).to_string())


def cmd_quickstart(args: argparse.Namespace) -> None:
    """Simulate, train Semi-Clipped with PEA, evaluate on the out-of-distribution screen, plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import scsemiclip as ssc

    start = time.perf_counter()
    data = ssc.datasets.simulate_weakly_paired(rng=args.seed)
    student, teacher, ood = data["student"], data["teacher"], data["ood"]
    print(
        f"Simulated: {student.n_obs} transcriptomics and {teacher.n_obs} microscopy samples of a compound screen "
        f"(weak pairs by compound + dose), {ood.n_obs} out-of-distribution knockout samples."
    )
    model = ssc.tl.fit_semiclipped(
        student,
        teacher,
        student_rep=args.student_rep,
        teacher_rep=args.teacher_rep,
        pair_keys=("perturbation", "dose"),
        pea=not args.no_pea,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        accelerator=args.accelerator,
        rng=args.seed,
    )
    ssc.tl.apply_semiclipped(ood, model, key_added="X_semiclipped")
    ssc.tl.random_baseline(ood, use_rep=args.student_rep, key_added="X_random", rng=args.seed)
    summary, tables = ssc.tl.evaluate_representations(
        ood,
        use_reps={"unimodal": args.student_rep, "semiclipped": "X_semiclipped", "random": "X_random"},
        max_epochs=args.interpretability_epochs,
        batch_size=32,
        lr=1e-3,
        rng=args.seed,
    )
    _print_table(summary)
    fig, ax = plt.subplots(figsize=(7, 4))
    ssc.pl.recall(tables, ax=ax)
    ax.set_title("Out-of-distribution knockout screen")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"\nWrote {args.out} ({time.perf_counter() - start:.0f} s in all).")


def cmd_fit(args: argparse.Namespace) -> None:
    """Train on a student and a teacher .h5ad, write the student with ``obsm[key_added]``."""
    import scsemiclip as ssc

    student = _read_h5ad(args.student, "--student")
    teacher = _read_h5ad(args.teacher, "--teacher")
    model = ssc.tl.fit_semiclipped(
        student,
        teacher,
        student_rep=args.student_rep,
        teacher_rep=args.teacher_rep,
        pair_keys=tuple(args.pair_keys),
        batch_key=args.batch_key,
        control_key=args.control_key,
        objective=args.objective,
        pea=not args.no_pea,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        accelerator=args.accelerator,
        rng=args.seed,
        key_added=args.key_added,
    )
    student.write_h5ad(args.out)
    print(f"Wrote {args.out} with obsm[{args.key_added!r}].")
    if args.model_dir:
        model.save(args.model_dir, overwrite=True)
        print(f"Saved the model to {args.model_dir}.")


def cmd_apply(args: argparse.Namespace) -> None:
    """Apply a saved model to a new .h5ad."""
    import scsemiclip as ssc

    adata = _read_h5ad(args.adata, "--adata")
    if not Path(args.model_dir).is_dir():
        raise CLIError(f"--model-dir {args.model_dir} is not a directory.")
    model = ssc.model.SemiClipped.load(args.model_dir, adata=adata)
    ssc.tl.apply_semiclipped(
        adata, model, batch_key=args.batch_key, control_key=args.control_key, key_added=args.key_added
    )
    adata.write_h5ad(args.out)
    print(f"Wrote {args.out} with obsm[{args.key_added!r}].")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Print the recall (and interpretability) table of embeddings of one .h5ad; optionally plot it."""
    import scsemiclip as ssc

    adata = _read_h5ad(args.adata, "--adata")
    summary, tables = ssc.tl.evaluate_representations(
        adata,
        use_reps=args.use_rep,
        perturbation_key=args.perturbation_key,
        batch_key=args.batch_key,
        control_key=args.control_key,
        output_tvn=not args.no_tvn,
        interpretability=args.interpretability,
        rng=args.seed,
    )
    _print_table(summary)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ssc.pl.recall(tables, ax=ax)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"Wrote {args.plot}.")


def _none(value: str) -> str | None:
    return None if value.lower() in ("none", "") else value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scsemiclip`` command."""
    parser = argparse.ArgumentParser(
        prog="scsemiclip",
        description="Distil microscopy knowledge into transcriptomics embeddings (Semi-Clipped + PEA).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress of every step")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    q = sub.add_parser(
        "quickstart",
        help="simulated end-to-end run: train with PEA, evaluate out of distribution, print a table, write a plot",
        description="Simulate a weakly paired compound screen (transcriptomics + microscopy) and an out-of-"
        "distribution knockout screen, train Semi-Clipped with PEA, evaluate recall and interpretability against "
        "the unimodal and random baselines, print the table and write the recall plot.",
    )
    q.add_argument("--epochs", type=int, default=60, help="training epochs (default: 60)")
    q.add_argument("--batch-size", type=int, default=256, help="minibatch size (default: 256)")
    q.add_argument(
        "--interpretability-epochs",
        type=int,
        default=60,
        help="epochs of the interpretability decoder (default: 60; with minibatches of 32 and lr 1e-3, since the "
        "paper's 512 / 1e-4 leave a decoder on ~1,000 samples untrained)",
    )
    q.add_argument("--no-pea", action="store_true", help="train without PEA")
    q.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    q.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default: auto)")
    q.add_argument("--student-rep", default="X_emb", help=argparse.SUPPRESS)
    q.add_argument("--teacher-rep", default="X_phenom", help=argparse.SUPPRESS)
    q.add_argument("--out", default=QUICKSTART_PNG, help=f"recall plot (default: {QUICKSTART_PNG})")
    q.set_defaults(func=cmd_quickstart)

    f = sub.add_parser("fit", help="train on a student and a teacher .h5ad", description=cmd_fit.__doc__)
    f.add_argument("--student", required=True, help="student (transcriptomics) .h5ad")
    f.add_argument("--teacher", required=True, help="teacher (microscopy) .h5ad")
    f.add_argument("--student-rep", default="X_scVI", help="student obsm key (default: X_scVI)")
    f.add_argument("--teacher-rep", default="X_phenom", help="teacher obsm key (default: X_phenom)")
    f.add_argument("--pair-keys", nargs="+", default=["perturbation"], help="obs columns defining weak pairs")
    f.add_argument("--batch-key", type=_none, default="batch", help="obs batch column (default: batch)")
    f.add_argument("--control-key", type=_none, default="is_control", help="obs boolean control column")
    f.add_argument("--objective", default="semiclipped", help="training objective (default: semiclipped)")
    f.add_argument("--no-pea", action="store_true", help="train without PEA")
    f.add_argument("--epochs", type=int, default=150, help="training epochs (default: 150)")
    f.add_argument("--batch-size", type=int, default=1024, help="minibatch size (default: 1024)")
    f.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    f.add_argument("--accelerator", default="auto", help="Lightning accelerator (default: auto)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    f.add_argument("--key-added", default="X_semiclipped", help="obsm key written (default: X_semiclipped)")
    f.add_argument("--model-dir", help="also save the trained model to this directory")
    f.add_argument("--out", required=True, help="output .h5ad (the student with the new embedding)")
    f.set_defaults(func=cmd_fit)

    a = sub.add_parser("apply", help="apply a saved model to a new .h5ad", description=cmd_apply.__doc__)
    a.add_argument("--adata", required=True, help="input .h5ad (same student embedding as in training)")
    a.add_argument("--model-dir", required=True, help="directory written by `scsemiclip fit --model-dir`")
    a.add_argument("--batch-key", type=_none, default="batch", help="obs batch column (default: batch)")
    a.add_argument("--control-key", type=_none, default="is_control", help="obs boolean control column")
    a.add_argument("--key-added", default="X_semiclipped", help="obsm key written (default: X_semiclipped)")
    a.add_argument("--out", required=True, help="output .h5ad")
    a.set_defaults(func=cmd_apply)

    e = sub.add_parser(
        "evaluate", help="known-relationship recall of embeddings in a .h5ad", description=cmd_evaluate.__doc__
    )
    e.add_argument("--adata", required=True, help="input .h5ad")
    e.add_argument("--use-rep", nargs="+", required=True, help="obsm key(s) to evaluate")
    e.add_argument("--perturbation-key", default="perturbation", help="obs perturbation column")
    e.add_argument("--batch-key", type=_none, default="batch", help="obs batch column (default: batch)")
    e.add_argument("--control-key", type=_none, default="is_control", help="obs boolean control column, or none")
    e.add_argument("--no-tvn", action="store_true", help="do not TVN-correct embeddings before aggregation")
    e.add_argument("--interpretability", action="store_true", help="also score interpretability preservation")
    e.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    e.add_argument("--plot", help="write a recall bar plot to this PNG")
    e.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scsemiclip`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(message)s")
    if args.verbose:
        settings.verbosity = "info"
    try:
        args.func(args)
    except CLIError as err:
        print(f"scsemiclip {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"scsemiclip {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
