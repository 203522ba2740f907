"""The one canonical form of key values (pairing keys, aggregation labels): exact for integers, per value.

Every value of a key column is turned into a text on its own, so one odd value (``"none"`` on a control row)
never changes how the other values compare:

- integers of any size (Python and numpy ints, integer-valued floats, text such as ``"12345678"`` or ``"1.0"``)
  become their exact decimal digits: ``1``, ``1.0``, ``np.float32(1)``, ``"1"`` and ``"1.0"`` are all ``"1"``,
  and 8-digit (or 30-digit) identifiers stay distinct;
- other finite numbers (and text that parses as one, e.g. ``"0.5"``, ``"1e-3"``) are compared by value at
  :data:`SIGNIFICANT_DIGITS` significant digits (a relative tolerance of about ``5e-13``); float16 / float32
  values are first read through their shortest decimal form, so float32 and float64 copies of ``0.1`` agree;
- booleans become ``"True"`` / ``"False"`` (they never equal 1 and 0), any other value ``str(value)``;
- missing values (``None``, NaN, ``pd.NA``) are reported in a mask: the caller decides (an error outside controls).

The result does not depend on the column's dtype (object, category, string, int or float).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Significant digits at which non-integer numbers are compared.
SIGNIFICANT_DIGITS = 12

_NUMBER_START = frozenset("0123456789+-.")
_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def _number_text(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value.is_integer():
        return str(int(value))
    return f"{value:.{SIGNIFICANT_DIGITS}g}"


def canonical_value(value: object) -> str:
    """The canonical text of one (non-missing) key value (see the module docstring).

    Parameters
    ----------
    value
        A key value: a string, number or boolean (or any object, compared through ``str``).

    Returns
    -------
    Its canonical text.
    """
    if isinstance(value, str):
        if value[:1] not in _NUMBER_START:  # most labels: no regular expression needed
            return value
        if _INT_TEXT.match(value):
            return str(int(value))
        return _number_text(float(value)) if _FLOAT_TEXT.match(value) else value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, np.float16 | np.float32):
        return _number_text(float(str(value)))
    if isinstance(value, float | np.floating):
        return _number_text(float(value))
    return str(value)


def is_missing(value: object) -> bool:
    """Whether one value is missing: ``None``, NaN (Python or numpy float), ``pd.NA`` or ``pd.NaT``.

    Parameters
    ----------
    value
        Any value.

    Returns
    -------
    ``True`` for a missing value.
    """
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float | np.floating) and math.isnan(value))
    )


def canonical_keys(column: pd.Series | pd.Index | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical text of every value of a key column, and the mask of its missing values.

    Parameters
    ----------
    column
        One column (any dtype).

    Returns
    -------
    An object array of canonical texts (``""`` where missing) and a boolean mask of the missing values.
    """
    series = column if isinstance(column, pd.Series) else pd.Series(column)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    uniques = np.asarray(uniques)
    missing = codes < 0
    values = series.to_numpy(dtype=object) if uniques.dtype == object else None
    if values is not None and any(isinstance(v, bool | np.bool_) for v in values):
        # pandas' hashing merges True with 1 and False with 0 (keeping whichever came first among the uniques):
        # look at every value, not the uniques, and canonicalise each on its own
        return np.array(
            ["" if m else canonical_value(v) for v, m in zip(values, missing, strict=True)], dtype=object
        ), missing
    canon = np.array([*(canonical_value(u) for u in uniques), ""], dtype=object)
    return canon[codes], missing


#: Separator of the columns of a joint key.
SEP = "\x1f"


def pair_key_strings(obs: pd.DataFrame, columns: Sequence[str], *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Canonical joint key of every row and a mask of rows with a missing value in any of ``columns``.

    Parameters
    ----------
    obs
        The ``obs`` table.
    columns
        Key columns (checked to exist; the error names ``what`` and the column).
    what
        Name of the table's owner in messages (``"adata"``, ``"teacher"``).

    Returns
    -------
    Object array of key strings (columns joined by :data:`SEP`) and a boolean mask of missing keys.
    """
    missing = np.zeros(len(obs), dtype=bool)
    texts = []
    for col in columns:
        if col not in obs.columns:
            raise KeyError(
                f"{what}.obs has no column {col!r} (a pairing key, `pair_keys={tuple(columns)!r}`); "
                f"columns: {', '.join(map(repr, obs.columns))}."
            )
        canon, absent = canonical_keys(obs[col])
        missing |= absent
        texts.append(canon)
    return functools.reduce(lambda a, b: a + SEP + b, texts), missing
