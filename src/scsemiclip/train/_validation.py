"""Validation on held-out pairing keys: loss, retrieval and phenotypic activity, early stopping and the best weights."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from lightning.pytorch import Callback

from scsemiclip._core import apply_maps, average_precision, rank_keys, unit_rows, zca_tvn_maps
from scsemiclip._validate import check_choice, check_flag, check_int

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

    from scsemiclip.module import SemiClippedModule

    from ._split import KeySplit

#: Metrics logged on the held-out keys (``validation_activity_map`` only with replicates and controls).
VALIDATION_METRICS = ("validation_loss", "validation_top1", "validation_top5", "validation_activity_map")
#: A further held-out metric: ``(profiles, keys) -> value`` of the held-out keys' mean profiles (``None``: not
#: computable on them), e.g. known-relationship recall when the keys are genes.
Scorer = Callable[[np.ndarray, np.ndarray], "float | None"]
#: Objectives whose loss is an InfoNCE over the minibatch (``ln(batch_size)`` at chance).
INFONCE_OBJECTIVES = ("semiclipped", "clip")
#: A fit of fewer optimiser steps is a smoke test: it is not judged against chance.
NEAR_CHANCE_MIN_STEPS = 100
#: A final training loss within this fraction of ``ln(batch_size)`` is "near chance".
NEAR_CHANCE_FRACTION = 0.1
#: Ridge of the CORAL step of the output TVN behind ``validation_activity_map``.
_OUTPUT_CORAL_REG = 0.5
#: Most held-out rows, and most control rows, that the validation metrics see: beyond it a seeded subset of the
#: held-out keys (whole keys, replicates together) and of each batch's controls (at least 2 per batch), so that a
#: check costs the same on a million rows as on fifty thousand (its activity mAP compares rows pairwise).
MAX_VALIDATION_ROWS = 4096


def _subset_keys(rows: np.ndarray, key: np.ndarray, keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The held-out keys whose rows fit in :data:`MAX_VALIDATION_ROWS` (a random order; at least one key)."""
    if len(rows) <= MAX_VALIDATION_ROWS:
        return keys
    order = rng.permutation(keys)
    counts = np.bincount(np.searchsorted(keys, key), minlength=len(keys))[np.searchsorted(keys, order)]
    n_keep = max(1, int(np.searchsorted(np.cumsum(counts), MAX_VALIDATION_ROWS, side="right")))
    return np.sort(order[:n_keep])


