"""Edges that client programs hit: byte order, outputs that alias ``x`` without being
``x``, signed zero leaks, and the one rule for warnings, on every path."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import oracle
import relukernels as rk


def _containers(values: np.ndarray) -> dict[str, object]:
    """``values`` in each container that speaks NumPy's ufunc protocol, where installed."""
    made: dict[str, object] = {
        "masked array": np.ma.masked_array(values, mask=[False] * (len(values) - 1) + [True]),
        "matrix": np.asmatrix(values),
        "subclass": values.view(type("Subclass", (np.ndarray,), {})),
    }
    try:
        import pandas as pd

        made["pandas Series"] = pd.Series(values)
    except ImportError:
        pass
    try:
        import xarray

        made["xarray DataArray"] = xarray.DataArray(values, dims=["i"])
    except ImportError:
        pass
    return made


@pytest.mark.parametrize("kind", ["masked array", "matrix", "subclass", "pandas Series", "xarray DataArray"])
@pytest.mark.parametrize("byteorder", [">", "<"])
def test_big_endian_containers_compute_as_native_ones(kind, byteorder):
    """Data from netCDF files or ``np.frombuffer(..., ">f4")`` is big-endian."""
    values = np.array([-2.0, 3.0, -0.5, 7.0], f"{byteorder}f4")
    containers = _containers(values)
    if kind not in containers:
        pytest.skip(f"{kind}: library not installed")
    x = containers[kind]
    expected = np.maximum(x, 0)
    for function, formula in ((rk.relu, oracle.relu), (rk.relu_dash, oracle.relu_dash)):
        result = function(x, 0.25)
        assert type(result) is type(expected)
        np.testing.assert_array_equal(np.ravel(np.asarray(result)), formula(values.astype("<f4"), 0.25))
    y, dy = rk.relu_and_dash(x, 0.25)
    np.testing.assert_array_equal(np.ravel(np.asarray(dy)), oracle.relu_dash(values.astype("<f4"), 0.25))


def test_big_endian_ndarrays_keep_their_byte_order_on_every_path():
    x = np.array([-2.0, 3.0, -0.5, 7.0, 0.0, -1.0], ">f8")
    for view in (x, x[::2], x.reshape(2, 3).T):
        result = rk.relu(view, 0.5)
        assert result.dtype == view.dtype
        np.testing.assert_array_equal(result, oracle.relu(view.astype("<f8"), 0.5))
        assert rk.relu(view, 0.5, out=view.copy()).dtype == view.dtype


@pytest.mark.parametrize("kind", ["masked array", "matrix", "ndarray"])
def test_an_out_that_aliases_x_without_being_x_is_written_after_the_other(kind):
    """``out=(x[...], dy)`` is x's memory in another object: relu_dash must read x
    before relu overwrites it. The order is decided by memory, not identity."""
    values = np.array([-1.0, 2.0, -4.0])
    make = {"masked array": np.ma.masked_array, "matrix": np.asmatrix, "ndarray": np.array}[kind]
    expected = (oracle.relu(values, -0.5), oracle.relu_dash(values, -0.5))
    for first_aliases in (True, False):
        x = make(values.copy())
        other = make(np.empty_like(values))
        out = (x[...], other) if first_aliases else (other, x[...])
        y, dy = rk.relu_and_dash(x, -0.5, out=out)
        np.testing.assert_array_equal(np.ravel(np.asarray(y)), expected[0])
        np.testing.assert_array_equal(np.ravel(np.asarray(dy)), expected[1])


