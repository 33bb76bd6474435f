"""Every NumPy-backend result against the oracle, and the oracle against the seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
import relukernels as rk
from strategies import REAL_DTYPES, leaks_for, strided_arrays


def seed_relu(x, leak=0):
    """The tutorial's code, verbatim."""
    return np.where(x <= 0, leak * x, x)


def seed_relu_dash(x, leak=0):
    return np.where(x <= 0, leak, 1)


def assert_identical(result, expected):
    assert type(result) is np.ndarray
    assert result.dtype == expected.dtype
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result, expected, strict=True)


@st.composite
def cases(draw, **kwargs):
    x = draw(strided_arrays(**kwargs))
    return x, draw(leaks_for(x.dtype))


@given(cases())
def test_relu_matches_oracle(threading, case):
    x, leak = case
    before = x.copy()
    with np.errstate(all="ignore"):
        expected = oracle.relu(x, leak)
    assert_identical(rk.relu(x, leak), expected)
    np.testing.assert_array_equal(x, before, strict=True)


@given(cases())
def test_relu_dash_matches_oracle(threading, case):
    x, leak = case
    before = x.copy()
    assert_identical(rk.relu_dash(x, leak), oracle.relu_dash(x, leak))
    np.testing.assert_array_equal(x, before, strict=True)


@given(cases())
def test_relu_and_dash_equals_separate_calls(threading, case):
    x, leak = case
    y, dy = rk.relu_and_dash(x, leak)
    assert_identical(y, rk.relu(x, leak))
    assert_identical(dy, rk.relu_dash(x, leak))


@given(cases())
def test_read_only_inputs(threading, case):
    """Read-only arrays (memory-mapped files, broadcasts) are inputs like any other."""
    x, leak = case
    x.flags.writeable = False
    y, dy = rk.relu_and_dash(x, leak)
    with np.errstate(all="ignore"):
        assert_identical(y, oracle.relu(x, leak))
    assert_identical(dy, oracle.relu_dash(x, leak))
    assert_identical(rk.relu(x, leak), y)


@given(cases(dtypes=[np.dtype(c) for c in ("f2", "f4", "f8")]))
def test_oracle_is_the_seed_formula(case):
    """The oracle is the seed, except where the contract pins down what the seed leaves
    open: relu(-inf) with leak 0 is 0, not NaN; the derivative keeps x's dtype."""
    x, leak = case
    with np.errstate(all="ignore"):
        seed = seed_relu(x, leak)
        expected = oracle.relu(x, leak)
    if x.dtype.type(leak) == 0:
        seed = np.where(np.isneginf(x), 0, seed).astype(x.dtype)
    assert expected.dtype == seed.dtype == x.dtype
    np.testing.assert_array_equal(expected, seed)
    dash = oracle.relu_dash(x, leak)
    assert dash.dtype == x.dtype
    np.testing.assert_array_equal(dash, seed_relu_dash(x, x.dtype.type(leak)))


@given(cases(dtypes=[np.dtype(c) for c in ("i1", "i2", "i4", "i8", "u1", "u4")]))
def test_oracle_is_the_seed_formula_on_integers(case):
    x, leak = case
    with np.errstate(all="ignore"):
        expected = seed_relu(x, leak)
        result = oracle.relu(x, leak)
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == expected.dtype


@pytest.mark.parametrize("dtype", [d for d in REAL_DTYPES if d.kind == "f"])
def test_every_value_of_the_specials(dtype):
    """NaN passes through relu and gives 1 in relu_dash; -inf gives 0 with leak 0."""
    x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -1.0, 1.0], dtype)
    np.testing.assert_array_equal(rk.relu(x), [np.nan, 0, np.inf, 0, 0, 0, 1])
    np.testing.assert_array_equal(rk.relu(x, 0.5), [np.nan, -np.inf, np.inf, 0, 0, -0.5, 1])
    np.testing.assert_array_equal(rk.relu_dash(x, 0.5), [1, 0.5, 1, 0.5, 0.5, 0.5, 1])


@pytest.mark.parametrize("dtype, leak", [(np.float16, 2e-8), (np.float32, 7e-46), (np.float64, 0.0)])
def test_a_leak_that_rounds_to_zero_is_zero(dtype, leak):
    """``a`` is the leak in x's dtype: where it rounds to 0, relu(-inf) is 0, not NaN."""
    x = np.array([-np.inf, -1.0, 2.0], dtype)
    np.testing.assert_array_equal(rk.relu(x, leak), [0, 0, 2])
    np.testing.assert_array_equal(rk.relu_dash(x, leak), [0, 0, 1])


def test_every_float16_value_with_many_leaks():
    """All 65,536 float16 inputs, against NumPy's own float16 product."""
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    for leak in (0.0, 0.01, 0.1, 0.2, -1.5, 3.0, 1e-4):
        with np.errstate(all="ignore"):
            expected = np.where(x <= 0, np.float16(leak) * x, x)
        if leak == 0:
            expected[np.isneginf(x)] = 0
        assert_identical(rk.relu(x, leak), expected)


def test_the_tutorial_examples():
    x = np.array([[-0.5], [0], [1], [2], [3], [4.5]])
    np.testing.assert_array_equal(rk.relu(x, leak=0.1), [[-0.05], [0], [1], [2], [3], [4.5]])
    np.testing.assert_array_equal(rk.relu_dash(x, leak=0.1), [[0.1], [0.1], [1], [1], [1], [1]])
    x = np.array([[0.2], [0.5], [1.2], [-2.3], [0]])
    np.testing.assert_array_equal(rk.relu(x), [[0.2], [0.5], [1.2], [0], [0]])
    np.testing.assert_array_equal(rk.relu_dash(x), [[1], [1], [1], [0], [0]])


@pytest.mark.parametrize(
    "value, dtype",
    [([1.5, -2.0], np.float64), ((-1, 2), np.int64), (-3.0, np.float64), (np.float32(-3), np.float32)],
)
def test_array_likes_become_numpy(value, dtype):
    result = rk.relu(value, 2)
    assert type(result) is np.ndarray and result.dtype == dtype
    np.testing.assert_array_equal(result, oracle.relu(np.asarray(value), 2))


def test_integer_dtype_rules():
    """NEP 50, as the seed's np.where gives it: an int leak (the default 0 too) keeps
    the integer dtype; a float leak gives float64, whatever its value."""
    x = np.array([-3, 0, 4], np.int16)
    for leak, dtype in ((0, np.int16), (2, np.int16), (0.0, np.float64), (2.0, np.float64), (0.5, np.float64)):
        seed = np.where(x <= 0, leak * x, x)
        assert rk.relu(x, leak).dtype == rk.relu_dash(x, leak).dtype == seed.dtype == dtype
        assert rk.relu_and_dash(x, leak)[0].dtype == rk.ufuncs.relu(x, leak).dtype == dtype
        np.testing.assert_array_equal(rk.relu(x, leak), seed)
    assert rk.relu(x).dtype == np.int16
    np.testing.assert_array_equal(rk.relu(np.array([-100], np.int8), 2), [56])  # wraps as NumPy does
