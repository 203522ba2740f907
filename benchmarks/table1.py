"""The paper's Table 1: distillation methods with and without PEA, on simulated and real weakly paired data.

Run from the repository root::

    python benchmarks/table1.py [--seeds 0 1 2 3 4 5] [--settings paper|uniform] [--methods kd shake vicreg semiclipped]
                                [--scvi-epochs 100] [--skip-scvi] [--skip-real] [--out /tmp/table1.md]

Every method trains with the paper's per-method settings (``--settings paper``, the default: adapter learning rate,
epochs and final learning rate of appendix A.2, see ``_common.PAPER_SETTINGS``) or with one uniform setting
(``--settings uniform``: ``--lr``, ``--epochs``, ``--batch-size``); label-based methods pre-train the student
adapter on the pairing keys first (the objectives' ``student_pretrain_steps``).

1. Simulated HUVEC-like setting (``datasets.simulate_weakly_paired``): train on the compound screen (weak pairs by
   compound and dose), evaluate on the out-of-distribution knockout screen and, when the simulator makes it, on the
   RPE1-like single-cell knockout screen (``"ood_sc"``): known-relationship recall (x 100) after TVN on the outputs,
   the same without output TVN, and transcriptomic interpretability preservation of the raw outputs; every method
   without and with PEA (the paper's schedule, ``schedule="paper"``), plus the unimodal and random baselines and
   Semi-Clipped with ``tl.fit_semiclipped``'s defaults (``schedule="auto"``, ``recipe="auto"``; the recipe chosen
   per seed is reported; ``_common.default_fit``).
2. scVI student (unless ``--skip-scvi``): the same screens, the student embedding replaced by an scVI latent
   (``_common.scvi_encoder``: 32 dimensions, ``--scvi-epochs`` on the screen's counts, frozen and applied to the
   evaluation screens): the unimodal baseline (the latent itself), Semi-Clipped without and with PEA and with its
   defaults, scored as above.
3. Real data (unless ``--skip-real``): Replogle RPE1 Perturb-seq signatures (student) and PERISCOPE HeLa
   gene-level Cell Painting profiles (teacher), weakly paired on the shared knockout genes. Train on a random
   ``--train-fraction`` of the shared genes, evaluate on the other RPE1 genes and on the K562 signatures. These
   maps have no controls and no batches: no PEA, no TVN, no interpretability. ``--real-epochs`` and
   ``--real-batch-size`` apply to every method; ``--settings paper`` sets only the learning rates there.

Writes ``docs/benchmarks/table1.md`` (and the raw rows in ``table1.csv``).
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
import pandas as pd

#: The paper's Table 1, HUVEC-KO columns (Tx preservation, known relationships x 100; 15 seeds).
PAPER = {
    "Random baseline": ("33.92 ± 0.09", "10.37 ± 0.11"),
    "Unimodal baseline": ("52.23 ± 0.34", "16.51 ± 0.85"),
    "KD": ("52.90 ± 0.31", "16.00 ± 1.36"),
    "KD + PEA": ("54.12 ± 0.63", "20.65 ± 1.78"),
    "SHAKE": ("51.93 ± 0.80", "17.02 ± 1.02"),
    "SHAKE + PEA": ("52.93 ± 0.83", "19.98 ± 1.34"),
    "VICReg": ("51.87 ± 0.39", "17.25 ± 1.14"),
    "VICReg + PEA": ("53.76 ± 0.66", "20.46 ± 0.83"),
    "Semi-Clipped": ("52.78 ± 0.27", "19.71 ± 1.19"),
    "Semi-Clipped + PEA": ("53.87 ± 0.37", "23.05 ± 0.42"),
}
METRICS = {
    "interpretability": ("Tx preservation", 1.0),
    "recall_mean": ("Known relationships (%)", 100.0),
    "recall_mean_raw": ("Known rel., no output TVN (%)", 100.0),
}

#: The methods that pre-train the student adapter and a classifier on the pairing keys.
LABEL_BASED = ("kd", "shake", "c2kd")


def real_sets(train_fraction: float, seed: int) -> tuple:
    """RPE1 training genes (student), PERISCOPE (teacher), and the evaluation sets (held-out RPE1 genes, K562).

    The student encoder is the PCA of the RPE1 signatures (``obsm["X_pca"]``), frozen: the K562 signatures are
    projected onto it, as a frozen encoder is applied to a new screen.
    """
    import scsemiclip as ssc

    rpe1 = ssc.datasets.replogle_deg_ranks("rpe1")
    k562 = ssc.datasets.replogle_deg_ranks("k562")
    periscope = ssc.datasets.periscope_hela()
    x_k562 = pd.DataFrame(k562.X, columns=k562.var_names).reindex(columns=rpe1.var_names, fill_value=0.0)
    k562.obsm["X_pca"] = (x_k562.to_numpy() - rpe1.X.mean(axis=0)) @ rpe1.varm["PCs"]
    shared = np.intersect1d(rpe1.obs["perturbation"], periscope.obs["perturbation"])
    rng = np.random.default_rng(seed)
    train_genes = rng.choice(shared, int(round(train_fraction * shared.size)), replace=False)
    train = rpe1.obs["perturbation"].isin(train_genes).to_numpy()
    sets = {"RPE1 held-out genes": rpe1[~train].copy(), "K562": k562}
    return rpe1[train].copy(), periscope, sets, shared.size, train_genes.size


def _default_rows(student, **kwargs) -> tuple[pd.DataFrame, dict[int, str]]:
    """``_common.default_fit`` as one summary row (method ``"default"``, whatever recipe each seed chose: its
    ``recipe`` column keeps it) and the recipe chosen per seed."""
    rows, chosen = _common.default_fit(student, **kwargs)
    return rows.assign(method="default", pea=False), chosen


def _default_text(chosen: dict[int, str], max_epochs: int | None) -> str:
    """The page's sentences on the default row."""
    return (
        f"The row {_common.NAMES['default']}: {_common.default_text(chosen, max_epochs=max_epochs)} The other rows "
        'use the paper\'s schedule (`schedule="paper"`: no validation split, no early stopping).'
    )


