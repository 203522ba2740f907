"""scvi-tools' hyperparameter search (Ray Tune) runs on SemiClipped with the held-out validation metrics."""

from __future__ import annotations

import numpy as np
import pytest

import scsemiclip as ssc
from scsemiclip.model import SemiClipped


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning", "ignore::ImportWarning"
)
def test_run_autotune_sweeps_on_the_validation_loss(tmp_path):
    """A real sweep: 2 trials of 2 epochs on tiny data, each reporting the held-out loss to Ray Tune."""
    import ray
    from ray import tune
    from scvi import autotune

    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=30, n_doses=1, n_replicates=2, n_batches=2, n_controls=6, n_genes=60, n_ood_genes=25, rng=0
    )
    student, teacher = data["student"], data["teacher"]
    SemiClipped.setup_anndata(student, student_rep="X_emb", pair_keys=("perturbation", "dose"))
    # a local cluster of one CPU per trial, without the dashboard; run_autotune runs on it (ignore_reinit_error)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        experiment = autotune.run_autotune(
            SemiClipped,
            student,
            metrics=["validation_loss", "validation_top1"],
            mode="min",
            search_space={
                "model_params": {
                    "teacher": teacher,
                    "teacher_rep": "X_phenom",
                    "hidden_dims": tune.choice([(8,), (16,)]),
                },
                "train_params": {
                    "max_epochs": 2,
                    "batch_size": 16,
                    "train_size": 0.7,
                    "validation_size": 0.3,
                    "accelerator": "cpu",
                },
            },
            num_samples=2,
            searcher="random",
            scheduler="fifo",
            seed=0,
            resources={"cpu": 1},
            logging_dir=str(tmp_path),
            ignore_reinit_error=True,
        )
        results = experiment.result_grid
        assert not results.errors
        table = results.get_dataframe()
        assert len(table) == 2
        assert np.isfinite(table["validation_loss"]).all() and (table["validation_loss"] > 0).all()
        assert set(table["config/model_params/hidden_dims"].map(tuple)) <= {(8,), (16,)}
        best = results.get_best_result(metric="validation_loss", mode="min")
        assert best.metrics["validation_loss"] == table["validation_loss"].min()
        assert best.metrics["training_iteration"] == 2  # one report per epoch (each epoch is checked)
    finally:
        ray.shutdown()
