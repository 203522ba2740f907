"""Draw the example figure of the evaluation page (docs/evaluation.md): ``pl.evaluation_summary`` of ``tl.evaluate_map``.

Run from the repository root (about a minute on a CPU; offline: set ``SCSEMICLIP_DATA_DIR``)::

    python docs/figures/evaluation_summary.py

The simulated screens of ``datasets.simulate_weakly_paired(rng=0)``: Semi-Clipped with PEA is trained on the
compound screen as by ``scsemiclip quickstart`` and applied to the out-of-distribution knockout screen, which is
then scored with its transcriptomics embedding and a random embedding of the same shape. Writes
``docs/figures/evaluation_summary.png`` beside this script.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import scsemiclip as ssc

OUT = Path(__file__).with_suffix(".png")


def main() -> None:
    data = ssc.datasets.simulate_weakly_paired(rng=0)
    student, teacher, ood = data["student"], data["teacher"], data["ood"]
    model = ssc.tl.fit_semiclipped(
        student,
        teacher,
        student_rep="X_emb",
        teacher_rep="X_phenom",
        pair_keys=("perturbation", "dose"),
        max_epochs=60,
        batch_size=256,
        rng=0,
    )
    ssc.tl.apply_semiclipped(ood, model, key_added="X_semiclipped")
    ssc.tl.random_baseline(ood, use_rep="X_emb", key_added="X_random", rng=0)
    table = ssc.tl.evaluate_map(
        ood,
        use_reps={"transcriptomics": "X_emb", "Semi-Clipped": "X_semiclipped", "random": "X_random"},
        rng=0,
    )
    print(table.to_string())
    drawn = ssc.pl.evaluation_summary(ood, ncols=3)  # three panels a row: legible at the page's width
    figure = getattr(drawn, "figure", drawn)
    figure.savefig(OUT, dpi=110, bbox_inches="tight")
    print(f"Wrote {OUT}.")


if __name__ == "__main__":
    main()