def _scvi_section(args, student, ood_sets: dict, sim_kwargs: dict, default_kwargs: dict) -> tuple:
    """The scVI-student rows (unimodal, Semi-Clipped without and with PEA, default) and their page section."""
    import scsemiclip as ssc

    started = time.perf_counter()
    _common.scvi_encoder(student, ood_sets, epochs=args.scvi_epochs, seed=args.sim_seed)
    kwargs = sim_kwargs | {
        "methods": ("semiclipped",),
        "student_rep": "X_scVI",
        "method_kwargs": _common.method_settings(args, ["semiclipped"]),
    }
    default, chosen = _default_rows(student, student_rep="X_scVI", **default_kwargs)
    rows = pd.concat(
        [
            ssc.tl.benchmark(student, pea=False, inference_tvn=False, baselines=("unimodal",), **kwargs),
            ssc.tl.benchmark(student, pea=True, baselines=(), **kwargs),
            default,
        ],
        ignore_index=True,
    )
    summary = ssc.tl.benchmark_summary(rows, metrics=tuple(METRICS))
    text = [
        "\n## Simulated screen, scVI student\n",
        "The same screens and scores, the student embedding replaced by an scVI latent (`scvi.model.SCVI`, 32 "
        f"latent dimensions, {args.scvi_epochs} epochs in minibatches of 256 on the compound screen's counts, seed "
        f"{args.sim_seed}; frozen and applied to the evaluation screens, as `figure2b.py`'s student). Unimodal "
        "baseline: the latent itself; Semi-Clipped without PEA (raw latent at training and inference) and with PEA "
        "at the settings above. "
        + _default_text(chosen, args.default_max_epochs)
        + f" Mean ± std over seeds {args.seeds}; this section "
        f"took {(time.perf_counter() - started) / 60:.1f} min.\n",
        _common.summary_markdown(summary, metrics=METRICS, n_seeds=len(args.seeds)),
        "",
        _notes(summary, list(ood_sets), ["semiclipped"]),
    ]
    return rows.assign(setting="simulated, scVI student"), text


