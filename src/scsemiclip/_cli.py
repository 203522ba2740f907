"""The ``scsemiclip`` command: ``quickstart`` (the README's main job), ``fit``, ``apply`` and ``evaluate``."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from scsemiclip._settings import settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

QUICKSTART_PNG = "scsemiclip_quickstart.png"


class CLIError(Exception):
    """A usage error (a bad option or path), reported as one line without a traceback; exit status 2."""


class DataError(Exception):
    """An error in the data read (a file that is not an AnnData, a corrupt model), one line; exit status 1."""


#: Accelerator names accepted by ``--accelerator`` (Lightning's).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: ``--recipe`` choices (``tl.fit_semiclipped``'s ``recipe``).
RECIPE_CHOICES = ("auto", "base", "inference_tvn", "pea", "pea_no_whitening")

#: Python arguments whose flag is not ``--`` and the name with dashes; those of :data:`_INVERTED` are ``--no-`` flags.
_FLAG_OF = {
    "use_reps": "--use-rep",
    "max_epochs": "--epochs",
    "rng": "--seed",
    "pea": "--no-pea",
    "output_tvn": "--no-tvn",
}
_INVERTED = frozenset({"pea", "output_tvn"})


def _in_flags(message: str, args: argparse.Namespace) -> str:
    """``message`` with the Python arguments it names (`` `name` `` or `` `name=value` ``) as the command's flags.

    The errors of the library name its arguments (``interpretability=False``); a command-line user knows the flags
    (no ``--interpretability``). Names that are not flags of the command stay as they are.
    """
    flags = {"--" + dest.replace("_", "-") for dest in vars(args)}

    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        option = _FLAG_OF.get(name, "--" + name.replace("_", "-"))
        if option not in flags:
            return match.group(0)
        if value in ("True", "False"):
            return option if (value == "True") != (name in _INVERTED) else f"no {option}"
        return option if value is None else f"{option} {value}"

    return re.sub(r"`(\w+)(?:=([^`]*))?`", flag, message)


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
        if hasattr(args, "recipe"):
            _recipe(args)
        for option in ("epochs", "batch_size", "interpretability_epochs", "null_size"):
            if getattr(args, option, None) is not None:  # None: the schedule's
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


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """``--recipe`` and its shorthand ``--no-pea`` of the commands that train."""
    parser.add_argument(
        "--recipe",
        default="auto",
        choices=RECIPE_CHOICES,
        help="training recipe (default: auto, chosen by pilot fits on held-out perturbations)",
    )
    parser.add_argument("--no-pea", action="store_true", help="train without PEA (the same as --recipe base)")


def _recipe(args: argparse.Namespace) -> str:
    """The recipe of ``--recipe``, with ``--no-pea`` as a shorthand of ``--recipe base``."""
    if args.no_pea and args.recipe not in ("auto", "base"):
        raise CLIError(f"--no-pea trains the base recipe; it contradicts --recipe {args.recipe}: give one of them.")
    return "base" if args.no_pea else args.recipe


def _print_recipe(record: dict) -> None:
    """One line: the recipe trained and how it was chosen (with the pilots' held-out scores)."""
    scores = ", ".join(f"{name} {value:.3f}" for name, value in record["scores"].items())
    print(f"Recipe: {record['chosen']} ({record['criterion']}" + (f" of the pilots: {scores})" if scores else ")"))


def _print_table(summary: pd.DataFrame) -> None:
    recall_cols = [c for c in summary.columns if c != "interpretability"]
    shown = summary.copy()
    shown[recall_cols] = shown[recall_cols] * 100
    print("\nKnown-relationship recall (%, two-sided 5 %) and interpretability preservation (0-100):")
    print(shown.to_string(float_format=lambda v: f"{v:.2f}"))


def _quickstart_figure(summary: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> Figure:
    """Recall per database beside the interpretability score, one legend for both."""
    import matplotlib.pyplot as plt

    import scsemiclip as ssc
    from scsemiclip.tl import RANDOM_LEVELS, RECALL_THRESHOLD

    fig, (ax_recall, ax_interp) = plt.subplots(1, 2, figsize=(12, 4.8), width_ratios=(3.2, 1), layout="constrained")
    ssc.pl.recall(tables, ax=ax_recall, threshold=RECALL_THRESHOLD)
    ax_recall.set_title("Known-relationship recall, out-of-distribution knockout screen", fontsize=11)
    interpretability = pd.DataFrame(
        {
            "representation": summary.index,
            "metric": "interpretability",
            "value": summary["interpretability"].to_numpy(),
            "unit": "score (0-100)",
        }
    )
    ssc.pl.evaluation_summary(interpretability, metrics="interpretability", ax=ax_interp)
    ax_interp.set_title("Interpretability preservation", fontsize=11)
    legend = ax_recall.get_legend()
    handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
    level = f"random level ({100 * RANDOM_LEVELS['recall']:g} % recall, {RANDOM_LEVELS['interpretability']:g} interpretability)"
    labels = [level if label.startswith("random level") else label for label in labels]
    for ax in (ax_recall, ax_interp):
        ax.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=10, frameon=False)
    return fig


def cmd_quickstart(args: argparse.Namespace) -> None:
    """Simulate, train Semi-Clipped with PEA, evaluate on the out-of-distribution screen, plot."""
    import matplotlib

    matplotlib.use("Agg")

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
        recipe=_recipe(args),
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        accelerator=args.accelerator,
        rng=args.seed,
    )
    _print_recipe(student.uns["X_semiclipped"]["recipe"])
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
    _quickstart_figure(summary, tables).savefig(args.out, dpi=150)
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
        recipe=_recipe(args),
        schedule=args.schedule,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        accelerator=args.accelerator,
        rng=args.seed,
        key_added=args.key_added,
    )
    _print_recipe(student.uns[args.key_added]["recipe"])
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


