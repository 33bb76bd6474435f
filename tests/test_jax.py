"""JAX arrays: eagerly, under jit and under grad, through JAX's own operations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import oracle
import relukernels as rk
from strategies import leaks_for, strided_arrays

jax = pytest.importorskip("jax")
jnp = jax.numpy

JAX_DTYPES = [np.dtype(c) for c in ("f2", "f4", "i1", "i4", "u1")]  # JAX's default: no 64-bit


def _without_subnormals(x: np.ndarray) -> np.ndarray:
    """XLA on the CPU flushes float32 subnormals, inputs and results, to zero (see below);
    float16 it computes in float32, where its subnormals are normal numbers."""
    if x.dtype != np.float32:
        return x
    return np.where(np.abs(x) < np.finfo(x.dtype).smallest_normal, np.zeros_like(x), x)


def _subnormal_in_float32(leak: float) -> bool:
    return 0 < abs(np.float32(leak)) < np.finfo(np.float32).smallest_normal


@given(st.data())
def test_eager_and_jit_match_the_oracle(data):
    x_np = _without_subnormals(data.draw(strided_arrays(dtypes=JAX_DTYPES, max_dims=3)))
    leak = data.draw(leaks_for(x_np.dtype).filter(lambda v: x_np.dtype.kind == "f" or isinstance(v, int)))
    assume(x_np.dtype != np.float32 or not _subnormal_in_float32(leak))  # the test below
    x = jnp.asarray(x_np)
    for function, formula in ((rk.relu, oracle.relu), (rk.relu_dash, oracle.relu_dash)):
        with np.errstate(all="ignore"):
            expected = _without_subnormals(formula(x_np, leak))
        eager = function(x, leak)
        jitted = jax.jit(lambda v, function=function: function(v, leak))(x)
        for result in (eager, jitted):
            assert isinstance(result, jax.Array) and result.dtype == x.dtype
            np.testing.assert_array_equal(np.asarray(result), expected, strict=True)


def test_integers_promote_as_jax_does():
    """An int leak keeps the integer dtype; a float leak gives JAX's own promotion of
    ``leak * x`` (its default float), whatever the leak's value."""
    x = jnp.asarray([-3, 0, 4], dtype=jnp.int32)
    assert rk.relu(x, 2).dtype == rk.relu(x).dtype == jnp.int32
    for leak, expected in ((2.0, [-6, 0, 4]), (0.5, [-1.5, 0, 4])):
        result = rk.relu(x, leak)
        assert result.dtype == (leak * x).dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(result), expected)


def test_grad_is_relu_dash():
    x = jnp.asarray(np.random.default_rng(2).standard_normal(64), dtype=jnp.float32)
    for leak in (0.0, 0.1):
        gradient = jax.grad(lambda v, leak=leak: rk.relu(v, leak).sum())(x)
        np.testing.assert_array_equal(np.asarray(gradient), np.asarray(rk.relu_dash(x, leak)))
        jitted = jax.jit(jax.grad(lambda v, leak=leak: rk.relu(v, leak).sum()))(x)
        np.testing.assert_array_equal(np.asarray(jitted), np.asarray(gradient))


def test_subnormals_follow_xla_which_flushes_them():
    """A known difference: JAX computes with XLA, which on the CPU treats subnormal
    inputs and results as zero, so relu of a tiny positive float32 is 0 there."""
    tiny = np.float32(1e-40)
    assert float(rk.relu(jnp.asarray([tiny]))[0]) == 0.0
    assert rk.relu(np.array([tiny]))[0] == tiny
    # A subnormal leak counts as zero in leak * x, though relu_dash returns it as it is.
    x = np.array([-1e30, -1.0], np.float32)
    assert rk.relu(x, tiny)[0] == tiny * x[0] < -1e-11  # a normal number in NumPy
    assert not np.asarray(rk.relu(jnp.asarray(x), tiny)).any()
    np.testing.assert_array_equal(np.asarray(rk.relu_dash(jnp.asarray(x), tiny)), [tiny, tiny])


def test_out_is_refused_for_immutable_arrays():
    x = jnp.asarray([-1.0, 2.0])
    with pytest.raises(TypeError, match="out"):
        rk.relu(x, out=x)


def test_gradients_match_leaky_relu_and_stay_finite_at_infinities():
    x = jnp.array([-2.0, -0.5, 0.0, 1.5, jnp.inf, -jnp.inf])
    ours = jax.grad(lambda v: rk.relu(v, 0.1).sum())(x)
    theirs = jax.grad(lambda v: jax.nn.leaky_relu(v, 0.1).sum())(x)
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    np.testing.assert_array_equal(ours[[0, 1, 3]], theirs[[0, 1, 3]])
    # at 0: the seed's relu_dash (JAX's gives 1)
    np.testing.assert_array_equal(ours[[2, 4, 5]], np.array([0.1, 1.0, 0.1], np.float32))
    leak_gradient = jax.grad(lambda a: rk.relu(x[:5], a).sum())(0.5)  # +inf contributes 0, not NaN
    assert leak_gradient == -2.5
    jacobian = jax.jacfwd(lambda v: rk.relu(v, 0.1))(x[:4])
    np.testing.assert_array_equal(jacobian, jnp.diag(ours[:4]))


def test_out_is_refused():
    with pytest.raises(TypeError, match="out"):
        rk.relu(jnp.ones(3), out=jnp.ones(3))


def test_integer_x_with_a_floating_leak_differentiates_in_the_leak():
    assert jax.grad(lambda a: rk.relu(jnp.array([-3, 2]), a).sum())(0.5) == -3.0
