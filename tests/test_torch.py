"""PyTorch tensors: values, dtypes, layouts, out=, autograd."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
import relukernels as rk
from strategies import leaks_for, strided_arrays

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # leak * x beyond the dtype

# torch.from_numpy takes positive strides only; every other layout is drawn.
TORCH_DTYPES = [np.dtype(c) for c in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1")]


@given(st.data())
def test_cpu_tensors_match_the_oracle(data):
    x_np = data.draw(strided_arrays(dtypes=TORCH_DTYPES, steps=(1, 2, 3)))
    leak = data.draw(leaks_for(x_np.dtype).filter(lambda v: x_np.dtype.kind == "f" or isinstance(v, int)))
    x = torch.from_numpy(x_np)
    for function, formula in ((rk.relu, oracle.relu), (rk.relu_dash, oracle.relu_dash)):
        result = function(x, leak)
        assert isinstance(result, torch.Tensor) and result.dtype == x.dtype and result.shape == x.shape
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(result.numpy(), formula(x_np, leak), strict=True)
    y, dy = rk.relu_and_dash(x, leak)
    np.testing.assert_array_equal(y.numpy(), rk.relu(x, leak).numpy())
    np.testing.assert_array_equal(dy.numpy(), rk.relu_dash(x, leak).numpy())


def test_integer_tensors_promote_as_torch_does():
    """An int leak keeps the dtype; a float leak, whatever its value, gives what
    PyTorch gives for ``leak * x``: its default float (not NumPy's float64)."""
    x = torch.tensor([-3, 0, 4], dtype=torch.int16)
    assert rk.relu(x, 2).dtype == rk.relu(x).dtype == torch.int16
    for leak, expected in ((0.5, [-1.5, 0, 4]), (2.0, [-6, 0, 4]), (0.0, [0, 0, 4])):
        result = rk.relu(x, leak)
        assert result.dtype == (leak * x).dtype == torch.get_default_dtype()
        np.testing.assert_array_equal(result.numpy(), expected)
        assert rk.relu_dash(x, leak).dtype == torch.get_default_dtype()


@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=50), st.floats(-10, 10))
def test_bfloat16_is_one_correctly_rounded_product(values, leak):
    x = torch.tensor(values, dtype=torch.bfloat16)
    a = torch.tensor(leak).to(torch.bfloat16)
    product = (a.float() * x.float()).to(torch.bfloat16)  # exact in float32, rounded once
    expected = torch.where(x <= 0, torch.zeros_like(x) if a == 0 else product, x)
    assert torch.equal(rk.relu(x, leak), expected)


def test_out_and_in_place():
    x = torch.linspace(-2, 2, 9)
    out = torch.empty(18)[::2]
    assert rk.relu(x, 0.5, out=out) is out
    assert torch.equal(out, torch.where(x <= 0, 0.5 * x, x))
    assert rk.relu_dash(x, 0.5, out=x) is x
    assert torch.equal(x, torch.where(torch.linspace(-2, 2, 9) <= 0, 0.5, 1.0))


@pytest.mark.parametrize(
    "out, words",
    [
        (np.empty(4, np.float32), ["out", "torch.Tensor", "numpy.ndarray"]),
        (torch.empty(4, dtype=torch.float64), ["out", "dtype"]),
        (torch.empty(5), ["out", "shape"]),
    ],
)
def test_mixed_or_bad_out_is_refused(out, words):
    x = torch.tensor([-2.0, -0.5, 0.0, 1.5])
    with pytest.raises((TypeError, ValueError)) as raised:
        rk.relu(x, out=out)
    assert all(word in str(raised.value) for word in words)


def test_autograd_gradient_is_relu_dash():
    rng = np.random.default_rng(5)
    for leak in (0.0, 0.1, -0.3):
        x = torch.tensor(rng.standard_normal(100).astype(np.float32), requires_grad=True)
        rk.relu(x, leak).sum().backward()
        assert torch.equal(x.grad, rk.relu_dash(x.detach(), leak))


def test_gradcheck_in_float64_away_from_zero():
    x = torch.tensor(np.r_[np.linspace(-3, -0.1, 20), np.linspace(0.1, 3, 20)], requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: rk.relu(v, 0.2), (x,))


def test_relu_and_dash_keeps_the_graph_of_y_only():
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    y, dy = rk.relu_and_dash(x, 0.1)
    assert y.requires_grad and not dy.requires_grad
    (y * 3).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.3, 3.0]))


def test_out_with_autograd_is_refused():
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="requires grad"):
        rk.relu(x, out=torch.empty(2))
    with torch.no_grad():
        out = torch.empty(2)
        assert rk.relu(x, out=out) is out


@pytest.mark.parametrize(
    "dtype, leak",
    [(torch.float32, 0.5), (torch.bfloat16, 0.5), (torch.int32, 0.5)],
    ids=["kernels", "formula-bfloat16", "formula-int-promoted"],
)
def test_out_that_requires_grad_is_refused_on_every_path(dtype, leak):
    x = torch.tensor([-2, 3], dtype=dtype)
    result_dtype = rk.relu(x, leak).dtype
    out = torch.zeros(2, dtype=result_dtype, requires_grad=True)
    with pytest.raises(TypeError, match="out requires grad"):
        rk.relu(x, leak, out=out)
    assert not out.detach().any()


