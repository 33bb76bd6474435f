"""Namespaces without kernels of their own go to the formula in their own operations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
import relukernels as rk
from strategies import leaks_for, strided_arrays

xp = pytest.importorskip("array_api_strict")

DTYPES = [np.dtype(c) for c in ("f4", "f8", "i1", "i4", "i8", "u1", "u8")]
CPU = xp.Device("CPU_DEVICE")
DEVICES = [CPU, xp.Device("device1")]


def to_numpy(array):
    return np.asarray(array.to_device(CPU))


@st.composite
def strict_cases(draw):
    x = draw(strided_arrays(dtypes=DTYPES))
    leak = draw(leaks_for(x.dtype).filter(lambda v: x.dtype.kind == "f" or isinstance(v, int)))
    return x, leak, draw(st.sampled_from(DEVICES))


@given(strict_cases())
def test_array_api_strict_matches_oracle(case):
    x_np, leak, device = case
    x = xp.asarray(x_np, device=device)
    for function, formula in ((rk.relu, oracle.relu), (rk.relu_dash, oracle.relu_dash)):
        result = function(x, leak)
        assert type(result) is type(x)
        assert result.device == device and result.dtype == x.dtype and result.shape == x.shape
        with np.errstate(all="ignore"):
            expected = formula(x_np, leak)
        np.testing.assert_array_equal(to_numpy(result), expected, strict=True)
    y, dy = rk.relu_and_dash(x, leak)
    np.testing.assert_array_equal(to_numpy(y), to_numpy(rk.relu(x, leak)))
    np.testing.assert_array_equal(to_numpy(dy), to_numpy(rk.relu_dash(x, leak)))


def test_a_float_leak_with_integers_is_refused_as_the_namespace_refuses_it():
    """array-api-strict refuses ``0.5 * x`` for an integer ``x``: so does relu."""
    x = xp.asarray([-2, 3], dtype=xp.int32)
    assert rk.relu(x, 2).dtype == xp.int32
    for leak in (0.5, 2.0):
        with pytest.raises(TypeError, match=r"leak=.*float.*int32"):
            rk.relu(x, leak)


def test_out_and_in_place():
    x = xp.asarray([-2.0, 0.0, 3.0])
    out = xp.empty((3,), dtype=xp.float64)
    assert rk.relu(x, 0.5, out=out) is out
    assert rk.relu_dash(x, 0.5, out=x) is x
    np.testing.assert_array_equal(np.asarray(out), [-1.0, 0.0, 3.0])
    np.testing.assert_array_equal(np.asarray(x), [0.5, 0.5, 1.0])


@pytest.mark.parametrize(
    "out, error, words",
    [
        (np.empty(3), TypeError, ["out", "array_api_strict", "numpy.ndarray"]),
        (xp.empty((3,), dtype=xp.float32), TypeError, ["out", "dtype"]),
        (xp.empty((4,), dtype=xp.float64), ValueError, ["out", "shape"]),
        (xp.empty((3,), dtype=xp.float64, device=xp.Device("device1")), ValueError, ["out", "device"]),
    ],
)
def test_bad_out_writes_nothing(out, error, words):
    x = xp.asarray([-2.0, 0.0, 3.0])
    before = out.copy() if isinstance(out, np.ndarray) else to_numpy(out)
    with pytest.raises(error) as raised:
        rk.relu(x, out=out)
    assert all(word in str(raised.value) for word in words)
    np.testing.assert_array_equal(to_numpy(out) if not isinstance(out, np.ndarray) else out, before)


def test_a_namespace_that_refuses_int_float_mixing_refuses_it():
    with pytest.raises(TypeError):
        rk.relu(xp.asarray([-3, 4], dtype=xp.int16), 0.5)


def test_bool_dtype_is_a_type_error():
    with pytest.raises(TypeError, match="x has dtype .*bool"):
        rk.relu(xp.asarray([True, False]))
