"""The training schedule of :func:`~scsemiclip.tl.fit_semiclipped` and the recipe chosen by validation (``"auto"``)."""

from __future__ import annotations

from collections.abc import Callable
from math import floor
from typing import TYPE_CHECKING

import numpy as np

from scsemiclip._utils import logger

if TYPE_CHECKING:
    from scsemiclip.model import SemiClipped

#: Schedules of :func:`~scsemiclip.tl.fit_semiclipped`.
SCHEDULES = ("auto", "paper")
#: The paper's schedule: epochs and minibatch.
PAPER_EPOCHS, PAPER_BATCH_SIZE = 150, 1024
#: The default schedule: held-out fraction of the pairing keys and early-stopping patience (checks).
AUTO_VALIDATION_SIZE, AUTO_PATIENCE = 0.1, 15
#: Fewest minibatches per epoch of the default schedule (``batch_size=None``).
MIN_STEPS_PER_EPOCH = 16
#: Smallest and largest minibatch of the default schedule.
MIN_AUTO_BATCH, MAX_AUTO_BATCH = 32, 1024
#: Fewest held-out keys for a validation split (fewer: the default schedule trains without one).
MIN_VALIDATION_KEYS = 4
#: Epochs of a pilot fit of ``"auto"``: the first epochs of each candidate's full fit (its schedule unchanged); two
#: pilots of 12 epochs cost at most 1.5 times the shortest full fit (patience 15: 16 epochs), so "auto" <= 2.5 fits.
PILOT_EPOCHS = 12
#: The pilots of ``"auto"``: the same training on the raw and on the TVN-corrected input (does whitening help?) ...
PILOTS = ("base", "inference_tvn")
#: ... and the recipe fitted after each answer (no: the base method; yes: the paper's PEA recipe).
AUTO_CHOICE = {False: "base", True: "pea"}
#: Selection criteria of ``"auto"``, in order of preference (the first one the pilots logged is used).
CRITERIA = ("validation_activity_map", "validation_top1", "validation_loss")
#: The validation options of :meth:`SemiClipped.train <scsemiclip.model.SemiClipped.train>`.
VALIDATION_OPTIONS = (
    "train_size",
    "validation_size",
    "shuffle_set_split",
    "early_stopping",
    "early_stopping_monitor",
    "early_stopping_patience",
    "check_val_every_n_epoch",
)


def resolve_schedule(
    schedule: str,
    *,
    n_pairs: int,
    n_keys: int,
    max_epochs: int | None,
    batch_size: int | None,
    train_kwargs: dict[str, object],
) -> tuple[int, int, dict[str, object]]:
    """``max_epochs``, ``batch_size`` and the validation options of a schedule (explicit values win).

    ``"paper"``: 150 epochs of 1,024 pairs, no validation. ``"auto"``: at most 150 epochs, minibatches of
    :func:`auto_batch_size` (at least 16 per epoch, so at least 2,400 optimiser steps unless
    stopped), 10 % of the pairing keys held out and early stopping on ``validation_loss`` (patience 15 checks) with the
    best weights kept; fewer than 40 keys (4 held out): no validation.

    Parameters
    ----------
    schedule
        ``"auto"`` or ``"paper"``.
    n_pairs, n_keys
        Paired student samples and pairing keys.
    max_epochs, batch_size
        Given values (``None``: the schedule's).
    train_kwargs
        Options for :meth:`SemiClipped.train <scsemiclip.model.SemiClipped.train>` given by the caller.

    Returns
    -------
    ``(max_epochs, batch_size, train_kwargs)`` with the schedule's validation options added.
    """
    train_kwargs = dict(train_kwargs)
    max_epochs = PAPER_EPOCHS if max_epochs is None else max_epochs
    given = {name for name in VALIDATION_OPTIONS if name in train_kwargs}
    if schedule == "auto" and not given & {"train_size", "validation_size"}:
        if floor(AUTO_VALIDATION_SIZE * n_keys) >= MIN_VALIDATION_KEYS:
            train_kwargs["train_size"] = 1 - AUTO_VALIDATION_SIZE
            if "early_stopping" not in given:
                train_kwargs["early_stopping"] = True
                train_kwargs.setdefault("early_stopping_patience", AUTO_PATIENCE)
        else:
            logger.info(
                "%d pairing keys: too few for a validation split of %d %%; training without one.",
                n_keys,
                round(100 * AUTO_VALIDATION_SIZE),
            )
    if batch_size is None:
        fraction = float(train_kwargs.get("train_size", 1.0))
        batch_size = PAPER_BATCH_SIZE if schedule == "paper" else auto_batch_size(int(n_pairs * fraction))
    return max_epochs, batch_size, train_kwargs