def test_parameter_x_takes_a_plain_tensor_out_under_no_grad():
    x = torch.nn.Parameter(torch.tensor([-2.0, 3.0]))
    out = torch.empty(2)
    with torch.no_grad():
        assert rk.relu(x, 0.5, out=out) is out
    assert torch.equal(out, torch.tensor([-1.0, 3.0]))


def _leaky(x, slope=0.1):
    return torch.nn.functional.leaky_relu(x, slope)


@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend):
    """The custom ops trace without graph breaks; values and gradients (x's and a leak
    tensor's) as PyTorch's own formula gives."""
    x = torch.randn(6, 4, requires_grad=True)
    leak = torch.tensor([0.3]).requires_grad_()
    rk.relu(x.detach(), 0.1)  # a first eager call registers the custom ops
    torch._dynamo.reset()
    compiled = torch.compile(lambda v, a: rk.relu(v, a) * 2 + rk.relu_dash(v, 0.1), fullgraph=True, backend=backend)
    result = compiled(x, leak)
    expected = torch.where(x > 0, x, leak * x) * 2 + torch.where(x <= 0, 0.1, 1.0)
    torch.testing.assert_close(result, expected)
    ours = torch.autograd.grad(result.sum(), (x, leak))
    theirs = torch.autograd.grad(expected.sum(), (x, leak))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_torch_func_transforms_match_leaky_relu():
    x = torch.randn(5)
    ones = torch.ones(5)
    for transform in (torch.func.jacrev, torch.func.jacfwd):
        torch.testing.assert_close(transform(lambda v: rk.relu(v, 0.1))(x), transform(_leaky)(x))
    torch.testing.assert_close(
        torch.func.grad(lambda v: rk.relu(v, 0.1).sum())(x), torch.func.grad(lambda v: _leaky(v).sum())(x)
    )
    ours, theirs = torch.func.jvp(lambda v: rk.relu(v, 0.1), (x,), (ones,)), torch.func.jvp(_leaky, (x,), (ones,))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    batch = torch.randn(3, 4)
    torch.testing.assert_close(torch.func.vmap(lambda v: rk.relu(v, 0.1))(batch), _leaky(batch))
    leaks = torch.tensor([0.1, 0.2, 0.3])
    expected = torch.where(batch > 0, batch, leaks[:, None] * batch)
    torch.testing.assert_close(torch.func.vmap(lambda v, a: rk.relu(v, a))(batch, leaks), expected)


def test_forward_ad_and_double_backward():
    import torch.autograd.forward_ad as forward_ad

    x = torch.randn(6)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, torch.ones(6))
        tangent = forward_ad.unpack_dual(rk.relu(dual, 0.1)).tangent
        expected = forward_ad.unpack_dual(_leaky(dual)).tangent
    torch.testing.assert_close(tangent, expected)
    x64 = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: rk.relu(v, 0.1), (x64,), check_fwd_over_rev=True)
    leak = torch.rand(3, 1, dtype=torch.float64, requires_grad=True)
    x3 = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, a: rk.relu(v, a), (x3, leak), check_forward_ad=True)


def test_out_bumps_the_version_counter():
    """A write into out= is seen by autograd, as an in-place op's would be."""
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = torch.tensor([-1.0, 1.0, -1.0])
    y = w * x  # saves x for backward
    with torch.no_grad():
        version = x._version
        rk.relu(x, 0.5, out=x)
    assert x._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_meta_tensors_take_torch_operations():
    x = torch.empty(3, 4, device="meta")
    result = rk.relu(x, 0.1)
    assert result.device.type == "meta" and result.shape == (3, 4)


def test_leak_derivatives_in_every_mode():
    """A 0-d or dual leak keeps its tangent; a leak swept by vmap; relu_dash's leak tangent."""
    import torch.autograd.forward_ad as forward_ad

    x, a = torch.randn(6), torch.tensor(0.2)

    def reference(v, w):
        return torch.where(v > 0, v, w * v)

    torch.testing.assert_close(
        torch.func.jacfwd(rk.relu, argnums=1)(x, a), torch.func.jacfwd(reference, argnums=1)(x, a)
    )
    with forward_ad.dual_level():
        tangent = forward_ad.unpack_dual(rk.relu(x, forward_ad.make_dual(a, torch.tensor(1.0)))).tangent
        torch.testing.assert_close(tangent, torch.where(x <= 0, x, 0))
        w, x3 = torch.rand(3, 1), torch.randn(2, 3, 4)
        tangent = forward_ad.unpack_dual(rk.relu_dash(x3, forward_ad.make_dual(w, torch.ones(3, 1)))).tangent
        torch.testing.assert_close(tangent, torch.where(x3 <= 0, 1.0, 0.0))
    leaks = torch.tensor([0.0, 0.1, 0.2])
    torch.testing.assert_close(
        torch.func.vmap(rk.relu, in_dims=(None, 0))(x, leaks), torch.func.vmap(reference, in_dims=(None, 0))(x, leaks)
    )
    x45, w35 = torch.randn(4, 3, 5), torch.rand(3, 5)
    expected = torch.func.vmap(lambda v, w: torch.where(v <= 0, w, 1.0), in_dims=(1, 0))(x45, w35)
    torch.testing.assert_close(torch.func.vmap(rk.relu_dash, in_dims=(1, 0))(x45, w35), expected)


