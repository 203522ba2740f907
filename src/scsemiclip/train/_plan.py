"""The training plan: scvi-tools' :class:`~scvi.train.TrainingPlan` with SGD/Adam(W), a cosine schedule and PEA."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from lightning.pytorch import LightningModule
from scvi.train import TrainingPlan

from scsemiclip._validate import check_choice, check_real

from ._threads import apply_threads

if TYPE_CHECKING:
    from collections.abc import Iterable

    from scsemiclip.module import SemiClippedModule

OPTIMIZERS = ("sgd", "adamw", "adam")


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite: the adapter is unusable (a lower learning rate usually helps).

    Raised by :meth:`SemiClipped.train <scsemiclip.model.SemiClipped.train>` at the end of the epoch in which it
    happened; the message names the epoch, the step and the learning rate. A :class:`ValueError`, so that callers catching bad input catch it too.
    """


class SemiClippedTrainingPlan(TrainingPlan):
    """Lightning module training a :class:`~scsemiclip.module.SemiClippedModule`.

    Per step it only runs the module's forward (PEA, partner draw, adapter, objective) and accumulates the
    losses on the device; they are averaged and logged once per epoch (no host synchronisation per step).

    Parameters
    ----------
    module
        The module to train.
    optimizer
        ``"sgd"`` (the authors': momentum ``momentum``), ``"adamw"`` or ``"adam"`` (``eps`` 1e-8).
    lr
        Peak learning rate of the student adapter (the objective's parameters may use multiples of it, see
        :meth:`~scsemiclip.module.Objective.param_groups`), annealed with a per-step cosine schedule over the run.
    weight_decay
        Weight decay (the authors': 1e-4).
    momentum
        SGD momentum (the authors': 0.95).
    eps
        Adam(W) epsilon.
    lr_min
        Final learning rate of the cosine schedule, the same absolute value for every parameter group (the paper's
        "minimum learning rate", e.g. 1e-10 for its baselines).
    seed
        Seed of the module's generator (partner draws and PEA); rank ``r`` of a distributed run uses ``seed + r``.
    """

    def __init__(
        self,
        module: SemiClippedModule,
        *,
        optimizer: Literal["sgd", "adamw", "adam"] = "sgd",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.95,
        eps: float = 1e-8,
        lr_min: float = 0.0,
        seed: int = 0,
    ) -> None:
        if isinstance(optimizer, str):
            optimizer = optimizer.lower()
        check_choice(optimizer, name="optimizer", choices=OPTIMIZERS)
        check_real(lr, name="lr", low=0, low_open=True)
        check_real(weight_decay, name="weight_decay", low=0)
        check_real(momentum, name="momentum", low=0, high=1, high_open=True)
        check_real(eps, name="eps", low=0, low_open=True)
        check_real(lr_min, name="lr_min", low=0, high=lr)
        super().__init__(
            module,
            optimizer="Custom",
            optimizer_creator=self._make_optimizer,
            lr=lr,
            weight_decay=weight_decay,
            eps=eps,
            lr_min=lr_min,
            n_epochs_kl_warmup=None,
        )
        self.optimizer_choice = optimizer
        self.momentum = momentum
        self.seed = seed
        #: The error of a training whose loss became NaN or infinite (``None`` while it did not).
        self.diverged: TrainingDivergedError | None = None

    # No validation: the data module has no validation split, and Lightning warns about a validation step
    # (inherited from scvi-tools' plan) without validation data. Lightning's own no-op counts as "not defined".
    validation_step = LightningModule.validation_step

    def _make_optimizer(self, params: Iterable[dict]) -> torch.optim.Optimizer:
        if self.optimizer_choice == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        cls = torch.optim.AdamW if self.optimizer_choice == "adamw" else torch.optim.Adam
        return cls(params, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)

    def configure_optimizers(self) -> dict:
        """The optimizer over the module's parameter groups, with a per-step cosine annealing schedule over the run.

        The groups are :meth:`SemiClippedModule.param_groups <scsemiclip.module.SemiClippedModule.param_groups>`
        at ``lr``; every group's learning rate anneals from its own start to ``lr_min`` over the trainer's
        ``estimated_stepping_batches``.

        Returns
        -------
        Lightning's ``{"optimizer": ..., "lr_scheduler": {"scheduler": ..., "interval": "step"}}``: the chosen
        :class:`torch.optim.Optimizer` and its :class:`~torch.optim.lr_scheduler.CosineAnnealingLR`.
        """
        optimizer = self.get_optimizer_creator()(self.module.param_groups(self.lr))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=self.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        """Put the module in training mode, seed its draws and pre-train the student if its objective does.

        Calls :meth:`SemiClippedModule.start_training` (which also runs the objective's ``prepare``) and then
        :meth:`SemiClippedModule.pretrain_student` with the plan's ``seed`` (the same on every rank) and the data
        module's ``batch_size`` (1024 without one). This runs after the module was moved to the device and before
        Lightning's start-of-training checks and ``on_train_start``: scvi-tools leaves a trained or loaded module in
        eval mode and Lightning keeps the mode it finds, which would silently switch PEA off.
        """
        self.module.start_training(self.seed + self.global_rank)
        batch_size = getattr(getattr(self.trainer, "datamodule", None), "batch_size", 1024)
        self.module.pretrain_student(seed=self.seed, batch_size=int(batch_size))

    def on_train_epoch_start(self) -> None:
        """Set the epoch's CPU threads, refresh the PEA bank, reset the record of the epoch's first non-finite loss.

        The threads follow :data:`scsemiclip.settings` ``.n_jobs`` (:func:`~scsemiclip.train.apply_threads`).
        """
        apply_threads()
        self.module.refresh_bank()
        self._first_bad_step = torch.full((), -1, dtype=torch.long, device=self.device)

    def on_train_epoch_end(self) -> None:
        """Stop training with an error naming the epoch and step if a loss of the epoch was not finite.

        In one process the training stops and the error is kept in :attr:`diverged`, which
        :meth:`SemiClipped.train <scsemiclip.model.SemiClipped.train>` raises once Lightning has returned (scvi-tools'
        runner prints a misleading "Exception raised during training. NameError" line for any error raised inside
        it); under DDP, whose spawned ranks do not hand the plan back, it is raised here.

        Raises
        ------
        TrainingDivergedError
            Under DDP, when a minibatch loss of the epoch was NaN or infinite (checked once per epoch: no host
            synchronisation per step).
        """
        step = int(self.all_gather(self._first_bad_step).max())  # every rank stops together under DDP
        if step >= 0:
            self.diverged = TrainingDivergedError(
                f"The training loss became NaN or infinite at epoch {self.current_epoch}, step {step} of the epoch; "
                f"the adapter is unusable. Lower the learning rate (`lr={self.lr:g}`), or check the embeddings and the "
                "options of the objective and the augmentations (`objective_kwargs`, `augmentations`, "
                "`augmentation_kwargs`): a bad option can make the loss diverge too."
            )
            if self.trainer.world_size > 1:
                raise self.diverged
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        """Release the PEA bank."""
        self.module.end_training()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Forward, loss, and epoch-level logging of the loss and the objective's logs.

        The loss is logged as ``train_loss`` (in the progress bar) and every log ``name`` of the objective as
        ``{name}_train``, all averaged over the epoch (weighted by the minibatch size; synchronised across ranks
        under DDP).

        Parameters
        ----------
        batch
            A minibatch of :class:`~scsemiclip.train.DeviceDataSplitter`: ``"x"`` ``(B, d_S)``, ``"batch"`` and
            ``"key"`` ``(B,)``, on the training device.
        batch_idx
            Index of the minibatch in the epoch (named by the error of a non-finite loss).

        Returns
        -------
        The scalar loss of the minibatch (with its graph), which Lightning back-propagates.
        """
        _, _, out = self.forward(batch)
        kwargs = {
            "on_step": False,
            "on_epoch": True,
            "batch_size": out.n_obs_minibatch,
            "sync_dist": self.use_sync_dist,
        }
        loss = out.loss.detach()
        bad = (self._first_bad_step < 0) & ~torch.isfinite(loss)
        self._first_bad_step = torch.where(bad, batch_idx, self._first_bad_step)
        self.log("train_loss", loss, prog_bar=True, **kwargs)
        for name, value in out.extra_metrics.items():
            self.log(f"{name}_train", value, **kwargs)
        return out.loss
