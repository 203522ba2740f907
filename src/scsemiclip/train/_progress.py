"""Quiet training: one epoch progress bar (terminal / notebook) or sparse log lines, and no Lightning chatter."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from lightning.pytorch.callbacks import ProgressBar

if TYPE_CHECKING:
    import lightning.pytorch as pl

#: Loggers of Lightning whose info lines ("GPU available", tips, "`Trainer.fit` stopped") a normal fit hides.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")

#: Third-party warnings every fit would raise that say nothing about the user's fit (message regex, category).
_NOISE = (
    # Lightning's CombinedLoader builds torch pytree ``LeafSpec`` objects, deprecated by torch 2.10+.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # scvi-tools warns for every DDP run; this model never uses early stopping.
    (r"early_stopping was automatically disabled due to the use of DDP", UserWarning),
)


def _interactive(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal or the output of a Jupyter kernel (where a carriage return redraws a line)."""
    if getattr(stream, "isatty", lambda: False)():
        return True
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel")


class EpochProgressBar(ProgressBar):
    """Training progress per epoch: a live tqdm bar in a terminal or notebook, sparse lines in a log file.

    Parameters
    ----------
    interval
        Without a terminal (output redirected to a file), write one line at most every ``interval`` seconds (and
        one at the end of training).
    stream
        Where to write; ``sys.stderr`` by default.
    """

    def __init__(self, *, interval: float = 5.0, stream: TextIO | None = None) -> None:
        super().__init__()
        self.interval = interval
        self.stream = stream
        self._enabled = True
        self._bar = None
        self._last = 0.0

    def disable(self) -> None:
        """Switch the bar off (Lightning calls this on ranks other than 0)."""
        self._enabled = False

    def enable(self) -> None:
        """Switch the bar on."""
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        """Whether the bar draws."""
        return self._enabled

    def _line(self, trainer: pl.Trainer) -> str:
        metrics = {k: v for k, v in self.get_metrics(trainer, trainer.lightning_module).items() if k != "v_num"}
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        return f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}" + (f": {text}" if text else "")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Open the bar (interactive output) or start the clock of the log lines."""
        stream = self.stream or sys.stderr
        self._last = time.monotonic()
        if self.is_enabled and _interactive(stream):
            from tqdm.std import tqdm

            self._bar = tqdm(total=trainer.max_epochs, desc="Training", file=stream, dynamic_ncols=True, leave=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Advance the bar, or write a line if ``interval`` seconds passed since the last one."""
        if not self.is_enabled:
            return
        line = self._line(trainer)
        if self._bar is not None:
            description, _, metrics = line.partition(": ")
            self._bar.set_description(description, refresh=False)
            self._bar.set_postfix_str(metrics, refresh=False)
            self._bar.update(1)
        elif time.monotonic() - self._last >= self.interval or trainer.current_epoch + 1 >= (trainer.max_epochs or 0):
            print(line, file=self.stream or sys.stderr, flush=True)
            self._last = time.monotonic()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def quiet_lightning(*, verbose: bool = False) -> Iterator[None]:
    """Hide Lightning's info lines and the known third-party warnings of every fit, for the ``with`` block.

    Parameters
    ----------
    verbose
        Keep Lightning's info lines (the warnings stay hidden).

    Returns
    -------
    A context manager; the logger levels and warning filters are restored on exit.
    """
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    if not verbose:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message, category in _NOISE:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