def test_two_outputs_that_each_overlap_x_read_a_copy_of_it():
    """y covers x's first half and dy its second: either order would read an element
    the other overwrote."""
    base = np.linspace(-1, 1, 20)
    x = base[::2]
    want_y, want_dy = oracle.relu(x, 0.5), oracle.relu_dash(x, 0.5)
    y, dy = rk.relu_and_dash(x, 0.5, out=(base[:10], base[10:]))
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(dy, want_dy)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_sign_of_a_zero_leak_does_not_depend_on_earlier_calls(dtype):
    """``relu_dash`` returns the leak where ``x <= 0``: +0.0 for a leak of +0.0 and
    -0.0 for -0.0, whichever came first, in float16 as in the other dtypes."""
    x = np.array([-1.0, 2.0], dtype)
    for order in ((-0.0, 0.0), (0.0, -0.0)):
        for leak in order:
            result = rk.relu_dash(x, leak)
            assert np.signbit(result[0]) == np.signbit(leak), (order, leak)
            assert np.signbit(rk.relu_dash(x[::-1], leak)[1]) == np.signbit(leak)


def _every_path(x: np.ndarray):
    """``x`` on each NumPy path: contiguous, strided, Fortran order, float16, an array
    leak, and a container."""
    yield "contiguous", x, 3e38
    yield "strided", x[::2], 3e38
    yield "fortran", np.asfortranarray(np.stack([x, x])), 3e38
    yield "array leak", x, np.full(x.shape, 3e38, np.float32)
    yield "float16", np.where(np.abs(x) < 3e38, x, np.sign(x) * 60000).astype(np.float16), 60000.0
    yield "masked array", np.ma.masked_array(x), 3e38


