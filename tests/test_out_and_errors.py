"""``out=``, and every bad input: a clear error naming the argument, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
import relukernels as rk
from strategies import leaks_for, strided_arrays

FUNCTIONS = [rk.relu, rk.relu_dash]
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # leak * x beyond the dtype


@pytest.mark.parametrize("function", FUNCTIONS)
@given(data=st.data())
def test_out_fresh_and_strided(function, data):
    x = data.draw(strided_arrays())
    leak = data.draw(leaks_for(x.dtype))
    expected = function(x, leak)
    target = np.full((2 * max(x.size, 1),), 7, expected.dtype)[::2][: x.size].reshape(x.shape)
    assert function(x, leak, out=target) is target
    np.testing.assert_array_equal(target, expected, strict=True)


@pytest.mark.parametrize("function", FUNCTIONS)
@given(data=st.data())
def test_out_is_x_in_place(function, data):
    x = data.draw(strided_arrays(dtypes=[np.dtype(c) for c in ("f2", "f4", "f8", "i4")]))
    leak = data.draw(leaks_for(x.dtype).filter(lambda v: isinstance(v, int) or x.dtype.kind == "f"))
    expected = function(x.copy(), leak)
    assert function(x, leak, out=x) is x
    np.testing.assert_array_equal(x, expected, strict=True)


def test_out_overlapping_x_gives_the_non_overlapping_result():
    base = np.linspace(-3, 3, 101)
    expected = rk.relu(base[:-1].copy(), 0.5)
    rk.relu(base[:-1], 0.5, out=base[1:])
    np.testing.assert_array_equal(base[1:], expected)


def test_relu_and_dash_out_pair():
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    y, dy = np.empty_like(x), np.empty_like(x)
    result = rk.relu_and_dash(x, 0.1, out=(y, dy))
    assert result[0] is y and result[1] is dy
    np.testing.assert_array_equal(y, oracle.relu(x, 0.1))
    np.testing.assert_array_equal(dy, oracle.relu_dash(x, 0.1))
    rk.relu_and_dash(x, 0.1, out=[x, dy])
    np.testing.assert_array_equal(x, y)


def test_relu_and_dash_out_for_an_unchecked_none_entry():
    x = np.linspace(-2, 2, 9)
    dy = np.empty_like(x)
    y, result_dy = rk.relu_and_dash(x, out=(None, dy))
    assert result_dy is dy
    np.testing.assert_array_equal(y, rk.relu(x))


def _x():
    return np.array([-2.0, -0.5, 0.0, 1.5], np.float32)


BAD_CALLS = [
    # (call, error, words the message must hold)
    (lambda x, o: rk.relu(x, float("nan")), ValueError, ["leak", "finite"]),
    (lambda x, o: rk.relu(x, float("inf")), ValueError, ["leak", "finite"]),
    (lambda x, o: rk.relu(x, -np.inf), ValueError, ["leak", "finite"]),
    (lambda x, o: rk.relu(x, np.float32("nan")), ValueError, ["leak"]),
    (lambda x, o: rk.relu(x, np.array(np.inf)), ValueError, ["leak"]),
    (lambda x, o: rk.relu(x, 1j), TypeError, ["leak", "real"]),
    (lambda x, o: rk.relu(x, "0.1"), TypeError, ["leak", "str"]),
    (lambda x, o: rk.relu(x, None), TypeError, ["leak"]),
    (lambda x, o: rk.relu(x, True), TypeError, ["leak", "boolean"]),
    (lambda x, o: rk.relu(x, np.array([0.1, 0.2])), ValueError, ["leak", "shape", "(4,)"]),
    (lambda x, o: rk.relu(x, np.ones((2, 4))), ValueError, ["leak", "shape"]),
    (lambda x, o: rk.relu(x, np.array([0.1, np.nan, 0, 0])), ValueError, ["leak", "finite"]),
    (lambda x, o: rk.relu(x, np.array([1j] * 4)), TypeError, ["leak", "complex"]),
    (lambda x, o: rk.relu(x, np.array([True] * 4)), TypeError, ["leak", "bool"]),
    (lambda x, o: rk.relu(x.astype(np.float16), np.full(4, 1e5)), ValueError, ["leak", "float16"]),
    (lambda x, o: rk.relu(np.array([1, -1], np.int8), np.array([300, 1])), ValueError, ["leak", "int8"]),
    (lambda x, o: rk.relu(x, __import__("array_api_strict").ones(4)), TypeError, ["leak", "NumPy"]),
    (lambda x, o: rk.relu(x.astype(np.float16), 1e5), ValueError, ["leak", "float16"]),
    (lambda x, o: rk.relu(np.array([1, -1], np.int8), 300), ValueError, ["leak", "int8"]),
    (lambda x, o: rk.relu_dash(np.array([1, 0], np.uint8), -1), ValueError, ["leak", "uint8"]),
    (lambda x, o: rk.relu(np.array([True, False]), 0.1), TypeError, ["dtype", "bool"]),
    (lambda x, o: rk.relu(np.array([1 + 1j]), 0.1), TypeError, ["dtype", "complex"]),
    (lambda x, o: rk.relu(np.array(["a"]), 0.1), TypeError, ["dtype"]),
    (lambda x, o: rk.relu(np.array([1.0], dtype=object), 0.1), TypeError, ["dtype", "object"]),
    (lambda x, o: rk.relu({"a": 1}), TypeError, ["x must be an array", "dict"]),
    (lambda x, o: rk.relu(object()), TypeError, ["x must be an array"]),
    (lambda x, o: rk.relu(x, out=[0.0] * 4), TypeError, ["out", "numpy.ndarray", "list"]),
    (lambda x, o: rk.relu(x, out=o[:3]), ValueError, ["out", "shape"]),
    (lambda x, o: rk.relu(x, out=o.reshape(2, 2)), ValueError, ["out", "shape"]),
    (lambda x, o: rk.relu(x, out=o.astype(np.float64)), TypeError, ["out", "dtype", "float64"]),
    (lambda x, o: rk.relu(x, out=np.broadcast_to(np.float32(0), (4,))), ValueError, ["out", "read-only"]),
    (lambda x, o: rk.relu_dash(x.astype(np.int16), 0.5, out=o), TypeError, ["out", "float64"]),
    (lambda x, o: rk.relu_and_dash(x, out=o), TypeError, ["out", "pair"]),
    (lambda x, o: rk.relu_and_dash(x, out=(o,)), TypeError, ["out", "pair"]),
    (lambda x, o: rk.relu_and_dash(x, out=(o, o)), ValueError, ["out[0]", "out[1]"]),
    (lambda x, o: rk.relu_and_dash(x, out=(o, o[::-1])), ValueError, ["out[0]", "out[1]", "overlap"]),
    (lambda x, o: rk.relu_and_dash(x, out=(o, o[:2])), ValueError, ["out[1]", "shape"]),
    (lambda x, o: rk.relu_and_dash(x, out=(o, o.astype(np.float16))), TypeError, ["out[1]", "dtype"]),
]


@pytest.mark.parametrize("call, error, words", BAD_CALLS)
def test_bad_input_raises_naming_the_argument_and_writes_nothing(call, error, words):
    x = _x()
    out = np.full(4, 7.0, np.float32)
    x_before, out_before = x.copy(), out.copy()
    with pytest.raises(error) as raised:
        call(x, out)
    for word in words:
        assert word in str(raised.value)
    np.testing.assert_array_equal(x, x_before, strict=True)
    np.testing.assert_array_equal(out, out_before, strict=True)


@pytest.mark.parametrize(
    "leak, expected",
    [(np.float32(0.5), 0.5), (np.int64(2), 2), (np.array(0.25), 0.25), (np.array(3, np.uint8), 3)],
)
def test_leak_may_be_a_numpy_scalar_or_0d_array(leak, expected):
    np.testing.assert_array_equal(rk.relu(np.array([-2.0]), leak), [-2.0 * expected])


@pytest.mark.parametrize(
    "make_x, leak",
    [
        (lambda: np.linspace(-3, 3, 7), -1.0),  # the flat loop
        (lambda: np.linspace(-3, 3, 14)[::2], -1.0),  # the strided loop
        (lambda: np.linspace(-3, 3, 7).astype(np.float16), -1.0),  # the float16 tables
        (lambda: np.linspace(-3, 3, 4 * 64).reshape(4, 64), np.array([[-1.0], [0.5], [-2.0], [0.0]])),  # rows
        (lambda: np.linspace(-3, 3, 8).reshape(4, 2), np.array([-1.0, 0.5])),  # the ufunc
    ],
    ids=["flat", "strided", "float16", "rows", "ufunc"],
)
def test_relu_and_dash_into_x_reads_x_before_it_is_overwritten(make_x, leak):
    """out=(x, dy): dy must be the derivative at the original x, also where the leak is
    negative and the new x has changed sign."""
    x = make_x()
    expected = oracle.relu(x, leak), oracle.relu_dash(x, leak)
    dy = np.empty(x.shape, expected[1].dtype)
    rk.relu_and_dash(x, leak, out=(x, dy))
    np.testing.assert_array_equal(x, expected[0], strict=True)
    np.testing.assert_array_equal(dy, expected[1], strict=True)
