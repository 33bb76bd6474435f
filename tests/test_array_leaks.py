"""Array leaks (a slope per element, as in PReLU) on every backend, against the oracle
``np.where(x <= 0, leak.astype(dtype) * x, x)``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import oracle
import relukernels as rk
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
    # PyTorch promotes an integer x with a floating leak its own way (next test).
    assume(x.dtype.kind == "f" or leak.dtype.kind == "i")
    _check(rk.relu_and_dash(torch.from_numpy(x), torch.from_numpy(leak)), x, leak, lambda t: t.numpy())


def test_torch_integer_x_with_a_floating_leak_follows_torch_promotion():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[-3, 4]], dtype=torch.int32)
    leak = torch.tensor([[0.5]], dtype=torch.float32)
    result = rk.relu(x, leak)
    assert result.dtype == torch.where(x <= 0, leak * x, x).dtype == torch.float32
    assert result.tolist() == [[-1.5, 4.0]]


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


def test_torch_prelu_gradients():
    """A leak tensor that requires grad gets PReLU's gradient: as torch.where(x > 0, x,
    w * x) and F.prelu give; x's gradient is unchanged by it."""
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=generator).requires_grad_()
    w = torch.tensor([0.0, 0.1, -0.5]).reshape(3, 1, 1).requires_grad_()
    g = torch.randn(4, 3, 5, 5, generator=generator)
    rk.relu(x, w).backward(g)
    ours = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    torch.where(x > 0, x, w * x).backward(g)
    assert torch.equal(ours[0], x.grad)
    torch.testing.assert_close(ours[1], w.grad)
    x.grad = None
    w_prelu = w.detach().reshape(3).requires_grad_()
    torch.nn.functional.prelu(x, w_prelu).backward(g)
    assert torch.equal(ours[0], x.grad)
    torch.testing.assert_close(ours[1].reshape(3), w_prelu.grad)


def test_torch_leak_gradients_gradcheck_and_without_x_grad():
    torch = pytest.importorskip("torch")
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: rk.relu(a, b), (x, w))
    assert torch.autograd.gradcheck(lambda b: rk.relu_dash(x.detach(), b), (w,))
    plain = torch.randn(5, 2)
    leak = torch.zeros(2, requires_grad=True)  # a leak that starts at 0 still learns
    rk.relu(plain, leak).sum().backward()
    torch.testing.assert_close(leak.grad, torch.where(plain <= 0, plain, 0).sum(0))


def test_jax_leak_gradients_jit_and_vmap():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.array([[-1.0, 2.0], [-3.0, 0.5]])

    def reference(leak):
        return jnp.where(x > 0, x, leak * x).sum()

    def ours(leak):
        return rk.relu(x, leak).sum()

    assert jax.grad(ours)(0.1) == jax.grad(reference)(0.1) == -4.0
    zeros = jnp.zeros((2, 1))  # a leak of 0 still has a gradient
    np.testing.assert_array_equal(jax.grad(ours)(zeros), jax.grad(reference)(zeros))
    np.testing.assert_array_equal(jax.jit(ours)(jnp.float32(0.1)), reference(jnp.float32(0.1)))
    np.testing.assert_array_equal(jax.jit(jax.grad(ours))(jnp.float32(0.0)), -4.0)
    rows = jax.vmap(lambda row, leak: rk.relu(row, leak))(x, jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(rows, [[-0.1, 2.0], [-0.6, 0.5]])


def test_a_torch_prelu_layer_trains_like_nn_prelu():
    """A small convolutional net, SGD for a few steps: the same losses and weights."""
    torch = pytest.importorskip("torch")

    class Prelu(torch.nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.full((channels, 1, 1), 0.25))

        def forward(self, x):
            return rk.relu(x, self.weight)

    def train(activation):
        torch.manual_seed(1)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), activation, torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(2)
        x, target = torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 3, (8,), generator=generator)
        losses = []
        for _ in range(5):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses, model[1].weight.detach().reshape(-1)

    ours, theirs = train(Prelu(4)), train(torch.nn.PReLU(4))
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
    torch.testing.assert_close(ours[1], theirs[1])


def test_torch_zero_dimensional_leak_that_requires_grad_keeps_its_gradient():
    torch = pytest.importorskip("torch")
    leak = torch.tensor(0.1, requires_grad=True)
    x = torch.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    y = rk.relu(x, leak)
    assert y.requires_grad
    y.sum().backward()
    assert leak.grad.item() == -4.0
    torch.testing.assert_close(x.grad, torch.tensor([0.1, 1.0, 0.1]))
    with pytest.raises(TypeError, match="leak"):
        rk.relu(x, np.ones(3))  # a NumPy leak for a tensor, x requiring grad