def _notes(summary: pd.DataFrame, datasets: list[str], methods: list[str]) -> str:
    """Agreement with the paper's findings, computed from the summary."""
    lines = ["**Comparison with the paper** (computed from the table above):"]
    for dataset in datasets:
        recall = summary[(dataset, "recall_mean", "mean")]
        unimodal = recall.get(("unimodal", False), np.nan)
        for method in methods:
            if (method, True) in recall.index and (method, False) in recall.index:
                gain = 100 * (recall[(method, True)] - recall[(method, False)])
                p_value = summary.loc[(method, True), (dataset, "recall_mean", "p_value")]
                verdict = "improves it, as in the paper" if gain > 0 else "does NOT improve it (the paper: it does)"
                lines.append(
                    f"- {dataset}, {_common.NAMES[method]}: PEA changes the recall by {gain:+.2f} points "
                    f"(p = {p_value:.2g}); {verdict}."
                )
        if (dataset, "interpretability", "mean") in summary.columns:
            tx = summary[(dataset, "interpretability", "mean")]
            for method in methods:
                if (method, True) in tx.index and (method, False) in tx.index:
                    change = tx[(method, True)] - tx[(method, False)]
                    verdict = (
                        "as in the paper, where PEA keeps or improves it"
                        if change >= 0
                        else "DISAGREES: in the paper PEA keeps or improves it"
                    )
                    lines.append(
                        f"- {dataset}, {_common.NAMES[method]}: PEA changes Tx preservation by {change:+.2f} "
                        f"({verdict}); unimodal baseline {tx.get(('unimodal', False), np.nan):.2f}."
                    )
        trained = recall.drop([("unimodal", False), ("random", False)], errors="ignore")
        if len(trained) and np.isfinite(unimodal):
            best = trained.idxmax()
            best_name = _common.NAMES[best[0]] + (" + PEA" if best[1] else "")
            lines.append(
                f"- {dataset}: best recall {100 * trained.max():.2f} by {best_name} (the paper: Semi-Clipped + PEA); "
                f"unimodal baseline {100 * unimodal:.2f}; {int((trained > unimodal).sum())} of {len(trained)} "
                "trained settings beat it."
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_args(parser, epochs=10)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["kd", "shake", "vicreg", "semiclipped"],
        help="objectives (default: the paper's)",
    )
    parser.add_argument(
        "--decoder-epochs", type=int, default=100, help="interpretability decoder epochs (default: 100)"
    )
    parser.add_argument("--decoder-batch-size", type=int, default=32, help="decoder minibatch size (default: 32)")
    parser.add_argument("--decoder-lr", type=float, default=1e-3, help="decoder learning rate (default: 1e-3)")
    parser.add_argument("--scvi-epochs", type=int, default=100, help="epochs of the scVI student (default: 100)")
    parser.add_argument("--skip-scvi", action="store_true", help="no scVI-student section")
    _common.add_default_args(parser)
    parser.add_argument("--skip-real", action="store_true", help="only the simulated setting")
    parser.add_argument("--real-epochs", type=int, default=100, help="epochs on the real data (default: 100)")
    parser.add_argument("--real-batch-size", type=int, default=64, help="minibatch size on the real data (default: 64)")
    parser.add_argument("--train-fraction", type=float, default=0.7, help="shared genes trained on (default: 0.7)")
    args = parser.parse_args()
    _common.setup(args)
    import scsemiclip as ssc

    start = time.perf_counter()
    common = {"methods": tuple(args.methods), "seeds": tuple(args.seeds)}
    student, teacher, ood_sets = _common.simulated(args.sim_seed, n_controls=args.n_controls)
    sim_kwargs = {
        "teacher": teacher,
        "ood_sets": ood_sets,
        "max_epochs": args.epochs,
        "method_kwargs": _common.method_settings(args, args.methods),
        "interpretability_kwargs": {
            "max_epochs": args.decoder_epochs,
            "batch_size": args.decoder_batch_size,
            "lr": args.decoder_lr,
        },
        **common,
        **_common.SIM,
        **_common.fit_kwargs(args),
    }
    # As in the paper, inference on TVN-corrected inputs is part of PEA: the rows without PEA are the base methods
    # (raw embeddings at training and inference; Table 2's first row), the rows with PEA the full recipe.
    sim = pd.concat(
        [
            ssc.tl.benchmark(student, pea=False, inference_tvn=False, **sim_kwargs),
            ssc.tl.benchmark(student, pea=True, baselines=(), **sim_kwargs),
        ],
        ignore_index=True,
    )
    default_kwargs = {
        "teacher": teacher,
        "ood_sets": ood_sets,
        "seeds": tuple(args.seeds),
        "teacher_rep": _common.SIM["teacher_rep"],
        "pair_keys": _common.SIM["pair_keys"],
        "accelerator": args.accelerator,
        "max_epochs": args.default_max_epochs,
        "interpretability_kwargs": sim_kwargs["interpretability_kwargs"],
    }
    default, chosen = _default_rows(student, student_rep=_common.SIM["student_rep"], **default_kwargs)
    sim = pd.concat([sim, default], ignore_index=True)
    default_text = _default_text(chosen, args.default_max_epochs)
    frames = [sim.assign(setting="simulated")]
    sim_summary = ssc.tl.benchmark_summary(sim, metrics=tuple(METRICS))
    label_based = [_common.NAMES[m] for m in args.methods if m in LABEL_BASED]
    sections = [
        "## Simulated HUVEC-like screen\n",
        f"Trained on the simulated compound screen (`datasets.simulate_weakly_paired(rng={args.sim_seed}, "
        f"n_controls={args.n_controls})`, {student.n_obs} transcriptomics and {teacher.n_obs} microscopy samples, "
        "weak pairs by compound and dose), evaluated on its out-of-distribution screens in new batches: "
        f"{_common.describe_ood(ood_sets)}; sim-OOD is the HUVEC-like knockout screen, sim-SC-OOD (when present) "
        "the RPE1-like single-cell knockout screen (many cells per knockout, low library size). "
        + (
            f"Label-based methods ({', '.join(label_based)}) pre-train the student adapter and classifier on the "
            "pairing keys before distilling (as in the paper; the objectives' default: 500 AdamW steps at 3e-3 on "
            "the adapter's inference input). "
            if label_based
            else ""
        )
        + f"Interpretability decoder: {args.decoder_epochs} epochs, minibatches of {args.decoder_batch_size}, "
        f"learning rate {args.decoder_lr} (the Tx-Evaluation setting, 30 epochs of 512 at 1e-4, makes one "
        "step per epoch on these ~900 training samples: every embedding, the unimodal one included, then scores "
        f"about the random level, {ssc.tl.RANDOM_LEVELS['interpretability']:g} "
        "({data}`~scsemiclip.tl.RANDOM_LEVELS`)). "
        "Rows without PEA are the base methods (raw embeddings at training and inference, as the paper's Table 2 "
        "first row); with PEA, the full recipe (augmentation, and inference on TVN-corrected inputs). "
        f"Mean ± std over seeds {args.seeds}; arrows and Wilcoxon signed-rank p-values (two-sided, paired by seed) "
        "compare each method with PEA to the same method without. With fewer than 6 seeds a two-sided p-value "
        "cannot be below 0.05. The Random baseline rows are measured (a random embedding of the same shape, "
        "scored like the others) and scatter around the random levels by construction "
        f"({100 * ssc.tl.RANDOM_LEVELS['recall']:g} % recall, {ssc.tl.RANDOM_LEVELS['interpretability']:g} Tx "
        "preservation; {data}`~scsemiclip.tl.RANDOM_LEVELS`). " + default_text + "\n",
        _common.settings_markdown(args, args.methods),
        "",
        _common.summary_markdown(sim_summary, metrics=METRICS, n_seeds=len(args.seeds)),
        "",
        _notes(sim_summary, list(ood_sets), args.methods),
        "",
        "Tx preservation is scored on the adapter outputs as they are (no output TVN); the simulator's counts are "
        "driven by the latent biology, not by the student embedding itself, so a distilled embedding can score "
        "above the unimodal one.",
    ]
    if not args.skip_scvi:
        frame, text = _scvi_section(args, student, ood_sets, sim_kwargs, default_kwargs)
        frames.append(frame)
        sections += text
    if not args.skip_real:
        train, periscope, sets, n_shared, n_train = real_sets(args.train_fraction, args.sim_seed)
        real_kwargs = _common.fit_kwargs(args) | {"batch_size": args.real_batch_size}
        # Gene-level maps of a few hundred pairs: the paper's epochs and batch size (set on screens of ~1e5
        # samples) would make a few dozen steps, so only its learning rates apply here.
        real_methods = {
            method: {k: v for k, v in kwargs.items() if k not in ("max_epochs", "batch_size")}
            for method, kwargs in _common.method_settings(args, args.methods).items()
        }
        real = ssc.tl.benchmark(
            train,
            teacher=periscope,
            ood_sets=sets,
            pea=False,
            student_rep="X_pca",
            teacher_rep="X_morphology",
            pair_keys=("perturbation",),
            batch_key=None,
            control_key=None,
            teacher_tvn=False,
            max_epochs=args.real_epochs,
            method_kwargs=real_methods,
            **common,
            **real_kwargs,
        )
        frames.append(real.assign(setting="real"))
        real_summary = ssc.tl.benchmark_summary(real, metrics=("recall_mean",))
        sections += [
            "\n## Real data: Replogle RPE1 (student) and PERISCOPE HeLa (teacher)\n",
            f"Replogle et al. 2022 Perturb-seq signatures (`datasets.replogle_deg_ranks`) and PERISCOPE gene-level "
            f"Cell Painting profiles (`datasets.periscope_hela`), weakly paired on the {n_shared} shared knockout "
            f"genes; trained on {n_train} of them (seed {args.sim_seed}), evaluated on the other RPE1 genes and on "
            f"the K562 signatures (all genes, another cell line). The student encoder is the PCA of the RPE1 "
            "signatures (64 components, fitted on all RPE1 genes), frozen and applied to K562; the teacher is the "
            "56-component PERISCOPE profile. Gene-level maps without controls or batches: no "
            f"PEA, no TVN (input or output), no interpretability. {args.real_epochs} epochs, batch "
            f"size {args.real_batch_size} for every method"
            + (
                ", learning rates as above (the paper's epochs would make a few dozen steps on these few hundred pairs)"
                if args.settings == "paper"
                else f", learning rate {args.lr}"
            )
            + f"; mean ± std over seeds {args.seeds}.\n",
            _common.summary_markdown(
                real_summary, metrics={"recall_mean": METRICS["recall_mean"]}, n_seeds=len(args.seeds)
            ),
            "",
            _notes(real_summary, list(sets), args.methods),
            "",
            "Unlike the paper's setting, morphology is the weaker modality here (known-relationship recall of the "
            "PERISCOPE map about 21 %, of the RPE1 PCA about 48 %), and a gene-level map offers one sample per "
            "gene (a few hundred pairs to learn from).",
        ]
    paper = ["| Method | Tx preservation | Known relationships (%) |", "|---|---|---|"]
    paper += [f"| {name} | {tx} | {kr} |" for name, (tx, kr) in PAPER.items()]
    sections += ["\n## The paper's Table 1 (HUVEC-KO, 15 seeds) for comparison\n", "\n".join(paper)]
    out = _common.write_table(args, "table1", pd.concat(frames, ignore_index=True))
    _common.write_report(
        out,
        title="Table 1: distillation methods with and without PEA",
        body="\n".join(sections),
        seconds=time.perf_counter() - start,
    )


if __name__ == "__main__":
    main()