def _print_evaluation(table: pd.DataFrame) -> None:
    """The table of ``tl.evaluate_map`` as a reader wants it: fractions in %, the mean statistics, the caveats."""
    reps = list(dict.fromkeys(table["representation"]))
    first = table.drop_duplicates("metric").set_index("metric")
    names = {
        m: f"{m} ({'%' if row['unit'] == 'fraction' else '0-100'}){'' if row['fair_across_spaces'] else ' *'}"
        for m, row in first.iterrows()
    }
    shown = table.assign(value=table["value"].where(table["unit"] != "fraction", 100 * table["value"]))
    print("\nEvaluation of the map (recall: % of known pairs retrieved; activity, consistency, magnitude: % of")
    print("perturbations or labels significant; interpretability: score 0-100):")
    wide = shown.pivot(index="metric", columns="representation", values="value").reindex(
        index=list(names), columns=reps
    )
    print(wide.rename(index=names).round(2).to_string(float_format=lambda v: f"{v:.2f}"))
    means = table[table["mean_statistic"].notna()]
    if len(means):
        print("\nMean statistic over the scored perturbations (labels): mAP for phenotypic activity and consistency,")
        print("replicate cosine for perturbation consistency, energy distance for perturbation magnitude:")
        wide = means.pivot(index="metric", columns="representation", values="mean_statistic")
        order = [m for m in names if m in wide.index]
        print(wide.reindex(index=order, columns=reps).round(3).to_string(float_format=lambda v: f"{v:.3f}"))
    unfair = [m for m in names if not first.loc[m, "fair_across_spaces"]]
    if unfair:
        print(f"\n* {first.loc[unfair[0], 'note']}.")


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
        null=args.null,
        calibration=not args.no_calibration,
        interpretability=args.interpretability or "interpretability" in (args.metrics or ()),
        protocol=args.protocol,
        rng=args.seed,
    )
    result = adata.uns["evaluate_map"]
    _print_evaluation(table[~table["metric"].str.endswith("_calibration")])
    if "recall" in result["params"]["metrics"]:
        recall = pd.DataFrame({label: d["recall"]["recall"] for label, d in result["details"].items()}).T
        print("\nKnown-relationship recall per database (%, two-sided):")
        print((recall * 100).round(2).to_string())
    checks = {label: d["calibration"] for label, d in result["details"].items() if "calibration" in d}
    if checks:
        fdr = result["params"]["fdr"]
        print(
            f"\nCalibration check: share of pseudo-perturbations made of controls at p < {fdr} (nominal {fdr}; "
            "above its bound, the metric's p-values are not calibrated on these data):"
        )
        rates = pd.DataFrame({label: c["false_positive_rate"] for label, c in checks.items()})
        rates["bound"] = next(iter(checks.values()))["upper_bound"]
        print(rates.round(3).to_string())
    for family, reason in result["skipped"].items():
        print(f"skipped {family}: {_in_flags(reason, args)}")
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
    q.add_argument(
        "--batch-size", type=int, default=None, help="minibatch size (default: the schedule's, >= 16 steps per epoch)"
    )
    q.add_argument(
        "--interpretability-epochs",
        type=int,
        default=60,
        help="epochs of the interpretability decoder (default: 60; with minibatches of 32 and lr 1e-3, since the "
        "paper's 512 / 1e-4 leave a decoder on ~1,000 samples untrained)",
    )
    _add_recipe_options(q)
    q.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    q.add_argument("--accelerator", default="auto", choices=ACCELERATORS, help="Lightning accelerator (default: auto)")
    q.add_argument("--student-rep", default="X_emb", help=argparse.SUPPRESS)
    q.add_argument("--teacher-rep", default="X_phenom", help=argparse.SUPPRESS)
    q.add_argument(
        "--out",
        "--figure",
        default=QUICKSTART_PNG,
        metavar="PATH",
        help=f"figure of recall and interpretability (default: {QUICKSTART_PNG} in the working folder)",
    )
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
    _add_recipe_options(f)
    f.add_argument(
        "--schedule",
        default="auto",
        choices=("auto", "paper"),
        help="auto: a validation split, early stopping and >= 16 minibatches per epoch; paper: 150 epochs of 1024",
    )
    f.add_argument("--epochs", type=int, default=None, help="training epochs (default: the schedule's, at most 150)")
    f.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: the schedule's)")
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
        "--null",
        choices=("permutation", "efaar"),
        default="permutation",
        help="perturbation-signal null: permutation (cross-fitted correction, calibrated) or efaar (efaar's and "
        "copairs' numbers, not calibrated on small screens; default: permutation)",
    )
    e.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the calibration check on pseudo-perturbations made of controls (run by default)",
    )
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
        print(f"scsemiclip {args.command}: error: {_in_flags(' '.join(str(message).split()), args)}", file=sys.stderr)
        return 2
    except (DataError, ValueError, OSError) as err:
        print(f"scsemiclip {args.command}: error: {_in_flags(' '.join(str(err).split()), args)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
