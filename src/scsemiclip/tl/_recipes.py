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
#: Length of a pilot fit of ``"auto"``, as a fraction of the fit's ``max_epochs`` (15 of 150 epochs) ...
PILOT_FRACTION = 0.1
#: ... and at most this much of the shortest full fit over all pilots together (``"auto"`` costs at most 2.5 fits).
PILOT_BUDGET = 1.5
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
    candidates: dict[str, Callable[[int], SemiClipped]], *, max_epochs: int, min_epochs: int
) -> tuple[str, dict[str, float], str, int]:
    """Choose a recipe by short pilot fits on the validation split.

    Every candidate is trained for a tenth of ``max_epochs``, but all pilots together for at most 1.5 times
    ``min_epochs`` (the shortest the full fit can be), so that choosing and fitting cost at most 2.5 fixed fits (in
    epochs; 6-epoch pilots with early stopping of patience 15), each pilot with its own cosine schedule, checked
    once at the end; the criterion is the first of :data:`CRITERIA` that every
    pilot logged: the held-out keys' mean phenotypic-activity mAP after output TVN (with replicates and controls),
    else held-out top-1 retrieval, else the held-out loss (lower is better). Ties go to the earlier candidate.

    Parameters
    ----------
    candidates
        Recipe name -> function training a fresh model of that recipe for the given number of epochs (with a
        validation split) and returning it.
    max_epochs
        ``max_epochs`` of the full fit.
    min_epochs
        The fewest epochs the full fit can run (``early_stopping_patience + 1`` with early stopping).

    Returns
    -------
    ``(chosen, scores, criterion, pilot_epochs)``: the chosen name, every candidate's score, the criterion's name
    and the epochs of each pilot.
    """
    budget = int(PILOT_BUDGET * min(min_epochs, max_epochs) // len(candidates))
    pilot_epochs = max(1, min(round(PILOT_FRACTION * max_epochs), budget))
    histories = {name: fit(pilot_epochs).history for name, fit in candidates.items()}
    criterion = next(c for c in CRITERIA if all(c in h and len(h[c]) for h in histories.values()))
    sign = -1.0 if criterion == "validation_loss" else 1.0
    scores = {name: float(h[criterion].iloc[-1, 0]) for name, h in histories.items()}
    chosen = max(scores, key=lambda name: sign * scores[name])
    logger.info(
        "recipe 'auto' chose %r by %s of %d-epoch pilots (%s)",
        chosen,
        criterion,
        pilot_epochs,
        ", ".join(f"{name} {score:.3f}" for name, score in scores.items()),
    )
    return chosen, scores, criterion, pilot_epochs