def auto_batch_size(n_pairs: int) -> int:
    """The default schedule's minibatch: the largest power of 2 giving ``MIN_STEPS_PER_EPOCH`` minibatches per epoch.

    Clipped to ``[MIN_AUTO_BATCH, MAX_AUTO_BATCH]`` (and to ``n_pairs``), so a small screen gets at least 16
    optimiser steps per epoch (the paper's 1,024 gives 3 on 3,600 pairs, and a fit that ends near chance).

    Parameters
    ----------
    n_pairs
        Number of training samples (paired student rows of the training keys).

    Returns
    -------
    The minibatch size.
    """
    size = 2 ** int(np.floor(np.log2(max(1, n_pairs // MIN_STEPS_PER_EPOCH))))
    return int(min(max(size, MIN_AUTO_BATCH), MAX_AUTO_BATCH, max(2, n_pairs)))


def has_validation(train_kwargs: dict[str, object]) -> bool:
    """Whether ``train_kwargs`` ask :meth:`SemiClipped.train <scsemiclip.model.SemiClipped.train>` for held-out keys."""
    return float(train_kwargs.get("train_size", 1.0)) < 1 or bool(train_kwargs.get("validation_size"))


def select_recipe(
    candidates: dict[str, Callable[[int], SemiClipped]], *, max_epochs: int
) -> tuple[str, dict[str, float], str, int]:
    """Choose a recipe by two pilot fits on the validation split: does whitening the student's input help?

    The pilots are the first :data:`PILOT_EPOCHS` epochs (at most ``max_epochs``) of the ``"base"`` and the
    ``"inference_tvn"`` full fits, with the full fit's learning-rate schedule: the same training, on the raw and on
    the TVN-corrected input. Each is checked once, at its end, by the first of :data:`CRITERIA` that both logged:
    the held-out keys' mean phenotypic-activity mAP after output TVN (with replicates and controls), else held-out
    top-1 retrieval, else the held-out loss (lower is better). If the whitened input scores better, the paper's
    ``"pea"`` recipe is fitted (PEA's own gain, robustness to new batches, is not visible on held-out keys of the
    training batches), else ``"base"``. Why two pilots and not four, and what was measured: docs page "Validation,
    recipes and tuning".

    Parameters
    ----------
    candidates
        Recipe name -> function training a fresh model of that recipe for the given number of epochs (the start of
        its full fit, with a validation split) and returning it; must hold :data:`PILOTS`.
    max_epochs
        ``max_epochs`` of the full fit.

    Returns
    -------
    ``(chosen, scores, criterion, pilot_epochs)``: the chosen name, the pilots' scores, the criterion's name and
    the epochs of each pilot.
    """
    pilot_epochs = min(PILOT_EPOCHS, max_epochs)
    histories = {name: candidates[name](pilot_epochs).history for name in PILOTS}
    criterion = next(c for c in CRITERIA if all(c in h and len(h[c]) for h in histories.values()))
    sign = -1.0 if criterion == "validation_loss" else 1.0
    scores = {name: float(h[criterion].iloc[-1, 0]) for name, h in histories.items()}
    whitening_helps = sign * scores["inference_tvn"] > sign * scores["base"]
    chosen = AUTO_CHOICE[whitening_helps]
    logger.info(
        "recipe 'auto' chose %r: whitening the input %s (%s of %d-epoch pilots: %s)",
        chosen,
        "helps" if whitening_helps else "does not help",
        criterion,
        pilot_epochs,
        ", ".join(f"{name} {score:.3f}" for name, score in scores.items()),
    )
    return chosen, scores, criterion, pilot_epochs
