"""``relu_backward`` (``grad * relu_dash(x, leak)`` in one pass) and
``relu_leak_gradient`` on every backend, against the oracle's ``relu_dash`` times
``grad`` computed here in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import oracle
import relukernels as rk
from relukernels import ufuncs
from relukernels._backends import numpy as numpy_backend
from strategies import FLOAT_DTYPES, INTEGER_DTYPES, REAL_DTYPES, broadcast_leaks, leaks_for, strided_arrays

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered")


def expected(grad, x, leak):
    """The product the contract defines, in NumPy's promotion of the two dtypes."""
    with np.errstate(all="ignore"):
        return np.asarray(grad) * oracle.relu_dash(x, leak)


def assert_same_bits(got, want):
    """Equal values, dtypes and shapes, and for floats equal bits (zero signs included)
    wherever the expected value is not NaN (the contract asks only that NaN propagates)."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_array_equal(got, want, strict=True)
    if want.dtype.kind == "f" and want.dtype != np.longdouble:
        bits = np.dtype(f"u{want.dtype.itemsize}")
        numbers = ~np.isnan(want)
        np.testing.assert_array_equal(got.view(bits)[numbers], want.view(bits)[numbers])


def expected_leak_gradient(grad, x, leak_shape):
    """``grad * x`` where ``x <= 0``, summed to ``leak_shape``, in float64."""
    with np.errstate(all="ignore"):
        per_element = np.where(x <= 0, grad.astype(np.float64) * x.astype(np.float64), 0.0)
    lead = per_element.ndim - len(leak_shape)
    axes = tuple(range(lead)) + tuple(lead + d for d, n in enumerate(leak_shape) if n == 1)
    return per_element.sum(axis=axes, keepdims=True).reshape(leak_shape)


@st.composite
def cases(draw, x_dtypes=REAL_DTYPES, array_leaks=True):
    """``(grad, x, leak)``: ``x`` of any layout, ``grad`` of its shape in any real
    dtype and layout (``x``'s dtype half the time), a number or array leak."""
    x = draw(strided_arrays(dtypes=x_dtypes))
    grad_dtype = draw(st.one_of(st.just(x.dtype), st.sampled_from(FLOAT_DTYPES + INTEGER_DTYPES)))
    grad = draw(hnp.arrays(grad_dtype, x.shape, elements=hnp.from_dtype(grad_dtype)))
    if draw(st.booleans()) and grad.ndim:
        grad = np.asfortranarray(grad)
    use_array = array_leaks and x.dtype != np.longdouble and draw(st.booleans())
    leak = draw(broadcast_leaks(x.shape, x.dtype) if use_array else leaks_for(x.dtype))
    return grad, x, leak


@given(cases())
@example(case=(np.zeros(1, np.float16), np.zeros(1, np.float16), -6e-176))  # a leak that rounds to -0.0
def test_numpy(threading, case):
    grad, x, leak = case
    grad_before, x_before = grad.copy(), x.copy()
    want = expected(grad, x, leak)
    assert_same_bits(rk.relu_backward(grad, x, leak), want)
    np.testing.assert_array_equal(grad, grad_before, strict=True)
    np.testing.assert_array_equal(x, x_before, strict=True)
    out = np.full(x.shape, 7, want.dtype)
    assert rk.relu_backward(grad, x, leak, out=out) is out
    np.testing.assert_array_equal(out, want, strict=True)
    if grad.dtype == want.dtype:  # in place, over grad: what a backward pass does
        assert rk.relu_backward(grad, x, leak, out=grad) is grad
        np.testing.assert_array_equal(grad, want, strict=True)


@given(cases(x_dtypes=FLOAT_DTYPES[1:] + INTEGER_DTYPES))
def test_ufunc(case):
    grad, x, leak = case
    want = expected(grad, x, leak)
    assume(want.dtype != np.float16)  # no float16 loop: relukernels.relu_backward rounds from float32
    a = oracle.cast_leak(x, leak)
    np.testing.assert_array_equal(ufuncs.relu_backward(grad, x, a, dtype=want.dtype), want, strict=True)


def test_in_place_over_x_and_large_arrays_in_threads():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(numpy_backend.PARALLEL_MIN_BYTES // 2 + 5).astype(np.float32)
    x[::7] = 0.0
    grad = rng.standard_normal(x.size).astype(np.float32)
    want = expected(grad, x, 0.1)
    np.testing.assert_array_equal(rk.relu_backward(grad, x, 0.1), want, strict=True)
    assert rk.relu_backward(grad, x, 0.1, out=x) is x
    np.testing.assert_array_equal(x, want, strict=True)


@pytest.mark.parametrize("library", ["numpy", "torch", "dask.array", "jax.numpy"])
def test_grad_broadcasts_to_x(library):
    xp = pytest.importorskip(library)
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    grad = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    got = rk.relu_backward(xp.asarray(grad), xp.asarray(x), 0.5)
    np.testing.assert_array_equal(np.asarray(got), expected(np.broadcast_to(grad, x.shape), x, 0.5), strict=True)
    leak_gradient = rk.relu_leak_gradient(xp.asarray(grad), xp.asarray(x), 0.5)
    np.testing.assert_allclose(np.asarray(leak_gradient), expected_leak_gradient(np.broadcast_to(grad, x.shape), x, ()))


def test_overlapping_out_reads_before_it_writes():
    base = np.linspace(-3, 3, 13)
    grad, x = base[1:].copy(), base[:-1]
    want = expected(grad, x.copy(), 0.5)
    rk.relu_backward(grad, x, 0.5, out=base[1:])  # out is x shifted by one element
    np.testing.assert_array_equal(base[1:], want, strict=True)


def test_errors_name_the_argument_and_write_nothing():
    x, grad, out = np.array([-1.0, 2.0]), np.array([1.0, 1.0]), np.zeros(2)
    with pytest.raises(ValueError, match="grad has shape"):
        rk.relu_backward(np.ones(3), x)
    with pytest.raises(ValueError, match="grad has shape"):
        rk.relu_backward(np.ones((2, 2)), x)  # would change the shape
    with pytest.raises(TypeError, match="grad has dtype bool"):
        rk.relu_backward(np.array([True, False]), x)
    with pytest.raises(TypeError, match="out has dtype float32"):
        rk.relu_backward(grad, x, out=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="leak must be finite"):
        rk.relu_backward(grad, x, float("nan"), out=out)
    np.testing.assert_array_equal(out, 0.0)
    with pytest.raises(ValueError, match="grad has shape"):
        rk.relu_leak_gradient(np.ones(3), x, 0.1)
    for bad_out in ([0.0, 0.0], np.zeros(2).tolist()):
        with pytest.raises(TypeError, match="out must be an array of x's type"):
            rk.relu_backward(grad, x, out=bad_out)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("layout", ["contiguous", "strided", "array leak", "float16"])
def test_no_warning_for_infinite_or_nan_grads(layout):
    x = np.array([-1.0, -2.0, 3.0, np.nan, -0.0, 0.0])
    grad = np.array([np.inf, -np.inf, np.inf, np.nan, np.inf, 1.0])
    leak = 0.0
    if layout == "strided":
        x, grad = np.repeat(x, 2)[::2], np.repeat(grad, 2)[::2]
    elif layout == "array leak":
        leak = np.zeros(6)
    elif layout == "float16":
        x, grad = x.astype(np.float16), grad.astype(np.float16)
    assert_same_bits(rk.relu_backward(grad, x, leak), expected(grad, x, leak))


@given(st.data())
def test_leak_gradient_numpy(data):
    x = data.draw(strided_arrays(dtypes=FLOAT_DTYPES[1:], max_side=5))
    grad = data.draw(hnp.arrays(x.dtype, x.shape, elements=st.floats(-10, 10, width=x.dtype.itemsize * 8)))
    x = np.clip(np.nan_to_num(x), -1e3, 1e3).astype(x.dtype)
    leak = data.draw(st.one_of(st.just(0.1), broadcast_leaks(x.shape, x.dtype)))
    leak_shape = np.shape(leak)
    got = rk.relu_leak_gradient(grad, x, leak)
    assert got.shape == leak_shape and got.dtype == np.result_type(grad, oracle.relu_dash(x, leak))
    tolerance = 1e-3 if x.dtype == np.float32 else 1e-9
    np.testing.assert_allclose(got, expected_leak_gradient(grad, x, leak_shape), rtol=tolerance, atol=tolerance)


def test_containers():
    pd = pytest.importorskip("pandas")
    x = pd.Series([-2.0, 0.0, 3.0, np.nan], index=list("dcba"), name="x")
    grad = pd.Series([1.0, 2.0, 3.0, 4.0], index=list("dcba"), name="x")
    result = rk.relu_backward(grad, x, np.array([0.1, 0.2, 0.3, 0.4]))
    assert isinstance(result, pd.Series) and list(result.index) == list("dcba")
    want = expected(grad.to_numpy(), x.to_numpy(), np.array([0.1, 0.2, 0.3, 0.4]))
    np.testing.assert_array_equal(result.to_numpy(), want)  # the leak by x's positions
    assert rk.relu_leak_gradient(grad, x, 0.25) == -2.0
    with pytest.raises(TypeError, match="grad must be an array of x's type"):
        rk.relu_backward(grad.to_numpy(), x, 0.25)
    for function in (rk.relu_backward, rk.relu_leak_gradient):  # pandas would realign, or extend
        with pytest.raises(ValueError, match="grad and x have different index"):
            function(grad.sort_index(), x, 0.25)


def test_xarray_and_masked_arrays():
    xr = pytest.importorskip("xarray")
    x = xr.DataArray([-2.0, 3.0], dims="t", coords={"t": [0, 1]})
    result = rk.relu_backward(xr.ones_like(x), x, 0.5)
    assert isinstance(result, xr.DataArray) and result.dims == ("t",)
    np.testing.assert_array_equal(result.values, [0.5, 1.0])
    for grad in (xr.DataArray([1.0, 1.0], dims="u"), xr.DataArray([1.0, 1.0], dims="t", coords={"t": [1, 2]})):
        with pytest.raises(ValueError, match="grad and x have different (dims|coordinates)"):
            rk.relu_backward(grad, x, 0.5)
    masked = np.ma.masked_array([-2.0, -5.0], mask=[False, True])
    assert rk.relu_leak_gradient(np.ma.masked_array([1.0, 1.0]), masked, 0.1) == -2.0  # masked elements add nothing


def test_dask_chunks_line_up_and_the_graph_is_blockwise():
    da = pytest.importorskip("dask.array")
    from dask.blockwise import Blockwise

    rng = np.random.default_rng(1)
    x, grad = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
    leak = np.linspace(0, 0.5, 8)
    lazy = rk.relu_backward(da.from_array(grad, chunks=(4, 3)), da.from_array(x, chunks=(3, 4)), leak)
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"), expected(grad, x, leak), strict=True)
    assert isinstance(lazy.__dask_graph__().layers[lazy.name], Blockwise)
    unknown = da.from_array(x, chunks=3)[da.from_array(np.arange(6) > 1, chunks=3)]  # chunk sizes unknown
    np.testing.assert_array_equal(rk.relu_backward(unknown, unknown, 0.5).compute(), expected(x[2:], x[2:], 0.5))
    total = rk.relu_leak_gradient(da.from_array(grad, chunks=3), da.from_array(x, chunks=4), leak[None, :])
    np.testing.assert_allclose(total.compute(), expected_leak_gradient(grad, x, (1, 8)))


def test_jax_values_grad_and_traced_leak():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(2)
    x = rng.standard_normal(64).astype(np.float32)
    x[:4] = [0.0, -0.0, np.inf, np.nan]
    grad = rng.standard_normal(64).astype(np.float32)
    got = rk.relu_backward(jnp.asarray(grad), jnp.asarray(x), 0.1)
    np.testing.assert_array_equal(np.asarray(got), expected(grad, x, 0.1), strict=True)
    traced = jax.jit(lambda g, v, a: rk.relu_backward(g, v, a))(jnp.asarray(grad), jnp.asarray(x), jnp.float32(0.1))
    np.testing.assert_array_equal(np.asarray(traced), expected(grad, x, 0.1), strict=True)
    # relu_backward of relu's own cotangent is jax.grad of relu
    by_jax = jax.grad(lambda v: jnp.vdot(jnp.asarray(grad), rk.relu(v, 0.1)))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(by_jax), np.asarray(got))
    leak = jnp.linspace(0, 1, 64, dtype=jnp.float32)
    by_jax = jax.grad(lambda a: jnp.vdot(jnp.asarray(grad[4:]), rk.relu(jnp.asarray(x[4:]), a[4:])))(leak)
    np.testing.assert_allclose(np.asarray(by_jax)[4:], rk.relu_leak_gradient(grad[4:], x[4:], np.asarray(leak)[4:]))


@given(st.data())
def test_torch_matches_the_oracle(data):
    torch = pytest.importorskip("torch")
    dtypes = [np.dtype(c) for c in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1")]
    x = data.draw(strided_arrays(dtypes=dtypes, steps=(1, 2, 3)))  # torch.from_numpy: positive strides
    leak = data.draw(leaks_for(x.dtype).filter(lambda v: x.dtype.kind == "f" or isinstance(v, int)))
    grad = data.draw(hnp.arrays(x.dtype, x.shape, elements=hnp.from_dtype(x.dtype)))
    got = rk.relu_backward(torch.from_numpy(grad), torch.from_numpy(x), leak)
    assert_same_bits(got.numpy(), expected(grad, x, leak))


def test_torch_values_in_place_and_version_counter():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 17)).astype(np.float32)
    x[0, :3] = [0.0, -0.0, np.nan]
    grad = rng.standard_normal((32, 17)).astype(np.float32)
    got = rk.relu_backward(torch.from_numpy(grad), torch.from_numpy(x), 0.1)
    np.testing.assert_array_equal(got.numpy(), expected(grad, x, 0.1), strict=True)
    g = torch.from_numpy(grad.copy())
    version = g._version
    assert rk.relu_backward(g, torch.from_numpy(x), 0.1, out=g) is g
    assert g._version > version
    np.testing.assert_array_equal(g.numpy(), expected(grad, x, 0.1), strict=True)
    leak = torch.linspace(0, 1, 17, dtype=torch.float64)
    got = rk.relu_backward(torch.from_numpy(grad), torch.from_numpy(x), leak)
    np.testing.assert_array_equal(got.numpy(), expected(grad, x, leak.numpy()), strict=True)
    # float16: no kernel, torch's operations
    half = rk.relu_backward(torch.from_numpy(grad).half(), torch.from_numpy(x).half(), 0.1)
    want = expected(grad.astype(np.float16), x.astype(np.float16), 0.1)
    np.testing.assert_array_equal(half.numpy(), want, strict=True)


