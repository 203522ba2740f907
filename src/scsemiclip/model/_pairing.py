"""Weak pairing of student and teacher samples through shared metadata keys (docs/method.md).

Keys are compared as canonical texts of their values (:func:`scsemiclip._keys.canonical_keys`, value by value),
so the two sides may store them with different dtypes: integers of any size compare exactly (``1``, ``1.0``,
``"1"`` and ``np.int64(1)`` match; distinct 8-digit compound IDs stay distinct), other numbers by value at 12
significant digits (float32 and float64 copies of ``0.1`` agree), booleans as ``"True"`` / ``"False"`` and
anything else as ``str(value)``. Missing values are allowed only in control rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scsemiclip._keys import SEP, pair_key_strings


def display_key(key: str) -> str:
    """A joint key as shown in messages (``"G1 | 1"``)."""
    return key.replace(SEP, " | ")


@dataclass
class Pairing:
    """Which student samples are trained on, and the teacher samples they draw partners from.

    Attributes
    ----------
    keys
        The pairing keys with samples on both sides, sorted (code ``k`` is ``keys[k]``).
    student_rows
        Row indices of the training samples of the student (non-controls whose key has teacher samples).
    student_codes
        Key code of each training sample.
    teacher_rows
        Row indices of the paired teacher samples (non-controls whose key has student samples), grouped by key.
    teacher_counts
        Number of teacher samples of each key (all positive).
    counts
        ``n_student``, ``n_student_controls``, ``n_student_paired``, ``n_student_unpaired`` (non-controls left out:
        no teacher sample with their key), ``n_student_keys``, ``n_teacher``, ``n_teacher_controls``,
        ``n_teacher_paired``, ``n_teacher_unpaired``, ``n_teacher_keys``, ``n_keys_paired``.
    """

    keys: pd.Index
    student_rows: np.ndarray
    student_codes: np.ndarray
    teacher_rows: np.ndarray
    teacher_counts: np.ndarray
    counts: dict[str, int]


def _usable_keys(obs: pd.DataFrame, columns: Sequence[str], is_control: np.ndarray, *, what: str) -> np.ndarray:
    """Keys of the non-control rows; missing keys there are an error."""
    keys, missing = pair_key_strings(obs, columns, what=what)
    bad = np.flatnonzero(missing & ~is_control)
    if bad.size:
        raise ValueError(
            f"{what}.obs{list(columns)!r} has missing values in {bad.size} non-control row(s) (first: "
            f"{obs.index[bad[0]]!r}); every sample that is not a control needs a complete pairing key."
        )
    return keys


def weak_pairs(
    student_obs: pd.DataFrame,
    teacher_obs: pd.DataFrame,
    *,
    pair_keys: Sequence[str],
    student_control: np.ndarray,
    teacher_control: np.ndarray,
) -> Pairing:
    """Pair student and teacher samples by the values of ``pair_keys``; controls never pair.

    Parameters
    ----------
    student_obs, teacher_obs
        The two ``obs`` tables.
    pair_keys
        Columns forming the key on both sides.
    student_control, teacher_control
        Boolean control masks.

    Returns
    -------
    The :class:`Pairing`.
    """
    s_keys = _usable_keys(student_obs, pair_keys, student_control, what="adata")
    t_keys = _usable_keys(teacher_obs, pair_keys, teacher_control, what="teacher")
    s_rows, t_rows = np.flatnonzero(~student_control), np.flatnonzero(~teacher_control)
    s_keys, t_keys = s_keys[s_rows], t_keys[t_rows]
    t_index = pd.Index(np.unique(t_keys))
    s_code = t_index.get_indexer(s_keys)
    paired = np.unique(s_code[s_code >= 0])
    n_student_keys = len(np.unique(s_keys))
    if paired.size == 0:
        examples = (
            f" (e.g. adata {display_key(s_keys[0])!r}, teacher {display_key(t_keys[0])!r})"
            if s_keys.size and t_keys.size
            else ""
        )
        raise ValueError(
            f"No weak pairs: none of the {n_student_keys} pairing keys of adata (non-control rows, "
            f"`pair_keys={tuple(pair_keys)!r}`) occurs among the {len(t_index)} keys of the teacher{examples}. "
            "Keys are compared value by value: integers exactly (1, 1.0 and '1' match), other numbers at 12 "
            "significant digits, other values as text."
        )
    remap = np.full(len(t_index), -1, dtype=np.int64)
    remap[paired] = np.arange(paired.size)
    s_code = np.where(s_code >= 0, remap[s_code.clip(0)], -1)
    t_code = remap[t_index.get_indexer(t_keys)]
    t_keep = np.flatnonzero(t_code >= 0)
    order = t_keep[np.argsort(t_code[t_keep], kind="stable")]
    counts = {
        "n_student": len(student_obs),
        "n_student_controls": int(student_control.sum()),
        "n_student_paired": int((s_code >= 0).sum()),
        "n_student_unpaired": int((s_code < 0).sum()),
        "n_student_keys": n_student_keys,
        "n_teacher": len(teacher_obs),
        "n_teacher_controls": int(teacher_control.sum()),
        "n_teacher_paired": int(t_keep.size),
        "n_teacher_unpaired": int(t_rows.size - t_keep.size),
        "n_teacher_keys": len(t_index),
        "n_keys_paired": int(paired.size),
    }
    return Pairing(
        keys=t_index[paired],
        student_rows=s_rows[s_code >= 0],
        student_codes=s_code[s_code >= 0],
        teacher_rows=t_rows[order],
        teacher_counts=np.bincount(t_code[order], minlength=paired.size),
        counts=counts,
    )