@pytest.mark.parametrize("size", [16, 1 << 17])
def test_no_call_warns_on_any_path(size):
    """One rule (docs/contract.md, "Warnings"): no call warns. NaN and infinite inputs
    are quiet, and a product ``leak * x`` that overflows is ±inf, silently, whatever
    the layout, leak kind or backend."""
    x = np.resize(np.array([-3e38, 2.0, np.nan, -np.inf, np.inf, -0.0, -1.0, 4.0], np.float32), size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, view, leak in _every_path(x):
            y = rk.relu(view, leak)
            rk.relu_dash(view, leak)
            rk.relu_and_dash(view, leak)
            grad = np.full_like(view, np.inf)
            rk.relu_backward(grad, view, leak)
            rk.relu_backward(grad, view, 0.0)
            assert np.isneginf(np.asarray(y).ravel()[0]), name
        torch = pytest.importorskip("torch")
        for dtype in (torch.float32, torch.float16):
            t = torch.from_numpy(x).to(dtype)
            rk.relu(t, 3e38 if dtype == torch.float32 else 60000.0)
            rk.relu_backward(torch.full_like(t, float("inf")), t, 0.0)


def test_an_equivalent_dtype_object_does_not_change_later_calls():
    """NumPy has two dtype objects for int64 on Linux (``np.longlong``, ``'q'``, and
    ``np.int64``, ``'l'``: equal, one hash) and dtypes that carry metadata (equal to
    the plain one). Whichever a process meets first must not decide how the other
    computes, nor leak its metadata into other results: a fresh process, to see it."""
    code = """
import numpy as np, relukernels as rk
q = np.array([-3, 4, -5, 6], np.longlong)
assert rk.relu(q, 2).tolist() == [-6, 4, -10, 6]
assert rk.relu(q[::2], 2).tolist() == [-6, -10]
assert rk.relu(np.array([-3, 4]), 2).tolist() == [-6, 4]
assert rk.relu(np.array([-3, 4, -5, 6])[::2], 2).tolist() == [-6, -10]
assert rk.relu_backward(np.ones(2, np.int64), np.array([-3, 4]), 2).tolist() == [2, 1]
m = np.zeros(3, np.dtype("f8", metadata={"unit": "m"}))
rk.relu(m, 0.5)
assert rk.relu(np.zeros(3), 0.5).dtype.metadata is None
assert rk.relu_dash(np.zeros((2, 2))[:, 0], 0.5).dtype.metadata is None
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_longdouble_relu_and_dash_into_x_reads_x_first():
    """``out=(x, dy)``: ``dy`` is computed from ``x`` before ``x`` is overwritten, on the
    path of dtypes without a compiled loop as on the others."""
    values = np.array([-2.0, -1.0, 3.0, 0.0, -0.0, np.nan])
    for dtype in (np.longdouble, np.float64):
        x = values.astype(dtype)
        y, dy = x.copy(), np.empty_like(x)
        expected = oracle.relu(x, -0.5), oracle.relu_dash(x, -0.5)
        rk.relu_and_dash(y, -0.5, out=(y, dy))
        np.testing.assert_array_equal(y, expected[0])
        np.testing.assert_array_equal(dy, expected[1])


@pytest.mark.parametrize("kind", ["masked array", "matrix", "subclass", "pandas Series", "xarray DataArray"])
def test_longdouble_containers_are_refused_by_name(kind):
    """The ufuncs have no longdouble loop (Numba has no longdouble type), so a container
    of longdouble cannot come back as itself: a ``TypeError`` naming ``x`` and its
    dtype, with the way out, rather than an error from inside NumPy."""
    made = _containers(np.array([-1.0, 2.0, 3.0], np.longdouble))
    if kind not in made:
        pytest.skip(f"{kind} is not installed")
    for call in (lambda c: rk.relu(c, 0.5), lambda c: rk.relu_and_dash(c, 0.5),
                 lambda c: rk.relu_backward(c, c, 0.5)):
        with pytest.raises(TypeError, match=r"x .*longdouble|x .*float128|x .*float96"):
            call(made[kind])


def test_no_call_warns_on_containers_of_float16_the_generic_backend_or_the_leak_gradient():
    """The float16 containers' cast back from float32, the array-API formulas on a
    namespace that NumPy computes (array-api-strict), and the leak's gradient: the
    products overflow there too, silently."""
    x16 = np.array([-60000.0, 2.0, np.nan, -np.inf], np.float16)
    x32 = np.array([3e38, -3e38, 1.0, -1.0], np.float32)
    containers = _containers(x16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for container in containers.values():
            assert np.isneginf(np.asarray(rk.relu(container, 3.0)).ravel()[0])
            rk.relu_backward(container, container, 3.0)
        assert np.isneginf(rk.relu_leak_gradient(np.array([3e38], np.float32), np.array([-3e38], np.float32), 0.5))
        rk.relu_leak_gradient(x32, x32, np.full(4, 0.5, np.float32))
        xps = pytest.importorskip("array_api_strict")
        strict = xps.asarray(x32)
        assert np.isneginf(np.asarray(rk.relu(strict, 10.0))[1])
        rk.relu_backward(xps.asarray(np.full(4, np.inf, np.float32)), strict, 0.0)
        rk.relu_leak_gradient(strict, strict, 10.0)


def test_in_place_calls_through_separate_views_of_x_take_the_rows_loops(monkeypatch):
    """``out`` a separate view of ``x``'s memory (``x[...]``, or a torch tensor given as
    ``out=t``, which the backend sees as two NumPy views) is ``x`` itself: the rows
    loops, not the ufuncs' single-threaded path for outputs that overlap ``x``."""
    from relukernels._backends import numpy as numpy_backend

    by_ufuncs = []
    real = numpy_backend.call_ufuncs
    monkeypatch.setattr(numpy_backend, "call_ufuncs", lambda *args: by_ufuncs.append(args[0].name) or real(*args))
    values = np.random.default_rng(4).standard_normal(1 << 18).astype(np.float32)
    expected = oracle.relu(values, 0.1), oracle.relu_dash(values, 0.1)
    x = values.copy()
    rk.relu(x, 0.1, out=x[...])
    np.testing.assert_array_equal(x, expected[0])
    x = values.copy()
    rk.relu_backward(x[...], values, 0.1, out=x)
    np.testing.assert_array_equal(x, expected[1] * values)
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(values.copy())
    rk.relu(t, 0.1, out=t)
    np.testing.assert_array_equal(t.numpy(), expected[0])
    t = torch.from_numpy(values.copy())
    rk.relu_dash(t, 0.1, out=t)
    np.testing.assert_array_equal(t.numpy(), expected[1])
    assert by_ufuncs == []
