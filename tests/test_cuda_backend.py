"""The whole CUDA backend (checks, layouts, launch plans, kernels) without a GPU.

Under Numba's CUDA simulator "device" memory is host memory, so a NumPy array behind
``__cuda_array_interface__`` is a device array there: the backend reads its pointer,
shape and strides as it reads CuPy's, and ``launch_raw`` runs the kernels over that
memory in the simulator. Outputs are passed in: the backend would allocate them as
Numba device arrays, which the simulator's are not. On a GPU these tests skip; the
`gpu` tests cover the same ground with CuPy.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import oracle
import relukernels as rk
from strategies import based_arrays, broadcast_leaks, leaks_for

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]
if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("a GPU is present: test_gpu.py runs the backend on it", allow_module_level=True)

from relukernels._backends import cuda as cuda_backend  # noqa: E402

DTYPES = [np.dtype(c) for c in ("f2", "f4", "f8", "i1", "i4", "u8")]
OPS = {
    "relu": (rk.relu, oracle.relu),
    "relu_dash": (rk.relu_dash, oracle.relu_dash),
}


class HostDeviceArray:
    """A NumPy array seen through ``__cuda_array_interface__`` (version 3)."""

    def __init__(self, array: np.ndarray, read_only: bool = False) -> None:
        self.array = array
        self.read_only = read_only

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def __cuda_array_interface__(self) -> dict:
        strides = None if self.array.flags.c_contiguous else self.array.strides
        pointer = self.array.__array_interface__["data"][0]
        return {"shape": self.array.shape, "typestr": self.array.dtype.str, "data": (pointer, self.read_only),
                "strides": strides, "version": 3}


def _expected(formula, x, leak):
    with np.errstate(all="ignore"):
        return formula(x, leak)


def _out_like(expected: np.ndarray, order: str) -> np.ndarray:
    """An output of ``expected``'s shape and dtype: C, F, reversed or a strided view."""
    if order == "strided":
        base = np.empty(tuple(2 * n for n in expected.shape), expected.dtype)
        return base[(*(slice(None, None, 2) for _ in expected.shape), ...)]  # `...` keeps 0-d an array
    if order == "reversed":
        return np.empty(expected.shape, expected.dtype)[(*(slice(None, None, -1) for _ in expected.shape), ...)]
    return np.empty(expected.shape, expected.dtype, order=order)


@settings(max_examples=60)
@given(based_arrays(dtypes=DTYPES, max_side=5), st.data())
def test_backend_matches_oracle(case, data):
    base, layout = case
    x = layout.view(np, base)
    leak = data.draw(leaks_for(x.dtype))
    order = data.draw(st.sampled_from(["C", "F", "strided", "reversed"]))
    before = x.copy()
    for name, (function, formula) in OPS.items():
        expected = _expected(formula, x, leak)
        out = _out_like(expected, order)
        result = function(HostDeviceArray(x), leak, out=HostDeviceArray(out))
        assert result.array is out, name
        np.testing.assert_array_equal(out, expected, strict=True)
    expected = [_expected(formula, x, leak) for _, formula in OPS.values()]
    pair = [_out_like(e, order) for e in expected]
    rk.relu_and_dash(HostDeviceArray(x), leak, out=tuple(HostDeviceArray(p) for p in pair))
    for got, want in zip(pair, expected, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)
    np.testing.assert_array_equal(x, before, strict=True)


@settings(max_examples=30)
@given(based_arrays(dtypes=DTYPES, max_side=5), st.data())
def test_in_place(case, data):
    base, layout = case
    x = layout.view(np, base)
    leak = data.draw(leaks_for(x.dtype))
    expected = _expected(oracle.relu, x, leak)
    assume(expected.dtype == x.dtype)  # not a fractional leak on integers (float64)
    dash = _expected(oracle.relu_dash, x, leak)
    original = x.copy()
    device_x, dy = HostDeviceArray(x), np.empty_like(dash)
    assert rk.relu(device_x, leak, out=device_x) is device_x
    np.testing.assert_array_equal(x, expected, strict=True)
    x[...] = original
    rk.relu_and_dash(device_x, leak, out=(device_x, HostDeviceArray(dy)))
    np.testing.assert_array_equal(x, expected, strict=True)
    np.testing.assert_array_equal(dy, dash, strict=True)


