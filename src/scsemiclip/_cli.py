"""The ``scsemiclip`` command: ``quickstart`` (the README's main job), ``fit``, ``apply`` and ``evaluate``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from scsemiclip._settings import settings

QUICKSTART_PNG = "scsemiclip_quickstart.png"


class CLIError(Exception):
    """A usage error (a bad option or path), reported as one line without a traceback; exit status 2."""


class DataError(Exception):
    """An error in the data read (a file that is not an AnnData, a corrupt model), one line; exit status 1."""


#: Accelerator names accepted by ``--accelerator`` (Lightning's).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _read_h5ad(path: str, what: str):
    import anndata as ad

    try:
        return ad.read_h5ad(Path(path))
    except Exception as err:  # any failure of the reader means the file is not a readable AnnData
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{what} file {path} is not a readable AnnData .h5ad file ({detail}).") from err


def _check_input(path: str, option: str, *, directory: bool = False) -> None:
    p = Path(path)
    if directory and not p.is_dir():
        raise CLIError(f"{option} {path} is not a directory.")
    if not directory and not p.is_file():
        raise CLIError(f"{option} file not found: {path}" if not p.exists() else f"{option} {path} is not a file.")


def _check_output(path: str, option: str, *, directory: bool = False) -> None:
    """An output path must be writable before any data is read (a file: its folder exists; a directory: creatable)."""
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise CLIError(f"{option} {path} is a file; give a directory.")
    if not directory and p.is_dir():
        raise CLIError(f"{option} {path} is a directory; give a file path.")
    folder = p if directory and p.exists() else p.parent
    while directory and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CLIError(f"{option} {path}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {path}: the folder {folder} is not writable.")


def _check_args(args: argparse.Namespace) -> None:
    """Validate every option and path of a command before any data is read; raises :class:`CLIError`."""
    from scsemiclip._validate import check_int, check_real

    try:
        for option in ("epochs", "batch_size", "interpretability_epochs", "null_size"):
            if hasattr(args, option):
                check_int(getattr(args, option), name="--" + option.replace("_", "-"), minimum=1)
        if hasattr(args, "seed"):
            check_int(args.seed, name="--seed", minimum=0)
        if hasattr(args, "lr"):
            check_real(args.lr, name="--lr", low=0, low_open=True)
    except (TypeError, ValueError) as err:
        raise CLIError(str(err).replace("`", "")) from err
    for option in ("student", "teacher", "adata"):
        if hasattr(args, option):
            _check_input(getattr(args, option), f"--{option}")
    if args.command == "apply":
        _check_input(args.model_dir, "--model-dir", directory=True)
    elif getattr(args, "model_dir", None):
        _check_output(args.model_dir, "--model-dir", directory=True)
    for option in ("out", "plot"):
        if getattr(args, option, None):
            _check_output(getattr(args, option), f"--{option}")


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
    try:
        model = ssc.model.SemiClipped.load(args.model_dir, adata=adata)
    except (ValueError, FileNotFoundError) as err:
        raise DataError(f"--model-dir {args.model_dir}: {err}") from err
    ssc.tl.apply_semiclipped(
        adata, model, batch_key=args.batch_key, control_key=args.control_key, key_added=args.key_added
    )
    adata.write_h5ad(args.out)
    print(f"Wrote {args.out} with obsm[{args.key_added!r}].")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate embeddings of one .h5ad with every metric (``tl.evaluate_map``); print the table, optionally plot it."""
    import scsemiclip as ssc

    adata = _read_h5ad(args.adata, "--adata")
    table = ssc.tl.evaluate_map(
        adata,
        use_reps=args.use_rep,
        metrics=args.metrics,
        perturbation_key=args.perturbation_key,
        batch_key=args.batch_key,
        control_key=args.control_key,
        output_tvn=not args.no_tvn,
        annotations=args.annotations,
        null_size=args.null_size,
        interpretability=args.interpretability,
        protocol=args.protocol,
        rng=args.seed,
    )
    result = adata.uns["evaluate_map"]
    print("\nEvaluation of the map (value; fractions for the significance metrics, 0-100 for interpretability):")
    print(
        table.pivot(index="metric", columns="representation", values="value")
        .reindex(index=list(dict.fromkeys(table["metric"])), columns=list(dict.fromkeys(table["representation"])))
        .round(4)
        .to_string()
    )
    if "recall" in result["params"]["metrics"]:
        recall = pd.DataFrame({label: d["recall"]["recall"] for label, d in result["details"].items()}).T
        print("\nKnown-relationship recall per database (%, two-sided):")
        print((recall * 100).round(2).to_string())
    for family, reason in result["skipped"].items():
        print(f"skipped {family}: {reason}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        drawn = ssc.pl.evaluation_summary(table)  # the Axes of a single metric, else the Figure
        fig = drawn if hasattr(drawn, "savefig") else drawn.figure
        fig.savefig(args.plot, dpi=120)
        print(f"Wrote {args.plot}.")


def _none(value: str) -> str | None:
    return None if value.lower() in ("none", "") else value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2)."""

    def error(self, message: str) -> None:
        """Print ``message`` on one line and exit with status 2 (argparse prints the usage first)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scsemiclip`` command."""
    parser = _Parser(
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
    q.add_argument("--accelerator", default="auto", choices=ACCELERATORS, help="Lightning accelerator (default: auto)")
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
    f.add_argument("--accelerator", default="auto", choices=ACCELERATORS, help="Lightning accelerator (default: auto)")
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
        "evaluate",
        help="evaluate embeddings in a .h5ad: recall, mAP, perturbation signal, interpretability",
        description=cmd_evaluate.__doc__,
    )
    e.add_argument("--adata", required=True, help="input .h5ad")
    e.add_argument("--use-rep", nargs="+", required=True, help="obsm key(s) to evaluate")
    e.add_argument(
        "--metrics",
        nargs="+",
        help="metric families among recall, phenotypic_activity, phenotypic_consistency, perturbation_consistency, "
        "perturbation_magnitude, interpretability (default: all that the data allow)",
    )
    e.add_argument("--perturbation-key", default="perturbation", help="obs perturbation column")
    e.add_argument("--batch-key", type=_none, default="batch", help="obs batch column (default: batch)")
    e.add_argument("--control-key", type=_none, default="is_control", help="obs boolean control column, or none")
    e.add_argument("--no-tvn", action="store_true", help="do not TVN-correct embeddings before the map metrics")
    e.add_argument(
        "--annotations", default="CORUM", help="phenotypic consistency labels: obs column or gene sets (default: CORUM)"
    )
    e.add_argument("--null-size", type=int, default=10000, help="random rankings of each mAP null (default: 10000)")
    e.add_argument(
        "--interpretability", action="store_true", help="also score interpretability preservation (trains a decoder)"
    )
    e.add_argument(
        "--protocol",
        choices=("auto", "paper"),
        default="auto",
        help="interpretability decoder budget: auto (fits at any size) or paper (Tx-Evaluation's; default: auto)",
    )
    e.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    e.add_argument("--plot", help="write the evaluation summary (one panel per metric) to this PNG")
    e.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scsemiclip`` console script; returns the exit status.

    0 on success; 2 for a usage error (a bad option value, a missing input, an unwritable output, a key the data
    does not have); 1 for a data error (an unreadable file, a corrupt model, data a step rejects). Every error is
    one line on stderr, without a traceback.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(message)s")
    if args.verbose:
        settings.verbosity = "info"
    try:
        _check_args(args)
        args.func(args)
    except (CLIError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"scsemiclip {args.command}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2
    except (DataError, ValueError, OSError) as err:
        print(f"scsemiclip {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
