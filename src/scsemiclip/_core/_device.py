"""One device resolver for everything that runs torch outside a Lightning trainer (inference, decoders)."""

from __future__ import annotations

import torch

#: Accepted ``accelerator`` names (Lightning's).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def resolve_device(accelerator: str = "auto", device: int | str = "auto") -> torch.device:
    """The torch device for a Lightning-style ``accelerator`` / ``device`` pair.

    Parameters
    ----------
    accelerator
        ``"auto"`` (the first CUDA device when torch sees one, else the CPU), ``"cpu"``, ``"gpu"`` / ``"cuda"``
        or ``"mps"``.
    device
        Index of the device (``"auto"``: the first); ignored on the CPU.

    Returns
    -------
    The device.

    Raises
    ------
    ValueError
        For an unknown accelerator, an accelerator torch cannot see, or an index out of range.
    """
    if accelerator not in ACCELERATORS:
        raise ValueError(f"`accelerator` must be one of {ACCELERATORS}, got {accelerator!r}.")
    if device != "auto" and (isinstance(device, bool) or not isinstance(device, int) or device < 0):
        raise ValueError(f"`device` must be 'auto' or a device index >= 0, got {device!r}.")
    index = 0 if device == "auto" else device
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("`accelerator='mps'` but torch sees no MPS device.")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ValueError(f"`accelerator={accelerator!r}` but torch sees no CUDA device.")
    if index >= torch.cuda.device_count():
        raise ValueError(f"`device={device!r}` but torch sees {torch.cuda.device_count()} CUDA device(s).")
    return torch.device("cuda", index)
