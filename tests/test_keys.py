"""The one canonical key form (pairing, aggregation, control labels): property tests against plain Python."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import scsemiclip as ssc
from scsemiclip._keys import SIGNIFICANT_DIGITS, canonical_keys
from scsemiclip.model._pairing import weak_pairs

NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def reference_key(value: object) -> tuple[str, object]:
    """What a key value means, in plain Python: an exact rational for numbers, the text otherwise."""
    if isinstance(value, bool | np.bool_):
        return ("text", str(bool(value)))
    if isinstance(value, str):
        if not NUMBER.fullmatch(value):
            return ("text", value)
        value = int(value) if re.fullmatch(r"[+-]?\d+", value) else float(value)
    if isinstance(value, int | np.integer):
        return ("number", Fraction(int(value)))
    value = float(value)
    if value.is_integer():
        return ("number", Fraction(int(value)))
    return ("number", Fraction(Decimal(f"{value:.{SIGNIFICANT_DIGITS}g}")))


def reference_pairs(student: list, teacher: list, s_ctrl: list[bool], t_ctrl: list[bool]) -> dict[int, set[int]]:
    """Student row -> teacher rows it pairs with (non-controls with equal meaning), by nested loops."""
    out = {}
    for i, (a, ci) in enumerate(zip(student, s_ctrl, strict=True)):
        partners = {j for j, (b, cj) in enumerate(zip(teacher, t_ctrl, strict=True)) if not cj and not ci}
        partners = {j for j in partners if reference_key(teacher[j]) == reference_key(a)}
        if partners:
            out[i] = partners
    return out


big_ints = st.integers(min_value=-(10**30), max_value=10**30)
ids = st.integers(min_value=10_000_000, max_value=99_999_999)  # 8-digit compound IDs
values = st.one_of(
    big_ints,
    ids,
    ids.map(str),
    ids.map(np.int64),
    st.integers(-50, 50).map(float),
    st.integers(-50, 50).map(lambda i: f"{i}.0"),
    st.integers(-400, 400).map(lambda i: i / 8),
    st.integers(-400, 400).map(lambda i: repr(i / 8)),
    st.sampled_from(["none", "DMSO", "G1", "1a", "True", "", " 1"]),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(values, min_size=1, max_size=25))
@example([0, False])  # pandas' factorize merges False into an earlier 0 (found by this test)
@example([1.0, True, "1"])
def test_keys_equal_exactly_when_the_values_mean_the_same(column):
    keys, missing = canonical_keys(pd.Series(column, dtype=object))
    assert not missing.any()
    ref = [reference_key(v) for v in column]
    for i in range(len(column)):
        for j in range(len(column)):
            assert (keys[i] == keys[j]) == (ref[i] == ref[j]), (column[i], column[j], keys[i], keys[j])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(values, min_size=1, max_size=15),
    st.lists(values, min_size=1, max_size=15),
    st.data(),
)
def test_weak_pairs_equal_a_plain_python_reference(student, teacher, data):
    s_ctrl = data.draw(st.lists(st.booleans(), min_size=len(student), max_size=len(student)))
    t_ctrl = data.draw(st.lists(st.booleans(), min_size=len(teacher), max_size=len(teacher)))
    expected = reference_pairs(student, teacher, s_ctrl, t_ctrl)
    s_obs = pd.DataFrame({"k": pd.Series(student, dtype=object)})
    t_obs = pd.DataFrame({"k": pd.Series(teacher, dtype=object)})
    kwargs = {"pair_keys": ("k",), "student_control": np.array(s_ctrl), "teacher_control": np.array(t_ctrl)}
    if not expected:
        with pytest.raises(ValueError, match="No weak pairs"):
            weak_pairs(s_obs, t_obs, **kwargs)
        return
    pairing = weak_pairs(s_obs, t_obs, **kwargs)
    starts = np.r_[0, np.cumsum(pairing.teacher_counts)]
    found = {
        int(row): set(pairing.teacher_rows[starts[code] : starts[code + 1]].tolist())
        for row, code in zip(pairing.student_rows, pairing.student_codes, strict=True)
    }
    assert found == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20))
def test_integer_keys_do_not_depend_on_the_dtype(column):
    as_int = pd.Series(column, dtype=np.int64)
    variants = {
        "int": as_int,
        "float": as_int.astype(np.float64),
        "object": as_int.astype(object),
        "category": as_int.astype("category"),
        "string": as_int.astype(str).astype("string"),
        "str-object": as_int.astype(str),
        "nullable": as_int.astype("Int64"),
    }
    expected = [str(v) for v in column]
    for name, series in variants.items():
        keys, missing = canonical_keys(series)
        assert keys.tolist() == expected, name
        assert not missing.any()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-4000, 4000).map(lambda i: i / 16), min_size=1, max_size=20))
def test_float_keys_do_not_depend_on_the_dtype(column):
    as_float = pd.Series(column, dtype=np.float64)
    variants = [
        as_float,
        as_float.astype(np.float32),
        as_float.astype(object),
        as_float.astype("category"),
        as_float.astype(str).astype("string"),
        as_float.astype(np.float32).astype(str),
    ]
    reference = canonical_keys(as_float)[0].tolist()
    for series in variants:
        assert canonical_keys(series)[0].tolist() == reference, series.dtype


def test_eight_digit_ids_stay_distinct_and_pair_across_dtypes():
    cids = np.arange(20) + 12_345_670
    student = pd.DataFrame({"perturbation": cids.astype(np.int64)})
    teacher = pd.DataFrame({"perturbation": cids.astype(str)})
    no = np.zeros(20, dtype=bool)
    pairing = weak_pairs(student, teacher, pair_keys=("perturbation",), student_control=no, teacher_control=no)
    assert len(pairing.keys) == 20
    assert pairing.counts["n_student_paired"] == 20
    # each student row pairs with the teacher row of its own ID
    assert np.array_equal(pairing.teacher_rows[pairing.student_codes], pairing.student_rows)


def test_one_text_value_does_not_change_how_the_column_compares():
    teacher = pd.DataFrame({"dose": pd.Series([10.0, 10.0, "none", 1.0], dtype=object)})
    student = pd.DataFrame({"dose": [10, 10, 1, 1]})
    pairing = weak_pairs(
        student,
        teacher,
        pair_keys=("dose",),
        student_control=np.zeros(4, dtype=bool),
        teacher_control=np.array([False, False, True, False]),
    )
    assert pairing.counts["n_student_unpaired"] == 0


def test_missing_and_special_values():
    keys, missing = canonical_keys(pd.Series([None, np.nan, pd.NA, "nan", True, 1, 1.0, "1", math.inf], dtype=object))
    assert missing.tolist() == [True, True, True] + [False] * 6
    assert keys[3:].tolist() == ["nan", "True", "1", "1", "1", "inf"]


def test_aggregate_uses_the_canonical_form():
    obs = pd.DataFrame({"g": pd.Series([1, "1", 1.0, "1.0", 12_345_678, 12_345_679], dtype=object)})
    data = ad.AnnData(obs=obs.set_axis([f"r{i}" for i in range(6)]))
    data.obsm["X_emb"] = np.arange(12, dtype=float).reshape(6, 2)
    agg = ssc.pp.aggregate(data, use_rep="X_emb", by="g", control_key=None)
    assert agg.obs_names.tolist() == ["1", "12345678", "12345679"]
    assert agg.obs["n_samples"].tolist() == [4, 1, 1]
    np.testing.assert_allclose(agg.X[0], data.obsm["X_emb"][:4].mean(axis=0))
