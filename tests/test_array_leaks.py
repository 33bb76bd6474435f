"""Array leaks (a slope per element, as in PReLU) on every backend, against the oracle
``np.where(x <= 0, leak.astype(dtype) * x, x)``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import oracle
import relukernels as rk
from relukernels._backends import numpy as numpy_backend
from strategies import FLOAT_DTYPES, INTEGER_DTYPES, broadcast_leaks, strided_arrays

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered")


@st.composite
def cases(draw, dtypes=FLOAT_DTYPES + INTEGER_DTYPES, **kwargs):
    x = draw(strided_arrays(dtypes=dtypes, **kwargs))
    return x, draw(broadcast_leaks(x.shape, x.dtype))


def _check(results, x, leak, to_numpy=np.asarray):
    y, dy = results
    np.testing.assert_array_equal(to_numpy(y), oracle.relu(x, leak), strict=True)
    np.testing.assert_array_equal(to_numpy(dy), oracle.relu_dash(x, leak), strict=True)


@pytest.fixture(params=["one thread", "three threads, tiny chunks, rows of any length"])
def threading(request, monkeypatch):
    """The ufunc and row-by-row paths in one thread; rows of any length in threads."""
    if request.param != "one thread":
        monkeypatch.setattr(numpy_backend, "num_threads", lambda: 3)
        monkeypatch.setattr(numpy_backend, "PARALLEL_MIN_SIZE", 1)
        monkeypatch.setattr(numpy_backend, "_MIN_ROW", 1)


@given(cases())
def test_numpy(threading, case):
    x, leak = case
    before = x.copy()
    _check((rk.relu(x, leak), rk.relu_dash(x, leak)), x, leak)
    _check(rk.relu_and_dash(x, leak), x, leak)
    np.testing.assert_array_equal(x, before, strict=True)
    y = np.empty(x.shape, oracle.result_dtype(x, leak))
    assert rk.relu(x, leak, out=y) is y
    np.testing.assert_array_equal(y, oracle.relu(x, leak), strict=True)


def test_numpy_prelu_shapes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    leak = rng.uniform(0, 0.3, (3, 1, 1))
    _check(rk.relu_and_dash(x, leak), x, leak)
    assert rk.relu(x, leak).dtype == np.float32  # the leak is cast to x's dtype
    _check(rk.relu_and_dash(x, leak[:, 0, 0][:, None, None].tolist()), x, leak)  # lists are arrays


def test_torch_cpu_against_the_oracle_and_prelu():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x_np = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    leak_np = rng.uniform(-0.5, 0.5, (3, 1, 1)).astype(np.float32)
    x, leak = torch.from_numpy(x_np), torch.from_numpy(leak_np)
    _check((rk.relu(x, leak), rk.relu_dash(x, leak)), x_np, leak_np, lambda t: t.numpy())
    _check(rk.relu_and_dash(x, leak), x_np, leak_np, lambda t: t.numpy())
    prelu = torch.nn.functional.prelu(x, leak.reshape(3))
    np.testing.assert_array_equal(rk.relu(x, leak).numpy(), prelu.numpy(), strict=True)


@given(cases(dtypes=[np.dtype(c) for c in ("f2", "f4", "f8", "i4")], steps=(1, 2)))
def test_torch_cpu(case):
    torch = pytest.importorskip("torch")
    x, leak = case
    # A 0-d leak is a scalar, which PyTorch promotes with an integer x to its default float.
    assume(leak.ndim or x.dtype.kind == "f" or leak.dtype.kind == "i")
    _check(rk.relu_and_dash(torch.from_numpy(x), torch.from_numpy(leak)), x, leak, lambda t: t.numpy())


def test_torch_formula_path_bfloat16():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[-2.0, 3.0], [-4.0, 0.0]], dtype=torch.bfloat16)
    leak = torch.tensor([[0.5], [0.25]])
    y, dy = rk.relu_and_dash(x, leak)
    assert y.dtype == dy.dtype == torch.bfloat16
    assert y.tolist() == [[-1.0, 3.0], [-1.0, 0.0]] and dy.tolist() == [[0.5, 1.0], [0.25, 0.25]]


def test_torch_leak_of_another_library_or_device_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="leak"):
        rk.relu(torch.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="leak"):
        rk.relu(torch.ones(3), torch.ones(3, device="meta"))


def test_jax():
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(5)
    x_np = rng.standard_normal((2, 3, 4)).astype(np.float32)
    leak_np = rng.uniform(-0.5, 0.5, (3, 1)).astype(np.float32)
    x, leak = jax.numpy.asarray(x_np), jax.numpy.asarray(leak_np)
    _check((rk.relu(x, leak), rk.relu_dash(x, leak)), x_np, leak_np)
    _check(jax.jit(lambda v, a: rk.relu_and_dash(v, a))(x, leak), x_np, leak_np)
    with pytest.raises(ValueError, match="leak"):
        rk.relu(x, jax.numpy.full((3, 1), jax.numpy.nan))


@given(cases(dtypes=[np.dtype(c) for c in ("f4", "f8", "i2")], max_side=5), st.booleans())
def test_dask(case, leak_is_dask):
    da = pytest.importorskip("dask.array")
    x_np, leak_np = case
    x = da.from_array(x_np, chunks=2)
    leak = da.from_array(leak_np, chunks=3) if leak_is_dask else leak_np
    y, dy = rk.relu_and_dash(x, leak)
    _check(da.compute(y, dy, scheduler="sync"), x_np, leak_np)
    np.testing.assert_array_equal(rk.relu(x, leak).compute(scheduler="sync"), oracle.relu(x_np, leak_np), strict=True)


def test_dask_leak_that_changes_the_shape_is_refused():
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="leak"):
        rk.relu(da.ones((4, 3), chunks=2), np.ones((2, 4, 3)))


def test_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    x_np = np.linspace(-2, 2, 12).reshape(3, 4)
    leak_np = np.array([[0.5], [0.0], [-1.0]])
    x, leak = xp.asarray(x_np), xp.asarray(leak_np)
    _check(rk.relu_and_dash(x, leak), x_np, leak_np, lambda a: np.asarray(a.to_device(xp.Device("CPU_DEVICE"))))
