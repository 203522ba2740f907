"""The validation split of a weakly paired screen: by pairing key, with scvi-tools' ``train_size`` et al."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, floor

import numpy as np

from scsemiclip._validate import check_flag, check_real


@dataclass(frozen=True)
class KeySplit:
    """Training and held-out pairing keys, and their student rows.

    Attributes
    ----------
    train_keys, validation_keys
        Sorted key codes of each part.
    train_rows, validation_rows
        Student rows (indices into the AnnData) of each part, in the order of the training rows given.
    """

    train_keys: np.ndarray
    validation_keys: np.ndarray
    train_rows: np.ndarray
    validation_rows: np.ndarray


def split_keys(
    rows: np.ndarray,
    codes: np.ndarray,
    n_keys: int,
    *,
    train_size: float = 1.0,
    validation_size: float | None = None,
    shuffle_set_split: bool = True,
    seed: int = 0,
) -> KeySplit:
    """Split the pairing keys (not the rows) into training and validation keys, scvi-tools' way.

    ``ceil(train_size * n_keys)`` keys train; ``validation_size`` (``None``: the rest, ``1 - train_size``) gives
    ``floor(validation_size * n_keys)`` held-out keys; keys in neither part are left out (scvi-tools' test set,
    unused here). Every student row of a held-out key, and with it the key's teacher samples, leaves training.
    Controls have no key and always train (the corrections are fitted on them).

    Parameters
    ----------
    rows
        Student rows of the paired (training) samples.
    codes
        Key code (``0 .. n_keys - 1``) of each of ``rows``.
    n_keys
        Number of paired keys.
    train_size, validation_size
        Fractions of the keys, as :class:`scvi.dataloaders.DataSplitter`'s (``0 < train_size <= 1``,
        ``0 <= validation_size < 1``, at most 1 together).
    shuffle_set_split
        Draw the held-out keys at random (seeded); ``False``: the last keys in sorted order are held out.
    seed
        Seed of the draw.

    Returns
    -------
    The :class:`KeySplit`.
    """
    check_real(train_size, name="train_size", low=0, high=1, low_open=True)
    check_real(validation_size, name="validation_size", low=0, high=1, high_open=True, none_ok=True)
    check_flag(shuffle_set_split, name="shuffle_set_split")
    if validation_size is not None and train_size + validation_size > 1 + 1e-12:
        raise ValueError(
            f"`train_size` + `validation_size` must be at most 1, got {train_size} + {validation_size}; lower one."
        )
    n_train = ceil(train_size * n_keys)
    n_val = n_keys - n_train if validation_size is None else min(floor(validation_size * n_keys), n_keys - n_train)
    order = np.random.default_rng(seed).permutation(n_keys) if shuffle_set_split else np.arange(n_keys)
    if n_val and n_train < 1:
        raise ValueError(f"With {n_keys} pairing keys, `train_size={train_size}` leaves no key for training.")
    train_keys = np.sort(order[:n_train])
    validation_keys = np.sort(order[n_train : n_train + n_val])
    rows, codes = np.asarray(rows), np.asarray(codes)
    return KeySplit(
        train_keys=train_keys,
        validation_keys=validation_keys,
        train_rows=rows[np.isin(codes, train_keys)],
        validation_rows=rows[np.isin(codes, validation_keys)],
    )
