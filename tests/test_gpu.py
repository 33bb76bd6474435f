"""CuPy arrays through the whole CUDA backend, on a real GPU; skipped without one."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import oracle
import relukernels as rk
from strategies import based_arrays, broadcast_leaks, leaks_for

pytestmark = pytest.mark.gpu

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("no GPU: the CUDA simulator is on", allow_module_level=True)
cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
try:
    DEVICE_COUNT = cupy.cuda.runtime.getDeviceCount()
except cupy.cuda.runtime.CUDARuntimeError as error:  # pragma: no cover - depends on the machine
    pytest.skip(f"no usable GPU: {error}", allow_module_level=True)

DTYPES = [np.dtype(c) for c in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u4", "u8")]
FUNCTIONS = {"relu": (rk.relu, oracle.relu), "relu_dash": (rk.relu_dash, oracle.relu_dash)}


@settings(max_examples=200)
@given(st.data())
def test_cupy_matches_oracle(data):
    """Every dtype and layout, the CuPy array seen through the same layout as NumPy's."""
    base, layout = data.draw(based_arrays(dtypes=DTYPES))
    x, device_x = layout.view(np, base), layout.view(cupy, cupy.asarray(base))
    leak = data.draw(leaks_for(x.dtype))
    for name, (function, formula) in FUNCTIONS.items():
        with np.errstate(all="ignore"):
            expected = formula(x, leak)
        result = function(device_x, leak)
        assert type(result) is cupy.ndarray, name
        assert result.dtype == expected.dtype and result.shape == expected.shape
        assert result.device == device_x.device
        np.testing.assert_array_equal(result.get(), expected, strict=True)
    y, dy = rk.relu_and_dash(device_x, leak)
    np.testing.assert_array_equal(y.get(), rk.relu(x, leak), strict=True)
    np.testing.assert_array_equal(dy.get(), rk.relu_dash(x, leak), strict=True)
    np.testing.assert_array_equal(device_x.get(), x, strict=True)


def test_strided_views_are_not_copied():
    base = cupy.arange(-50, 50, dtype=cupy.float32).reshape(10, 10)
    view = base[::-2, 1::3].T
    assert rk.relu(view, 0.5, out=view) is view
    expected = oracle.relu(np.arange(-50, 50, dtype=np.float32).reshape(10, 10)[::-2, 1::3].T, 0.5)
    np.testing.assert_array_equal(view.get(), expected)


def test_every_float16_value():
    bits = np.arange(1 << 16, dtype=np.uint16)
    x = bits.view(np.float16)
    for leak in (0.0, 0.1, -1.5, 3.0):
        np.testing.assert_array_equal(rk.relu(cupy.asarray(x), leak).get(), rk.relu(x, leak), strict=True)


def test_float32_bits_match_the_cpu_on_random_data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(1 << 22).astype(np.float32) * np.float32(1e3)
    for leak in (0.0, 0.01, 0.1, 0.2, -0.3):
        gpu = rk.relu(cupy.asarray(x), leak).get()
        assert np.array_equal(gpu.view(np.uint32), rk.relu(x, leak).view(np.uint32))


def test_out_and_in_place():
    x = cupy.linspace(-2, 2, 101, dtype=cupy.float32)
    out = cupy.empty_like(x)
    assert rk.relu(x, 0.5, out=out) is out
    dy = cupy.empty_like(x)
    y, result_dy = rk.relu_and_dash(x, 0.5, out=(x, dy))
    assert y is x and result_dy is dy
    np.testing.assert_array_equal(x.get(), out.get())


@pytest.mark.parametrize(
    "make_out, error, words",
    [
        (lambda x: np.empty(x.shape, x.dtype), TypeError, ["out", "cupy", "numpy.ndarray"]),
        (lambda x: cupy.empty(x.shape, cupy.float64), TypeError, ["out", "dtype"]),
        (lambda x: cupy.empty(x.size + 1, x.dtype), ValueError, ["out", "shape"]),
        (lambda x: x[::-1], ValueError, ["out", "overlaps"]),
    ],
)
def test_bad_out_writes_nothing(make_out, error, words):
    x = cupy.linspace(-2, 2, 16, dtype=cupy.float32)
    before = x.get()
    out = make_out(x)
    with pytest.raises(error) as raised:
        rk.relu(x, 0.5, out=out)
    assert all(word in str(raised.value) for word in words), str(raised.value)
    np.testing.assert_array_equal(x.get(), before)


def test_launches_on_the_callers_non_blocking_stream():
    """A slow producer and relu on one non-blocking stream, no synchronisation between:
    relu sees the producer's result only if it runs on that same stream."""
    n = 1 << 24
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        x = cupy.full(n, -1.0, dtype=cupy.float32)
        stream.synchronize()
        for _ in range(20):
            x = cupy.sin(x) * 0 + cupy.float32(2.0)  # slow, and ends with every x == 2
        y = rk.relu(x, 0.5)
        result = y.get(stream=stream)
    assert (result == 2.0).all()