def test_torch_leaky_relu_shortcut_keeps_the_contract():
    """Small calls go to PyTorch's leaky_relu; slopes it refuses or gets wrong do not."""
    torch = pytest.importorskip("torch")
    x = np.array([-1.0, 2.0, -np.inf, -0.0, np.nan], np.float32)
    t = torch.from_numpy(x)
    for leak in (0.1, 3.4028235e38, -3.4028235e38, 3.402823567e38, 1e-46, 0.0):
        with np.errstate(all="ignore"):
            assert_same_bits(rk.relu(t, leak).numpy(), oracle.relu(x, leak))
    with pytest.raises(ValueError, match="overflows float32"):
        rk.relu(t, 3.41e38)
    # under autograd the forward takes the same shortcut; the gradient stays the
    # contract's relu_dash, 1 at NaN where leaky_relu's is the slope
    for leak in (0.1, 1e-46, 0.0):
        w = t.clone().requires_grad_()
        y = rk.relu(w, leak)
        with np.errstate(all="ignore"):
            assert_same_bits(y.detach().numpy(), oracle.relu(x, leak))
        upstream = torch.full_like(t, 3.0)
        (got,) = torch.autograd.grad(y, w, upstream)
        assert_same_bits(got.numpy(), expected(upstream.numpy(), x, leak))


