"""The paper's Table 2: PEA ablation, each component added to the base method in turn, on the simulated screen.

Run from the repository root::

    python benchmarks/table2.py [--seeds 0 1 2] [--epochs 10] [--methods kd shake vicreg semiclipped]

Rows (cumulative, as the paper's): the base method (no augmentation, raw embeddings at training and inference);
+ fixed biological augmentation (PEA without step dropout or control sampling); + inference on TVN-corrected
inputs; + augmentation stochasticity (step dropout 0.5); + control sampling (down to a quarter of the controls:
full PEA). Known-relationship recall (x 100, mean over seeds) on the simulated out-of-distribution knockout screen,
after TVN on the outputs; writes ``docs/benchmarks/table2.md``.
"""

from __future__ import annotations

import argparse
import time

import _common
import pandas as pd

#: The ablation rows and the switches of ``tl.fit_semiclipped`` that make them (SPEC §3, model docstring).
CONFIGS = {
    "Base method": {"pea": False, "inference_tvn": False},
    "+ Fixed Bio-Aug": {"pea": True, "p_drop": 0.0, "min_control_fraction": 1.0, "inference_tvn": False},
    "+ Inference on TVN": {"pea": True, "p_drop": 0.0, "min_control_fraction": 1.0, "inference_tvn": True},
    "+ Aug. Stochasticity": {"pea": True, "p_drop": 0.5, "min_control_fraction": 1.0, "inference_tvn": True},
    "+ Ctrl Sampling (PEA)": {"pea": True, "p_drop": 0.5, "min_control_fraction": 0.25, "inference_tvn": True},
}
#: The paper's Table 2 (HUVEC-KO, 15 seeds), recall x 100.
PAPER = {
    "Base method": (16.00, 17.02, 17.25, 19.71),
    "+ Fixed Bio-Aug": (16.76, 17.22, 17.97, 19.95),
    "+ Inference on TVN": (18.76, 18.32, 18.62, 20.58),
    "+ Aug. Stochasticity": (19.37, 18.84, 19.43, 21.79),
    "+ Ctrl Sampling (PEA)": (20.65, 19.98, 20.46, 23.05),
}
PAPER_METHODS = ("kd", "shake", "vicreg", "semiclipped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_args(parser, epochs=10)
    parser.add_argument("--methods", nargs="+", default=list(PAPER_METHODS), help="objectives (default: the paper's)")
    args = parser.parse_args()
    _common.setup(args)
    import scsemiclip as ssc

    start = time.perf_counter()
    student, teacher, ood = _common.simulated(args.sim_seed, n_controls=args.n_controls)
    frames = []
    for row, config in CONFIGS.items():
        print(f"{row}: {config}", flush=True)
        df = ssc.tl.benchmark(
            student,
            teacher=teacher,
            ood_sets={"sim-OOD": ood},
            methods=tuple(args.methods),
            seeds=tuple(args.seeds),
            baselines=(),
            max_epochs=args.epochs,
            interpretability=False,
            **_common.SIM,
            **config,
            **_common.fit_kwargs(args),
        )
        frames.append(df.assign(config=row))
    df = pd.concat(frames, ignore_index=True)
    table = df.groupby(["config", "method"], sort=False)["recall_mean"].agg(["mean", "std", "count"])
    lines = ["| PEA configuration | " + " | ".join(_common.NAMES[m] for m in args.methods) + " |"]
    lines.append("|---|" + "---|" * len(args.methods))
    n = len(args.seeds)
    for row in CONFIGS:
        cells = [
            _common.pm(*table.loc[(row, m), ["mean", "std"]], scale=100, n=table.loc[(row, m), "count"], n_seeds=n)
            for m in args.methods
        ]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    paper = ["| PEA configuration | KD | SHAKE | VICReg | Semi-Clipped |", "|---|---|---|---|---|"]
    paper += [f"| {row} | " + " | ".join(f"{v:.2f}" for v in values) + " |" for row, values in PAPER.items()]
    body = f"""
Known-relationship recall (% of the known relationships retrieved, two-sided 5 %, mean of the databases, after TVN
on the adapter output) on the simulated out-of-distribution knockout screen
(`datasets.simulate_weakly_paired(rng={args.sim_seed}, n_controls={args.n_controls})`), mean ± std over seeds {args.seeds}; {args.epochs} epochs,
batch size {args.batch_size}, {args.optimizer} with learning rate {args.lr} and gradient-norm clipping at
{args.clip or "none"} for every method. Rows are cumulative.

{chr(10).join(lines)}

The paper's Table 2 (HUVEC-KO, 15 seeds, per-method hyper-parameters of its appendix A.2) for comparison:

{chr(10).join(paper)}

{{notes}}

Where inference on TVN-corrected inputs carries the gain and the stochastic components (step dropout, control
sampling) do not add to it, a likely reason is the simulator: the batch effects of its out-of-distribution screen
are exactly affine per batch (a shift and a positive-definite scaling), which TVN with CORAL on the screen's own
controls removes, so random corrections during training add input noise without covering a shift the model meets
at inference (a hypothesis; the paper's HUVEC screens have effects no affine correction removes). Short training
(few epochs, SGD at learning rate 1e-3) also favours the less noisy settings.
"""
    out = args.out or _common.DOCS / "table2.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    notes = _notes(table, args.methods)
    _common.write_report(
        out, title="Table 2: PEA ablation", body=body.replace("{notes}", notes), seconds=time.perf_counter() - start
    )


def _notes(table: pd.DataFrame, methods: list[str]) -> str:
    """Where the small run agrees and disagrees with the paper (monotone gains per component)."""
    rows = list(CONFIGS)
    out = ["**Comparison with the paper.**"]
    for m in methods:
        values = [table.loc[(r, m), "mean"] for r in rows]
        drops = [f"{rows[i + 1]!r}" for i in range(len(rows) - 1) if values[i + 1] < values[i]]
        total = 100 * (values[-1] - values[0])
        verdict = (
            "every component helps, as in the paper" if not drops else "lower than the row above: " + ", ".join(drops)
        )
        out.append(f"- {_common.NAMES[m]}: full PEA vs base {total:+.2f} points; {verdict}.")
    return "\n".join(out)


if __name__ == "__main__":
    main()