def test_numba_device_arrays_come_back_as_numba_device_arrays():
    from numba import cuda

    x = cuda.to_device(np.array([-2.0, 3.0], np.float32))
    y = rk.relu(x, 0.5)
    assert type(y) is type(x)
    np.testing.assert_array_equal(y.copy_to_host(), [-1.0, 3.0])


@pytest.mark.skipif(DEVICE_COUNT < 2, reason="needs two GPUs")
def test_output_on_the_inputs_device():  # pragma: no cover - needs two GPUs
    with cupy.cuda.Device(1):
        x = cupy.asarray([-2.0, 3.0])
    y = rk.relu(x, 0.5)
    assert y.device.id == 1
    np.testing.assert_array_equal(y.get(), [-1.0, 3.0])


@pytest.mark.slow
def test_more_than_2_to_the_31_elements():
    n = (1 << 31) + 4099
    free, _ = cupy.cuda.runtime.memGetInfo()
    if free < 3 * n:
        pytest.skip("not enough GPU memory")
    x = cupy.full(n, -3, dtype=cupy.int8)
    x[-5:] = cupy.asarray([1, -1, 2, -2, 7], dtype=cupy.int8)
    rk.relu(x, 2, out=x)
    assert int((x[: n - 5] == -6).sum()) == n - 5
    np.testing.assert_array_equal(x[-5:].get(), [1, -2, 2, -4, 7])


def test_torch_cuda_tensors_on_the_kernels_and_the_current_stream():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    host = rng.standard_normal((64, 48)).astype(np.float32)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x = torch.from_numpy(host).cuda()[::2, 1::3]
        y, dy = rk.relu_and_dash(x, 0.2)
        result = (y.cpu(), dy.cpu())
    assert y.is_cuda and y.dtype == torch.float32 and y.shape == x.shape
    np.testing.assert_array_equal(result[0].numpy(), oracle.relu(host[::2, 1::3], 0.2), strict=True)
    np.testing.assert_array_equal(result[1].numpy(), oracle.relu_dash(host[::2, 1::3], 0.2), strict=True)
    out = torch.empty_like(x)
    assert rk.relu(x, 0.2, out=out) is out
    bf16 = torch.tensor([-2.0, 1.0], dtype=torch.bfloat16, device="cuda")
    assert rk.relu(bf16, 0.1).is_cuda


def test_torch_cuda_autograd():
    torch = pytest.importorskip("torch")
    x = torch.tensor([-1.5, 0.0, 2.0], device="cuda", requires_grad=True)
    rk.relu(x, 0.1).sum().backward()
    assert torch.equal(x.grad.cpu(), torch.tensor([0.1, 0.1, 1.0]))


def test_torch_cuda_out_checks_match_the_cpu():
    torch = pytest.importorskip("torch")
    x = torch.nn.Parameter(torch.tensor([-2.0, 3.0], device="cuda"))
    out = torch.empty(2, device="cuda")
    with torch.no_grad():
        assert rk.relu(x, 0.5, out=out) is out
    assert torch.equal(out.cpu(), torch.tensor([-1.0, 3.0]))
    tracked = torch.zeros(2, device="cuda", requires_grad=True)
    with pytest.raises(TypeError, match="out requires grad"):
        rk.relu(x.detach(), 0.5, out=tracked)


@settings(max_examples=100)
@given(st.data())
def test_cupy_array_leaks_match_oracle(data):
    """A leak per element, of any real dtype, broadcast to x's shape and cast on the GPU."""
    base, layout = data.draw(based_arrays(dtypes=DTYPES))
    x, device_x = layout.view(np, base), layout.view(cupy, cupy.asarray(base))
    leak = data.draw(broadcast_leaks(x.shape, x.dtype))
    y, dy = rk.relu_and_dash(device_x, cupy.asarray(leak))
    np.testing.assert_array_equal(y.get(), oracle.relu(x, leak), strict=True)
    np.testing.assert_array_equal(dy.get(), oracle.relu_dash(x, leak), strict=True)


def test_torch_cuda_prelu_leak():
    torch = pytest.importorskip("torch")
    x = torch.randn(8, 3, 16, 16, device="cuda")
    leak = torch.tensor([0.0, 0.1, -2.0], device="cuda").reshape(3, 1, 1)
    expected = oracle.relu(x.cpu().numpy(), leak.cpu().numpy())
    np.testing.assert_array_equal(rk.relu(x, leak).cpu().numpy(), expected, strict=True)
    with pytest.raises(ValueError, match="leak"):
        rk.relu(x, leak.cpu())


def _drawn_x(data) -> tuple:
    """An array of every dtype and layout, in NumPy and in CuPy (the same view of one base)."""
    base, layout = data.draw(based_arrays(dtypes=DTYPES))
    return layout.view(np, base), layout.view(cupy, cupy.asarray(base))