def test_torch_gradients_match_leaky_relu_and_prelu():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([0.0, 0.1, 0.25], dtype=torch.float64, requires_grad=True)
    grad = torch.randn(8, 3, 5, 5, dtype=torch.float64)
    gx, gw = torch.autograd.grad(F.prelu(x, weight), (x, weight), grad)
    np.testing.assert_array_equal(
        rk.relu_backward(grad, x.detach(), weight.detach()[:, None, None]).numpy(), gx.numpy()
    )
    np.testing.assert_allclose(rk.relu_leak_gradient(grad, x.detach(), weight.detach()[:, None, None]).numpy()[:, 0, 0],
                               gw.numpy(), rtol=1e-12)
    # differentiable in grad (double backward), as leaky_relu_backward is
    g = grad.clone().requires_grad_()
    (second,) = torch.autograd.grad(rk.relu_backward(g, x.detach(), 0.1).sum(), g)
    np.testing.assert_array_equal(second.numpy(), rk.relu_dash(x.detach(), 0.1).numpy())


def test_torch_compile_traces_relu_backward():
    torch = pytest.importorskip("torch")
    x, grad, leak = torch.randn(100), torch.randn(100), torch.rand(100, dtype=torch.float64)
    rk.relu_backward(grad, x)  # the first tensor, eagerly: relukernels registers its custom ops
    for backend in ("eager", "aot_eager", "inductor"):
        compiled = torch.compile(lambda g, v, a: rk.relu_backward(g, v, a), backend=backend, fullgraph=True)
        for a in (0.1, leak):
            want = expected(grad.numpy(), x.numpy(), a if isinstance(a, float) else a.numpy())
            np.testing.assert_array_equal(compiled(grad, x, a).numpy(), want, strict=True)
    row = torch.randn(4)  # a grad that broadcasts to x's shape, and a 0-d one
    x2 = torch.randn(3, 4)
    compiled = torch.compile(lambda g, v: rk.relu_backward(g, v, 0.1), backend="inductor", fullgraph=True)
    for small in (row, torch.tensor(2.0)):
        want = expected(np.broadcast_to(small.numpy(), x2.shape), x2.numpy(), 0.1)
        np.testing.assert_array_equal(compiled(small, x2).numpy(), want, strict=True)
    dynamic = torch.compile(
        lambda g, v, a: rk.relu_backward(g, v, a), backend="aot_eager", fullgraph=True, dynamic=True
    )
    dynamic(grad, x, 0.1)
    with pytest.raises(Exception, match="leak must be finite"):  # a symbolic leak, checked when the op runs
        dynamic(grad, x, float("nan"))
    # and its gradient with respect to grad and a leak tensor, compiled
    g, w = grad.clone().requires_grad_(), leak.clone().requires_grad_()
    compiled = torch.compile(lambda g, v, a: rk.relu_backward(g, v, a).sum(), backend="aot_eager", fullgraph=True)
    dg, dw = torch.autograd.grad(compiled(g, x, w), (g, w))
    np.testing.assert_array_equal(dg.numpy(), rk.relu_dash(x, leak.float()).numpy())
    np.testing.assert_array_equal(dw.numpy(), torch.where(x <= 0, grad, 0).double().numpy())


def test_numpy_prelu_layer_trains_like_torch():
    """The README's NumPy PReLU layer: only relukernels calls, gradients as torch's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 4, 3, 3))
    slopes = np.full((4, 1, 1), 0.25)
    upstream = rng.standard_normal(x.shape)
    y = rk.relu(x, slopes)
    grad_x = rk.relu_backward(upstream, x, slopes)
    grad_slopes = rk.relu_leak_gradient(upstream, x, slopes)
    layer = torch.nn.PReLU(4, init=0.25).double()
    tx = torch.from_numpy(x).requires_grad_()
    ty = layer(tx)
    ty.backward(torch.from_numpy(upstream))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(grad_x, tx.grad.numpy())
    np.testing.assert_allclose(grad_slopes.reshape(4), layer.weight.grad.numpy(), rtol=1e-12)