@pytest.mark.parametrize("dtype", ["f2", "f4", "f8", "i1"])
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("n", [1, 4, 2053])
def test_aligned_arrays_take_the_quads_kernel(dtype, offset, n):
    """Arrays aligned to four elements take the vector kernel, others the flat one;
    both give the oracle's values, the tail past the last quad included."""
    memory = np.empty(n + 16, dtype)
    start = -memory.ctypes.data % (4 * memory.itemsize) // memory.itemsize + offset
    x = memory[start : start + n]
    x[:] = np.random.default_rng(n).standard_normal(n) * 10
    out = np.empty(n + 4 * 16 // memory.itemsize, dtype)[: n]
    pointers = [x.ctypes.data, out.ctypes.data]
    layouts = (
        cuda_backend._layout(x.shape, x.strides, x.dtype), cuda_backend._layout(out.shape, out.strides, out.dtype)
    )
    [(kind, _)] = cuda_backend._plan(layouts, cuda_backend._aligned(pointers, layouts))
    assert kind == ("quads" if offset == 0 and out.ctypes.data % (4 * out.itemsize) == 0 else "flat")
    leak = 0.5 if x.dtype.kind == "f" else 2
    rk.relu(HostDeviceArray(x), leak, out=HostDeviceArray(out))
    np.testing.assert_array_equal(out, oracle.relu(x, leak), strict=True)


@pytest.mark.parametrize(
    "make_out, error, words",
    [
        (lambda x: np.empty(x.shape, x.dtype), TypeError, ["out", "numpy.ndarray"]),
        (lambda x: HostDeviceArray(np.empty(x.shape, np.float64)), TypeError, ["out", "dtype"]),
        (lambda x: HostDeviceArray(np.empty(x.shape[0] + 1, np.float32)), ValueError, ["out", "shape"]),
        (lambda x: HostDeviceArray(x[::-1]), ValueError, ["out", "overlaps"]),
        (lambda x: HostDeviceArray(np.empty_like(x), read_only=True), ValueError, ["out", "read-only"]),
    ],
)
def test_bad_out_writes_nothing(make_out, error, words):
    x = np.linspace(-2, 2, 16, dtype=np.float32)
    before = x.copy()
    with pytest.raises(error) as raised:
        rk.relu(HostDeviceArray(x), 0.5, out=make_out(x))
    assert all(word in str(raised.value) for word in words), str(raised.value)
    np.testing.assert_array_equal(x, before)


def test_overlapping_pair_is_refused():
    x = np.linspace(-2, 2, 16, dtype=np.float32)
    shared = np.zeros(24, np.float32)
    with pytest.raises(ValueError, match="overlap"):
        rk.relu_and_dash(HostDeviceArray(x), 0.5, out=(HostDeviceArray(shared[:16]), HostDeviceArray(shared[8:])))
    assert not shared.any()


def test_more_than_four_dimensions_launch_per_leading_index():
    base = np.random.default_rng(5).standard_normal((2, 3, 2, 3, 2, 6)).astype(np.float32)
    x = base[..., ::2].transpose(5, 4, 3, 2, 1, 0)
    out = np.empty(x.shape, np.float32)
    rk.relu(HostDeviceArray(x), 0.25, out=HostDeviceArray(out))
    np.testing.assert_array_equal(out, oracle.relu(x, 0.25), strict=True)


@settings(max_examples=60)
@given(based_arrays(dtypes=DTYPES, max_side=4, max_dims=5), st.data())
def test_array_leaks_match_oracle(case, data):
    """A leak per element (broadcast, stride 0 where it repeats), in the result dtype
    (an x of no known library has no library to cast it with)."""
    base, layout = case
    x = layout.view(np, base)
    leak = data.draw(broadcast_leaks(x.shape, x.dtype))
    leak = leak.astype(oracle.result_dtype(x, leak))
    order = data.draw(st.sampled_from(["C", "F", "strided", "reversed"]))
    expected = [_expected(formula, x, leak) for _, formula in OPS.values()]
    pair = [_out_like(e, order) for e in expected]
    rk.relu_and_dash(HostDeviceArray(x), HostDeviceArray(leak), out=tuple(HostDeviceArray(p) for p in pair))
    for got, want in zip(pair, expected, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)
    out = _out_like(expected[0], order)
    rk.relu(HostDeviceArray(x), HostDeviceArray(leak), out=HostDeviceArray(out))
    np.testing.assert_array_equal(out, expected[0], strict=True)


@pytest.mark.parametrize(
    "leak, error, words",
    [
        (np.ones(3, np.float32), ValueError, ["leak", "shape"]),
        (np.ones(2, np.float64), TypeError, ["leak", "dtype", "float32"]),
    ],
)
def test_bad_array_leak_writes_nothing(leak, error, words):
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(4, 2)
    out = np.zeros_like(x)
    with pytest.raises(error) as raised:
        rk.relu(HostDeviceArray(x), HostDeviceArray(leak), out=HostDeviceArray(out))
    assert all(word in str(raised.value) for word in words), str(raised.value)
    assert not out.any()


def test_a_device_leak_is_not_read_on_the_host():
    """Its values stay on the device (a host read would wait for it on every call, and
    is illegal during CUDA-graph capture): NaN and infinity are not refused, as for
    host arrays, but give what the formula gives."""
    x = np.array([[-2.0, 3.0], [-1.0, -0.5]], np.float32)
    leak = np.array([np.nan, np.inf], np.float32)
    y, dy = np.zeros_like(x), np.zeros_like(x)
    rk.relu_and_dash(HostDeviceArray(x), HostDeviceArray(leak), out=(HostDeviceArray(y), HostDeviceArray(dy)))
    np.testing.assert_array_equal(y, np.array([[np.nan, 3], [np.nan, -np.inf]], np.float32), strict=True)
    np.testing.assert_array_equal(dy, np.array([[np.nan, 1], [np.nan, np.inf]], np.float32), strict=True)


def test_an_interface_array_is_on_the_device_of_its_pointer():
    """The driver tells which device a pointer's memory is on; outputs are made and
    kernels launched there. The simulator has one device, 0."""
    adapter = cuda_backend._adapter(HostDeviceArray)
    x = HostDeviceArray(np.linspace(-1, 1, 4, dtype=np.float32))
    assert adapter.device_id(x) == 0
    with adapter.device(x):
        assert cuda_backend._kernels().current_device_id() == 0
    assert cuda_backend._kernels().pointer_device_id(0) == 0  # an empty array's null pointer: the current device


def test_the_interface_stream_is_honoured():
    """Version 3's ``stream``: the launch goes on it (the legacy default stream when absent)."""

    class OnStream(HostDeviceArray):
        @property
        def __cuda_array_interface__(self) -> dict:
            return {**super().__cuda_array_interface__, "stream": 1234}

    x = np.linspace(-1, 1, 4, dtype=np.float32)
    adapter = cuda_backend._adapter(OnStream)
    assert adapter.stream(OnStream(x)) == 1234
    assert adapter.stream(HostDeviceArray(x)) == 0
    out = np.empty_like(x)
    rk.relu(OnStream(x), 0.5, out=OnStream(out))
    np.testing.assert_array_equal(out, oracle.relu(x, 0.5), strict=True)


def _filled(values: np.ndarray, order: str) -> np.ndarray:
    """``values`` copied into an array of the layout ``_out_like`` makes."""
    array = _out_like(values, order)
    array[...] = values
    return array


def _backward_expected(grad: np.ndarray, x: np.ndarray, leak) -> np.ndarray:
    """The oracle: ``grad * relu_dash(x, leak)`` in NumPy."""
    with np.errstate(all="ignore"):
        return grad * oracle.relu_dash(x, leak)


@settings(max_examples=60)
@given(based_arrays(dtypes=DTYPES, max_side=5), st.data())
def test_backward_matches_oracle(case, data):
    """``relu_backward`` with grad, x and out of every layout (the quads, flat and
    strided kernels), a scalar leak, out a separate array, grad or x itself."""
    base, layout = case
    x = layout.view(np, base)
    leak = data.draw(leaks_for(x.dtype))
    assume(oracle.result_dtype(x, leak) == x.dtype)  # mixed dtypes: test_backward_of_mixed_dtypes_is_refused
    values = data.draw(hnp.arrays(x.dtype, x.shape, elements=hnp.from_dtype(x.dtype)))
    grad = _filled(values, data.draw(st.sampled_from(["C", "F", "strided", "reversed"])))
    expected = _backward_expected(grad, x, leak)
    out = _out_like(expected, data.draw(st.sampled_from(["C", "F", "strided", "reversed"])))
    result = rk.relu_backward(HostDeviceArray(grad), HostDeviceArray(x), leak, out=HostDeviceArray(out))
    assert result.array is out
    np.testing.assert_array_equal(out, expected, strict=True)
    x_before = x.copy()
    device_grad = HostDeviceArray(grad)
    assert rk.relu_backward(device_grad, HostDeviceArray(x), leak, out=device_grad) is device_grad
    np.testing.assert_array_equal(grad, expected, strict=True)
    np.testing.assert_array_equal(x, x_before, strict=True)
    grad[...] = values
    device_x = HostDeviceArray(x)
    assert rk.relu_backward(HostDeviceArray(grad), device_x, leak, out=device_x) is device_x
    np.testing.assert_array_equal(x, expected, strict=True)


@settings(max_examples=40)
@given(based_arrays(dtypes=DTYPES, max_side=4, max_dims=5), st.data())
def test_backward_array_leaks_match_oracle(case, data):
    """``relu_backward`` with a leak per element (the leaks kernel), in x's dtype."""
    base, layout = case
    x = layout.view(np, base)
    leak = data.draw(broadcast_leaks(x.shape, x.dtype)).astype(x.dtype)
    grad = _filled(data.draw(hnp.arrays(x.dtype, x.shape, elements=hnp.from_dtype(x.dtype))),
                   data.draw(st.sampled_from(["C", "F", "strided", "reversed"])))
    expected = _backward_expected(grad, x, leak)
    out = _out_like(expected, data.draw(st.sampled_from(["C", "F", "strided", "reversed"])))
    rk.relu_backward(HostDeviceArray(grad), HostDeviceArray(x), HostDeviceArray(leak), out=HostDeviceArray(out))
    np.testing.assert_array_equal(out, expected, strict=True)


@pytest.mark.parametrize(
    "make_grad, leak, error, words",
    [
        (lambda x: np.ones(x.shape, np.float64), 0.5, TypeError, ["grad", "dtype", "float64"]),
        (lambda x: np.ones(x.shape, np.int8), 0.5, TypeError, ["grad", "dtype", "float32"]),
        (lambda x: np.ones(x.shape, np.complex64), 0.5, TypeError, ["grad", "dtype", "complex64"]),
        (lambda x: np.ones(x.size + 1, np.float32), 0.5, ValueError, ["grad", "shape"]),
    ],
)
def test_bad_backward_writes_nothing(make_grad, leak, error, words):
    """Mixed dtypes have no kernel, and arrays of no known library no library to cast
    them in: refused, as are complex grads and other shapes."""
    x = np.linspace(-2, 2, 16, dtype=np.float32)
    out = np.zeros_like(x)
    with pytest.raises(error) as raised:
        rk.relu_backward(HostDeviceArray(make_grad(x)), HostDeviceArray(x), leak, out=HostDeviceArray(out))
    assert all(word in str(raised.value) for word in words), str(raised.value)
    assert not out.any()


def test_backward_out_may_not_partly_overlap_grad():
    memory = np.linspace(-2, 2, 24, dtype=np.float32)
    grad, x = memory[:16], np.linspace(-1, 1, 16, dtype=np.float32)
    before = memory.copy()
    with pytest.raises(ValueError, match="out overlaps grad"):
        rk.relu_backward(HostDeviceArray(grad), HostDeviceArray(x), 0.5, out=HostDeviceArray(memory[8:]))
    np.testing.assert_array_equal(memory, before)