@settings(max_examples=100)
@given(st.data())
def test_cupy_backward_matches_oracle(data):
    """``relu_backward`` on CuPy arrays of every dtype and layout, grad of x's dtype (the
    kernels) or of another (CuPy's formula), against grad * relu_dash in NumPy."""
    x, device_x = _drawn_x(data)
    grad_dtype = data.draw(st.sampled_from([x.dtype, np.dtype(np.float32), np.dtype(np.int16)]))
    grad = data.draw(hnp.arrays(grad_dtype, x.shape, elements=hnp.from_dtype(grad_dtype)))
    leak = data.draw(leaks_for(x.dtype))
    with np.errstate(all="ignore"):
        expected = grad * oracle.relu_dash(x, leak)
    result = rk.relu_backward(cupy.asarray(grad), device_x, leak)
    assert type(result) is cupy.ndarray and result.device == device_x.device
    np.testing.assert_array_equal(result.get(), expected, strict=True)
    np.testing.assert_array_equal(device_x.get(), x, strict=True)


@settings(max_examples=50)
@given(st.data())
def test_cupy_backward_array_leaks_and_in_place(data):
    """A leak per element (the leaks kernel, or CuPy's formula where the leak's dtype
    widens the result), into grad itself where the result has its dtype."""
    x, device_x = _drawn_x(data)
    leak = data.draw(broadcast_leaks(x.shape, x.dtype))
    grad = data.draw(hnp.arrays(x.dtype, x.shape, elements=hnp.from_dtype(x.dtype)))
    with np.errstate(all="ignore"):
        expected = grad * oracle.relu_dash(x, leak)
    device_grad = cupy.asarray(grad)
    if expected.dtype == grad.dtype:
        assert rk.relu_backward(device_grad, device_x, cupy.asarray(leak), out=device_grad) is device_grad
        np.testing.assert_array_equal(device_grad.get(), expected, strict=True)
    else:
        np.testing.assert_array_equal(rk.relu_backward(device_grad, device_x, cupy.asarray(leak)).get(), expected,
                                      strict=True)


def test_cupy_backward_on_the_callers_non_blocking_stream():
    n = 1 << 24
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        x = cupy.full(n, -1.0, dtype=cupy.float32)
        grad = cupy.ones(n, dtype=cupy.float32)
        stream.synchronize()
        for _ in range(20):
            x = cupy.sin(x) * 0 + cupy.float32(2.0)  # slow, and ends with every x == 2
        result = rk.relu_backward(grad, x, 0.5).get(stream=stream)
    assert (result == 1.0).all()


def test_torch_cuda_backward_matches_the_cpu():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    host_x = rng.standard_normal((64, 48)).astype(np.float32)
    host_grad = rng.standard_normal((64, 48)).astype(np.float32)
    x, grad = torch.from_numpy(host_x).cuda()[::2, 1::3], torch.from_numpy(host_grad).cuda()[::2, 1::3]
    expected = host_grad[::2, 1::3] * oracle.relu_dash(host_x[::2, 1::3], 0.2)
    result = rk.relu_backward(grad, x, 0.2)
    assert result.is_cuda and result.dtype == torch.float32
    np.testing.assert_array_equal(result.cpu().numpy(), expected, strict=True)
    out = torch.empty_like(grad)
    assert rk.relu_backward(grad, x, 0.2, out=out) is out
    np.testing.assert_array_equal(out.cpu().numpy(), expected, strict=True)
    leak = torch.tensor([0.0, 0.1, -2.0] * 5 + [0.5], device="cuda")
    expected = host_grad[::2, 1::3] * oracle.relu_dash(host_x[::2, 1::3], leak.cpu().numpy())
    np.testing.assert_array_equal(rk.relu_backward(grad, x, leak).cpu().numpy(), expected, strict=True)


def test_torch_cuda_autograd_backward_through_the_kernels():
    torch = pytest.importorskip("torch")
    x = torch.tensor([-1.5, 0.0, 2.0, -0.0], device="cuda", requires_grad=True)
    (rk.relu(x, 0.1) * torch.tensor([1.0, 2.0, 3.0, 4.0], device="cuda")).sum().backward()
    assert torch.equal(x.grad.cpu(), torch.tensor([0.1, 0.2, 3.0, 0.4]))


def test_torch_cuda_compile_fullgraph_with_backward_and_prelu_leak():
    """torch.compile on CUDA tensors: relu with a learnable per-channel leak, its
    backward through the custom ops, against eager PyTorch on the same GPU."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5, device="cuda")
    rk.relu(x, 0.1)  # registers the custom ops eagerly
    for backend in ("aot_eager", "inductor"):
        w = torch.tensor([0.0, 0.1, 0.25], device="cuda", requires_grad=True)
        v = x.clone().requires_grad_()
        compiled = torch.compile(
            lambda t, a: rk.relu(t, a[:, None, None]).square().sum(), backend=backend, fullgraph=True
        )
        compiled(v, w).backward()
        w_ref = w.detach().clone().requires_grad_()
        v_ref = x.clone().requires_grad_()
        torch.nn.functional.prelu(v_ref, w_ref).square().sum().backward()
        torch.testing.assert_close(v.grad, v_ref.grad, rtol=0, atol=0)
        torch.testing.assert_close(w.grad, w_ref.grad)
