"""The ufuncs themselves (``relukernels.ufuncs``): real NumPy ufuncs, against the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
import relukernels as rk
from relukernels import ufuncs
from strategies import FLOAT_DTYPES, INTEGER_DTYPES, broadcast_leaks, leaks_for, strided_arrays

DTYPES = FLOAT_DTYPES + INTEGER_DTYPES


def test_they_are_numpy_ufuncs():
    for ufunc in (ufuncs.relu, ufuncs.relu_dash, ufuncs.relu_and_dash):
        assert isinstance(ufunc, np.ufunc) and ufunc.nin == 2
    assert (ufuncs.relu.nout, ufuncs.relu_dash.nout, ufuncs.relu_and_dash.nout) == (1, 1, 2)
    assert {"ff->f", "dd->d", "bb->b", "LL->L"} <= set(ufuncs.relu.types)
    assert ufuncs.relu.__name__ == "relu" and ufuncs.relu_and_dash.__name__ == "relu_and_dash"


def _call(ufunc, x, leak):
    """The ufunc as the contract asks: the leak in the result dtype; float16 into a
    float16 ``out`` (there is no float16 loop: it computes in float32)."""
    dtype = oracle.result_dtype(x, leak)
    a = np.asarray(leak).astype(dtype)
    outs = tuple(np.empty(x.shape, dtype) for _ in range(ufunc.nout))
    result = ufunc(x, a, out=outs if ufunc.nout > 1 else outs[0])
    return result if ufunc.nout > 1 else (result,)


@st.composite
def cases(draw, array_leak=False):
    x = draw(strided_arrays(dtypes=DTYPES))
    leak = draw(broadcast_leaks(x.shape, x.dtype)) if array_leak else draw(leaks_for(x.dtype))
    return x, leak


@pytest.mark.filterwarnings("ignore:overflow encountered")
@given(cases(), st.booleans())
def test_ufuncs_match_the_oracle(case, array_leak):
    x, leak = case
    if array_leak:
        leak = np.full((1,) * x.ndim, leak)
    (y,) = _call(ufuncs.relu, x, leak)
    (dy,) = _call(ufuncs.relu_dash, x, leak)
    np.testing.assert_array_equal(y, oracle.relu(x, leak), strict=True)
    np.testing.assert_array_equal(dy, oracle.relu_dash(x, leak), strict=True)
    both = _call(ufuncs.relu_and_dash, x, leak)
    np.testing.assert_array_equal(both[0], y, strict=True)
    np.testing.assert_array_equal(both[1], dy, strict=True)


@pytest.mark.filterwarnings("ignore:overflow encountered")
@given(cases(array_leak=True))
def test_broadcast_leaks_match_the_oracle(case):
    x, leak = case
    (y,) = _call(ufuncs.relu, x, leak)
    np.testing.assert_array_equal(y, oracle.relu(x, leak), strict=True)
    (dy,) = _call(ufuncs.relu_dash, x, leak)
    np.testing.assert_array_equal(dy, oracle.relu_dash(x, leak), strict=True)


def test_prelu_leak_per_channel():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    leak = np.array([0.0, 0.1, -2.0], np.float32).reshape(3, 1, 1)
    np.testing.assert_array_equal(ufuncs.relu(x, leak), oracle.relu(x, leak), strict=True)


def test_out():
    x = np.linspace(-2, 2, 9)
    y = np.full_like(x, 7.0)
    assert ufuncs.relu(x, 0.5, out=y) is y
    np.testing.assert_array_equal(y, oracle.relu(x, 0.5))
    y, dy = np.zeros_like(x), np.zeros_like(x)
    assert ufuncs.relu_and_dash(x, 0.5, out=(y, dy))[0] is y
    np.testing.assert_array_equal(y, oracle.relu(x, 0.5))
    np.testing.assert_array_equal(dy, oracle.relu_dash(x, 0.5))


def test_where_is_refused_by_numpy_for_numba_ufuncs():
    """A known limitation of every Numba-built ufunc (Numba flags the output operands
    itself). This test fails, and the README's note should go, once Numba fixes it."""
    x = np.linspace(-2, 2, 9)
    with pytest.raises(ValueError, match="ARRAYMASK"):
        ufuncs.relu(x, 0.5, out=np.zeros_like(x), where=x > 0)


def test_out_overlapping_x_is_buffered_by_numpy():
    base = np.linspace(-3, 3, 101)
    expected = oracle.relu(base[:-1].copy(), 0.5)
    ufuncs.relu(base[:-1], 0.5, out=base[1:])
    np.testing.assert_array_equal(base[1:], expected)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("leak", [0.0, 0.5, -2.0])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_nan_and_infinities_raise_no_warning(dtype, leak, layout):
    """Under the default np.seterr, with warnings as errors: no ufunc, fast loop or
    strided path warns about NaN or infinite inputs."""
    values = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, -1.0, 1.0] * 16, dtype)
    x = values if layout == "contiguous" else np.repeat(values, 2)[::2]
    expected_y, expected_dy = oracle.relu(x, leak), oracle.relu_dash(x, leak)
    a = np.asarray(leak, dtype)
    np.testing.assert_array_equal(ufuncs.relu(x, a, out=np.empty_like(x)), expected_y)
    np.testing.assert_array_equal(ufuncs.relu_dash(x, a, out=np.empty_like(x)), expected_dy)
    for function, expected in ((rk.relu, expected_y), (rk.relu_dash, expected_dy)):
        np.testing.assert_array_equal(function(x, leak), expected)
        np.testing.assert_array_equal(function(x, np.full(x.shape, leak)), expected)
    y, dy = rk.relu_and_dash(x, leak)
    np.testing.assert_array_equal(dy, expected_dy)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_integer_promotion_is_numpys(dtype):
    """An int leak keeps the integer dtype; a float one gives float64, whatever its
    value, as ``np.where(x <= 0, leak * x, x)`` does: the ufunc and rk.relu agree."""
    x = np.array([0, 4], dtype)
    assert ufuncs.relu(x, 2).dtype == rk.relu(x, 2).dtype == dtype
    for leak in (0.5, 2.0, 0.0):
        assert ufuncs.relu(x, leak).dtype == rk.relu(x, leak).dtype == np.where(x <= 0, leak * x, x).dtype == np.float64


def test_callable_from_numba_njit():
    numba = pytest.importorskip("numba")

    @numba.njit
    def layer(x, leak):
        y, dy = np.empty_like(x), np.empty_like(x)
        ufuncs.numba_relu_and_dash(x, leak, y, dy)
        return ufuncs.numba_relu(x, leak), ufuncs.numba_relu_dash(x[0], leak), y, dy

    x = np.array([-2.0, 3.0])
    y, first_dash, y2, dy = layer(x, 0.25)
    np.testing.assert_array_equal(y, [-0.5, 3.0])
    assert first_dash == 0.25
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(dy, [0.25, 1.0])