def test_compiled_with_changing_leaks_and_meta_leaks():
    x = torch.randn(6)
    rk.relu(x, 0.1)
    torch._dynamo.reset()
    compiled = torch.compile(lambda v, a: rk.relu(v, a), fullgraph=True, backend="aot_eager")
    for leak in (0.1, 0.2, torch.tensor(0.01), 3):
        torch.testing.assert_close(compiled(x, leak), torch.where(x > 0, x, torch.as_tensor(leak, dtype=x.dtype) * x))
    integers = torch.tensor([-1], dtype=torch.int64)
    compiled = torch.compile(lambda v: rk.relu(v, 2**53 + 1), fullgraph=True, backend="aot_eager")
    assert compiled(integers).item() == -(2**53 + 1)
    meta = rk.relu(torch.randn(3, 4, device="meta"), torch.rand(3, 1, device="meta"))
    assert meta.device.type == "meta" and meta.shape == (3, 4)


@pytest.mark.parametrize("imports", [
    "import relukernels as rk\nimport torch",
    "import torch\nimport relukernels as rk",
    # an "is torch installed?" check before the import, as many libraries make
    "import importlib, importlib.util, relukernels as rk\n"
    "importlib.reload(importlib.import_module('relukernels._dispatch'))\n"
    "assert importlib.util.find_spec('torch')\nimport torch",
], ids=["relukernels first", "torch first", "a lookup and a reload first"])
def test_a_compiled_first_call_works_whichever_is_imported_first(imports):
    """No eager call first: the ops are registered when both modules are imported."""
    code = imports + """
x = torch.linspace(-2, 2, 9, requires_grad=True)
compiled = torch.compile(lambda v: rk.relu(v, 0.1) * 2, fullgraph=True, backend="aot_eager")
compiled(x).sum().backward()
want = torch.where(x > 0, x, 0.1 * x).detach() * 2
assert torch.equal(compiled(x).detach(), want), compiled(x)
assert torch.equal(x.grad, torch.where(x > 0, 2.0, 0.2)), x.grad
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr[-2000:]


def test_torch_hidden_or_broken_does_not_stop_import_relukernels():
    """``sys.modules["torch"] = None`` is how tests hide torch; with a torch whose
    registration fails, NumPy users still import relukernels (a warning says why)."""
    code = """
import sys
import numpy as np
sys.modules["torch"] = None
import relukernels as rk
assert rk.relu(np.array([-1.0]), 0.5)[0] == -0.5
"""
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    code = """
import types, sys, warnings
sys.modules["torch"] = types.ModuleType("torch")  # a torch without Tensor or torch.library
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import relukernels
print([str(w.message)[:40] for w in caught])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "could not prepare for torch" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("layout", ["sparse_coo", "sparse_csr"])
def test_sparse_tensors_are_refused_by_name(layout):
    torch = pytest.importorskip("torch")
    dense = torch.tensor([[-1.0, 2.0], [0.0, -3.0]])
    sparse = dense.to_sparse() if layout == "sparse_coo" else dense.to_sparse_csr()
    for call in (lambda: rk.relu(sparse, 0.1), lambda: rk.relu(sparse), lambda: rk.relu_dash(sparse, 0.1),
                 lambda: rk.relu_backward(dense, sparse, 0.1), lambda: rk.relu_backward(sparse, dense, 0.1)):
        with pytest.raises(TypeError, match=r"^(x|grad) is a torch\.sparse"):
            call()


def test_second_derivatives_through_a_trainable_leak():
    """x's gradient depends on the leak (``grad * leak`` where ``x <= 0``): with
    create_graph, the graph goes through the leak, as gradgradcheck checks; without,
    x's gradient runs on the kernels and equals the one with the graph."""
    torch = pytest.importorskip("torch")
    x = torch.tensor([[-1.5, 0.7, -0.2], [2.0, -3.0, 0.4]], dtype=torch.float64, requires_grad=True)
    leak = torch.tensor([[0.3], [0.1]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v, a: rk.relu(v, a), (x, leak))
    grad = torch.randn(2, 3, dtype=torch.float64)
    with_graph = torch.autograd.grad(rk.relu(x, leak), (x, leak), grad, create_graph=True)
    without = torch.autograd.grad(rk.relu(x, leak), (x, leak), grad)
    assert all(torch.equal(a.detach(), b) for a, b in zip(with_graph, without, strict=True))
    assert with_graph[0].requires_grad and not without[0].requires_grad