def _subset_controls(controls: np.ndarray, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At most about :data:`MAX_VALIDATION_ROWS` controls, each batch's share in proportion (at least 2 per batch)."""
    if len(controls) <= MAX_VALIDATION_ROWS:
        return controls
    share = MAX_VALIDATION_ROWS / len(controls)
    kept = []
    for b in np.unique(batch):
        rows = controls[batch == b]
        kept.append(rng.choice(rows, size=min(len(rows), max(2, int(share * len(rows)))), replace=False))
    return np.sort(np.concatenate(kept))


class HeldOut:
    """The held-out samples of a validation split, as the adapter sees them at inference.

    Parameters
    ----------
    x
        ``(n, d_S)`` adapter input (TVN-corrected when the model corrects its input) of the held-out rows followed
        by the control rows.
    key
        ``(n,)`` pairing-key code of each row (-1 for the controls).
    batch
        ``(n,)`` batch code of each row (for the output TVN's CORAL step).
    n_batches
        Number of batch codes.
    keys
        Sorted codes of the held-out keys.
    batch_size
        Rows per chunk of the validation loss (the training minibatch: the same number of in-batch negatives).
    seed
        Seed of the teacher partners drawn for the validation loss (the same draws at every check).
    scorers
        Further metrics by name (:data:`Scorer`), given the ``(n_keys, d)`` mean adapter output of each held-out key
        (after output TVN when :attr:`has_activity`) and the keys' codes.
    """

    def __init__(
        self,
        x: torch.Tensor,
        key: torch.Tensor,
        batch: torch.Tensor,
        *,
        n_batches: int,
        keys: np.ndarray,
        batch_size: int,
        seed: int,
        scorers: Mapping[str, Scorer] | None = None,
    ) -> None:
        self.x, self.key, self.batch = x, key.long(), batch.long()
        self.scorers = dict(scorers or {})
        self.n_batches = n_batches
        self.keys = torch.as_tensor(np.asarray(keys), dtype=torch.long)
        self.batch_size = batch_size
        self.seed = seed
        is_ctrl = self.key < 0  # the rows after the held-out ones are controls
        counts = torch.bincount(self.key[~is_ctrl], minlength=int(self.keys.max()) + 1 if len(self.keys) else 0)
        #: Whether ``validation_activity_map`` is computed: held-out replicates and at least 2 controls per batch.
        per_batch = torch.bincount(self.batch[is_ctrl], minlength=n_batches)[self.batch.unique()]
        self.has_activity = bool((counts[self.keys] >= 2).any()) and bool(per_batch.min() >= 2)

    @torch.no_grad()
    def metrics(self, module: SemiClippedModule) -> dict[str, float]:
        """The validation metrics of ``module`` (put in eval mode for the computation, then restored).

        Parameters
        ----------
        module
            The module being trained (its adapter, objective and teacher).

        Returns
        -------
        ``validation_loss`` (the objective's loss on the held-out pairs, in chunks of ``batch_size`` rows, with
        fixed partner draws), ``validation_top1`` / ``validation_top5`` (fraction of held-out rows whose key's
        mean teacher profile is among the 1 / 5 nearest, by cosine, of the held-out keys' profiles; with an output in
        the teacher's space) and, with replicates and controls, ``validation_activity_map`` (mean over held-out keys
        of the phenotypic-activity mAP of their replicates against the controls, after TVN of the output on the
        controls), and the value of every scorer (when finite).
        """
        was_training = module.training
        module.eval()
        try:
            device = module.device
            x, key = self.x.to(device), self.key.to(device)
            h = torch.cat([module.adapter(part) for part in x.split(max(self.batch_size, 4096))]).float()
            out = {"validation_loss": self._loss(module, h, key)}
            out |= self._retrieval(module, h, key)
            y = self._corrected(h.cpu().double(), key.cpu()) if self.has_activity else h.cpu().double()
            if self.has_activity:
                out["validation_activity_map"] = self._activity_map(y, key.cpu())
            if self.scorers:
                held = key.cpu() >= 0
                local = torch.searchsorted(self.keys, key.cpu()[held])
                profiles = torch.zeros(len(self.keys), y.shape[1], dtype=y.dtype).index_add_(0, local, y[held])
                profiles /= torch.bincount(local, minlength=len(self.keys)).clamp(min=1)[:, None]
                for name, scorer in self.scorers.items():
                    value = scorer(profiles.numpy(), self.keys.numpy())
                    if value is not None and math.isfinite(value):
                        out[name] = float(value)
            return out
        finally:
            module.train(was_training)

    def _loss(self, module: SemiClippedModule, h: torch.Tensor, key: torch.Tensor) -> float:
        held = torch.nonzero(key >= 0).flatten()
        generator = torch.Generator(device=h.device).manual_seed(self.seed)
        order = held[torch.randperm(held.numel(), generator=generator, device=h.device)]
        saved, module.generator = module.generator, generator  # the partners: the module's own draw, seeded here
        try:
            total, n = 0.0, 0
            for idx in order.split(self.batch_size):
                if idx.numel() < 2:  # a lone sample has no in-batch negative
                    continue
                z = module.sample(key[idx])
                loss = module.objective(h[idx], z, labels=key[idx]).loss
                total, n = total + float(loss) * idx.numel(), n + idx.numel()
        finally:
            module.generator = saved
        return total / max(n, 1)

    def _retrieval(self, module: SemiClippedModule, h: torch.Tensor, key: torch.Tensor) -> dict[str, float]:
        keys = self.keys.to(h.device)
        if h.shape[1] != module.teacher.shape[1] or not len(keys):
            return {}
        offsets, counts = module.teacher_offsets[keys], module.teacher_counts[keys]
        owner = torch.repeat_interleave(torch.arange(len(keys), device=h.device), counts)
        starts = torch.cumsum(counts, 0) - counts
        rows = torch.repeat_interleave(offsets - starts, counts) + torch.arange(int(counts.sum()), device=h.device)
        profiles = torch.zeros(len(keys), h.shape[1], device=h.device).index_add_(0, owner, module.teacher[rows])
        profiles = unit_rows(profiles / counts[:, None], what="a held-out key's mean teacher profile")
        held = key >= 0
        local = torch.searchsorted(keys, key[held])
        sim = unit_rows(h[held], what="the adapter output") @ profiles.T
        rank = (sim > sim.gather(1, local[:, None])).sum(dim=1)  # keys strictly closer than the true one
        return {
            "validation_top1": float((rank < 1).float().mean()),
            "validation_top5": float((rank < 5).float().mean()),
        }

    def _corrected(self, h: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The output after TVN on the controls (per batch), unit rows."""
        is_ctrl = (key < 0).numpy()
        codes = self.batch.numpy()
        labels = list(range(self.n_batches))
        present = np.unique(codes)
        local = np.searchsorted(present, codes)  # batches without rows here have no maps
        maps = zca_tvn_maps(
            h.numpy(), is_ctrl, local, [labels[b] for b in present], batch_key="batch", coral_reg=_OUTPUT_CORAL_REG
        )
        return unit_rows(torch.as_tensor(apply_maps(h.numpy(), maps, local)), what="the corrected output")

    def _activity_map(self, y: torch.Tensor, key: torch.Tensor) -> float:
        is_ctrl = (key < 0).numpy()
        ctrl, held = y[torch.as_tensor(is_ctrl)], ~torch.as_tensor(is_ctrl)
        y_held, k_held = y[held], key[held]
        k_unique, inverse, counts = torch.unique(k_held, return_inverse=True, return_counts=True)
        keep = counts[inverse] >= 2
        y_q, inv_q = y_held[keep], inverse[keep]
        negatives = rank_keys(y_q, ctrl)
        pair = rank_keys(y_q, y_q)
        same = (inv_q[:, None] == inv_q[None, :]) & ~torch.eye(len(inv_q), dtype=torch.bool)
        n_pos = int(same.sum(dim=1).max())
        positives = torch.where(same, pair, torch.full_like(pair, math.inf))
        positives = torch.sort(positives, dim=1).values[:, :n_pos]
        ap = average_precision(negatives, positives)
        per_key = torch.zeros(len(k_unique), dtype=torch.float64).index_add_(0, inv_q, ap)
        per_key = per_key / torch.bincount(inv_q, minlength=len(k_unique)).clamp(min=1)
        return float(per_key[counts >= 2].mean())


class HeldOutValidation(Callback):
    """Validation every ``check_val_every_n_epoch`` epochs, early stopping, and the best weights restored at the end.

    The metrics (:meth:`HeldOut.metrics`) are logged into the history at the end of a checked epoch (and of the last
    one); ranks of a distributed run compute them on the same held-out set with the same weights, so they agree and
    stop together. The module's state at the best value of ``monitor`` is kept (on the host) and loaded back when
    training ends.

    Parameters
    ----------
    held_out
        The held-out samples.
    check_val_every_n_epoch
        Epochs between checks.
    monitor
        Metric deciding the best weights and early stopping (minimised for ``validation_loss``, maximised for the
        others).
    early_stopping
        Stop after ``patience`` checks without improvement of ``monitor``.
    patience
        Checks without improvement before stopping.
    """

    def __init__(
        self,
        held_out: HeldOut,
        *,
        check_val_every_n_epoch: int = 1,
        monitor: str = "validation_loss",
        early_stopping: bool = False,
        patience: int = 15,
    ) -> None:
        check_int(check_val_every_n_epoch, name="check_val_every_n_epoch", minimum=1)
        check_choice(monitor, name="early_stopping_monitor", choices=VALIDATION_METRICS)
        check_flag(early_stopping, name="early_stopping")
        check_int(patience, name="early_stopping_patience", minimum=1)
        if monitor == "validation_activity_map" and not held_out.has_activity:
            raise ValueError(
                "`early_stopping_monitor='validation_activity_map'` needs held-out keys with replicates and at "
                "least 2 controls per batch; monitor 'validation_loss' or 'validation_top1' instead."
            )
        self.held_out = held_out
        self.every = check_val_every_n_epoch
        self.monitor = monitor
        self.sign = 1.0 if monitor == "validation_loss" else -1.0
        self.early_stopping = early_stopping
        self.patience = patience
        self.best: float = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch = -1
        self.stopped_epoch: int | None = None
        self._since_best = 0

    @classmethod
    def for_split(
        cls,
        inputs: torch.Tensor,
        tensors: dict[str, torch.Tensor],
        split: KeySplit,
        is_control: np.ndarray | None,
        *,
        batch_size: int,
        seed: int,
        scorers: Mapping[str, Scorer] | None = None,
        **kwargs: object,
    ) -> HeldOutValidation:
        """The validation of a model's split: its held-out rows and every control row.

        Parameters
        ----------
        inputs
            ``(n_obs, d_S)`` adapter inference input of every row.
        tensors
            The model's training tensors (``"key"``: -1 outside the paired rows, ``"batch"``).
        split
            The key split (its ``validation_rows`` are held out).
        is_control
            Boolean control mask of the rows (``None``: no controls, no ``validation_activity_map``).
        batch_size, seed, scorers
            See :class:`HeldOut`.
        **kwargs
            The other options of :class:`HeldOutValidation`.

        Returns
        -------
        The callback; beyond :data:`MAX_VALIDATION_ROWS` held-out or control rows, its metrics see a subset of them
        (drawn with ``seed``).
        """
        rng = np.random.default_rng(seed)
        controls = np.flatnonzero(is_control) if is_control is not None else np.empty(0, dtype=np.int64)
        controls = _subset_controls(controls, tensors["batch"].numpy()[controls], rng)
        rows = split.validation_rows
        keys = _subset_keys(rows, tensors["key"].numpy()[rows], np.asarray(split.validation_keys), rng)
        rows = rows[np.isin(tensors["key"].numpy()[rows], keys)]
        held = torch.as_tensor(np.concatenate([rows, controls]).astype(np.int64))
        held_out = HeldOut(
            inputs[held].clone(),
            tensors["key"][held],
            tensors["batch"][held],
            n_batches=int(tensors["batch"].max()) + 1,
            keys=keys,
            batch_size=batch_size,
            seed=seed,
            scorers=scorers,
        )
        return cls(held_out, **kwargs)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute and log the metrics on a checked epoch; keep the best state; stop when patience runs out."""
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every and epoch + 1 < trainer.max_epochs:
            return
        metrics = self.held_out.metrics(pl_module.module)
        for name, value in metrics.items():
            sync = getattr(pl_module, "use_sync_dist", False)  # the ranks' values agree: the mean is each's
            pl_module.log(name, value, on_step=False, on_epoch=True, prog_bar=name == self.monitor, sync_dist=sync)
        # this check is the model's validation: callbacks that act on Lightning's validation end (Ray Tune's report
        # in scvi.autotune, a user's EarlyStopping or ModelCheckpoint on these metrics) see it, with its values
        trainer.callback_metrics.update({name: torch.tensor(value) for name, value in metrics.items()})
        for callback in trainer.callbacks:
            if callback is not self:
                callback.on_validation_end(trainer, pl_module)
        score = self.sign * metrics[self.monitor]
        if score < self.best:
            self.best, self.best_epoch, self._since_best = score, epoch, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in pl_module.module.state_dict().items()}
        else:
            self._since_best += 1
            if self.early_stopping and self._since_best >= self.patience:
                trainer.should_stop = True
                self.stopped_epoch = epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Load the best state back into the module."""
        if self.best_state is not None:
            pl_module.module.load_state_dict(copy.copy(self.best_state))


class StopAfterEpochs(Callback):
    """Stop a fit after ``n_epochs`` epochs without changing its schedule: the first epochs of the full fit.

    The learning-rate schedule still spans the trainer's ``max_epochs``, so the pilot is the prefix of the fit
    it stands for (a pilot of :func:`~scsemiclip.tl.fit_semiclipped` with ``recipe="auto"``).

    Parameters
    ----------
    n_epochs
        Epochs to run (>= 1).
    """

    def __init__(self, n_epochs: int) -> None:
        check_int(n_epochs, name="n_epochs", minimum=1)
        self.n_epochs = n_epochs

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Ask the trainer to stop once ``n_epochs`` epochs have run."""
        if trainer.current_epoch + 1 >= self.n_epochs:
            trainer.should_stop = True


def warn_if_near_chance(
    final_loss: float | None, *, objective: str, batch_size: int, n_steps: int, schedule_hint: str
) -> None:
    """Warn when an InfoNCE fit ends with a training loss within 10 % of ``ln(batch_size)`` (chance matching).

    Fits of fewer than :data:`NEAR_CHANCE_MIN_STEPS` optimiser steps (smoke tests) and objectives other than
    InfoNCE are not judged.

    Parameters
    ----------
    final_loss
        The last epoch's training loss (``None``: nothing to judge).
    objective
        The objective's name.
    batch_size
        Minibatch size per device.
    n_steps
        Optimiser steps of the fit.
    schedule_hint
        What to change, named in the warning.

    Returns
    -------
    ``None``; warns with a :class:`UserWarning`.
    """
    if final_loss is None or objective not in INFONCE_OBJECTIVES or n_steps < NEAR_CHANCE_MIN_STEPS:
        return
    chance = math.log(batch_size)
    if final_loss >= (1 - NEAR_CHANCE_FRACTION) * chance:
        warnings.warn(
            f"The fit ended near chance: final training loss {final_loss:.3f} against ln(batch_size={batch_size}) = "
            f"{chance:.3f} after {n_steps} optimiser steps; the adapter has barely learned to match pairs. "
            f"{schedule_hint}",
            UserWarning,
            stacklevel=3,
        )
