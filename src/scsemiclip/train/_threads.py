"""Torch's CPU threads during scsemiclip's computations (``settings.n_jobs``), restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from scsemiclip._settings import compute_threads

#: Torch's thread count when scsemiclip's training layer was imported: torch's default unless the user changed it.
_TORCH_START = torch.get_num_threads()
#: Torch's count on entry of each active :func:`torch_threads` block (the user's setting, not scsemiclip's).
_ENTRY: list[int] = []


def apply_threads() -> int:
    """Set torch's CPU threads for the computation that follows (see :data:`scsemiclip.settings` ``.n_jobs``).

    Inside :func:`torch_threads` the user's setting is the count on entry of the block; the training plan calls
    this at every epoch, so that a change of ``settings.n_jobs`` or of torch's threads takes effect.

    Returns
    -------
    The thread count now in use.
    """
    user = _ENTRY[-1] if _ENTRY else torch.get_num_threads()
    n = compute_threads(user, torch_default=_TORCH_START)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


@contextmanager
def torch_threads() -> Iterator[int]:
    """Run the block with :func:`apply_threads`' thread count; torch's own count is restored on exit."""
    before = torch.get_num_threads()
    _ENTRY.append(before)
    try:
        yield apply_threads()
    finally:
        _ENTRY.pop()
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
