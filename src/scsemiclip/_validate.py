"""Argument checks at the API boundary: numbers, choices, flags and key names, each raising a named error.

Every check names the argument and the value it got, so that a user sees what to fix. The module depends on the
standard library and numpy only, so every layer (also ``_core`` and ``module``) may use it. Checks return the
value (as a Python ``int`` / ``float`` / ``str`` / ``tuple``) so that callers can store what they checked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def check_int(value: object, *, name: str, minimum: int | None = None, none_ok: bool = False) -> int | None:
    """``value`` as an ``int`` of at least ``minimum``; booleans and non-integer numbers are refused.

    Parameters
    ----------
    value
        The argument.
    name
        Its name in the message.
    minimum
        Smallest allowed value (``None``: unbounded).
    none_ok
        Accept ``None`` (returned as is).

    Returns
    -------
    The value as a Python ``int`` (or ``None``).
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        allowed = "an integer or None" if none_ok else "an integer"
        raise TypeError(f"`{name}` must be {allowed}, got {_describe(value)} ({type(value).__name__}).")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return value


def check_real(
    value: object,
    *,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    none_ok: bool = False,
) -> float | None:
    """``value`` as a finite ``float`` within the interval from ``low`` to ``high``.

    Parameters
    ----------
    value
        The argument (an int or float; booleans, NaN and infinities are refused).
    name
        Its name in the message.
    low, high
        Bounds (``None``: unbounded).
    low_open, high_open
        Exclude the bound itself.
    none_ok
        Accept ``None`` (returned as is).

    Returns
    -------
    The value as a Python ``float`` (or ``None``).
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        allowed = "a number or None" if none_ok else "a number"
        raise TypeError(f"`{name}` must be {allowed}, got {_describe(value)} ({type(value).__name__}).")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
        where = f" in {lo or '(-inf'}, {hi or 'inf)'}" if lo or hi else ""
        raise ValueError(f"`{name}` must be a finite number{where}, got {value!r}.")
    return value


def check_flag(value: object, *, name: str, none_ok: bool = False) -> bool | None:
    """``value`` as a ``bool``: only ``True`` / ``False`` (and numpy booleans), not ``"yes"`` or ``1``.

    Parameters
    ----------
    value
        The argument.
    name
        Its name in the message.
    none_ok
        Accept ``None`` (returned as is).

    Returns
    -------
    The value as a Python ``bool`` (or ``None``).
    """
    if value is None and none_ok:
        return None
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be True or False, got {_describe(value)} ({type(value).__name__}).")
    return bool(value)


def check_choice(value: object, *, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices`` (a string); the error lists them.

    Parameters
    ----------
    value
        The argument.
    name
        Its name in the message.
    choices
        The allowed strings.

    Returns
    -------
    The value.
    """
    choices = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be one of {list(choices)}, got {_describe(value)} ({type(value).__name__}).")
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    return value


def check_choices(values: object, *, name: str, choices: Iterable[str]) -> tuple[str, ...]:
    """A non-empty sequence of ``choices`` (a single string is refused: ``"center"`` is not five letters).

    Parameters
    ----------
    values
        The argument: a list or tuple of strings.
    name
        Its name in the message.
    choices
        The allowed strings.

    Returns
    -------
    The values as a tuple.
    """
    choices = tuple(choices)
    if isinstance(values, str):
        raise TypeError(
            f"`{name}` must be a list of names from {list(choices)}, got the string {values!r}; "
            f"write ({values!r},) for one."
        )
    if not isinstance(values, Sequence):
        raise TypeError(f"`{name}` must be a list of names from {list(choices)}, got {type(values).__name__}.")
    out = tuple(values)
    if not out:
        raise ValueError(f"`{name}` must name at least one of {list(choices)}, got an empty sequence.")
    for value in out:
        check_choice(value, name=name, choices=choices)
    return out


def check_key(value: object, *, name: str, none_ok: bool = False) -> str | None:
    """``value`` if it is a non-empty string naming a column or key (``None`` too if ``none_ok``).

    Parameters
    ----------
    value
        The argument.
    name
        Its name in the message (e.g. ``"batch_key"``).
    none_ok
        Accept ``None`` (returned as is).

    Returns
    -------
    The value.
    """
    if value is None and none_ok:
        return None
    if not isinstance(value, str):
        allowed = "a string or None" if none_ok else "a string"
        raise TypeError(f"`{name}` must be {allowed}, got {_describe(value)} ({type(value).__name__}).")
    if not value:
        raise ValueError(f"`{name}` must be a non-empty string, got ''.")
    return value


def check_threshold(value: object, *, name: str) -> float:
    """A recall threshold: one tail's share of the null, in ``(0, 0.5]``.

    Parameters
    ----------
    value
        The number.
    name
        The argument's name in the message.

    Returns
    -------
    The threshold as a float.
    """
    return check_real(value, name=name, low=0, low_open=True, high=0.5)


def check_thresholds(values: object, *, name: str) -> list[float]:
    """A non-empty sequence of recall thresholds (see :func:`check_threshold`), or one.

    Parameters
    ----------
    values
        A number or a sequence of numbers.
    name
        The argument's name in the message.

    Returns
    -------
    The thresholds as a list of floats.
    """
    items = list(values) if isinstance(values, Sequence | np.ndarray) and not isinstance(values, str) else [values]
    if not items:
        raise ValueError(f"`{name}` is empty; give at least one threshold in (0, 0.5].")
    return [check_threshold(v, name=name) for v in items]
