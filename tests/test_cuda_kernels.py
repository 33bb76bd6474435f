"""The CUDA kernels themselves, against the oracle: on a GPU when there is one, else
on Numba's CUDA simulator (the conftest sets NUMBA_ENABLE_CUDASIM=1), so CI runs the
same kernel code. Arrays are kept small: the simulator runs each thread in Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import oracle
from strategies import leaks_for, strided_arrays

cuda = pytest.importorskip("numba.cuda")
from relukernels._backends import _numba_cuda  # noqa: E402
from relukernels._backends.cuda import _merge_dims, _order  # noqa: E402

pytestmark = [
    pytest.mark.cuda,
    # The simulator multiplies NumPy scalars, which warn on overflow; kernels do not.
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]

DTYPES = [np.dtype(c) for c in ("f2", "f4", "f8", "i1", "i4", "u8")]
OPS = {
    "relu": (oracle.relu,),
    "relu_dash": (oracle.relu_dash,),
    "relu_and_dash": (oracle.relu, oracle.relu_dash),
}


@st.composite
def kernel_cases(draw, max_dims):
    x = draw(strided_arrays(dtypes=DTYPES, max_dims=max_dims, max_side=5))
    leak = draw(leaks_for(x.dtype))
    return x, leak, draw(st.sampled_from(sorted(OPS)))


def _expected(op, x, leak):
    with np.errstate(all="ignore"):
        return [formula(x, leak) for formula in OPS[op]]


def _run(op, kind, device_x, leak, expected):
    outs = tuple(cuda.device_array(device_x.shape, dtype=e.dtype) for e in expected)
    _numba_cuda.launch(op, kind, device_x, expected[0].dtype.type(leak), outs)
    return [o.copy_to_host() for o in outs]


@settings(max_examples=40)
@given(kernel_cases(max_dims=1), st.sampled_from(["quads", "flat"]))
def test_flat_kernels(case, kind):
    x, leak, op = case
    flat = np.ascontiguousarray(x).reshape(-1)
    expected = _expected(op, flat, leak)
    for result, want in zip(_run(op, kind, cuda.to_device(flat), leak, expected), expected, strict=True):
        assert result.dtype == want.dtype
        np.testing.assert_array_equal(result, want, strict=True)


@settings(max_examples=40)
@given(kernel_cases(max_dims=1), st.sampled_from([2, -1, -3]))
def test_flat_kernel_on_strided_1d_views(case, step):
    x, leak, op = case
    assume(x.size > 0)  # Numba device arrays refuse to slice an empty array
    base = np.repeat(x.reshape(-1), abs(step))
    device_view = cuda.to_device(base)[:: step]
    expected = _expected(op, base[::step], leak)
    for result, want in zip(_run(op, "flat", device_view, leak, expected), expected, strict=True):
        np.testing.assert_array_equal(result, want, strict=True)


@settings(max_examples=40)
@given(kernel_cases(max_dims=3), st.data())
def test_strided_kernels_on_4d_views(case, data):
    x, leak, op = case
    assume(x.size > 0)  # Numba device arrays refuse to slice an empty array
    steps = tuple(data.draw(st.sampled_from([1, 2, -1])) for _ in range(x.ndim))
    base = np.ascontiguousarray(x).repeat(2, axis=-1) if x.ndim else x.copy()
    padded = (None,) * (_numba_cuda.STRIDED_NDIM - x.ndim)
    view = base[padded][(*(slice(None) for _ in padded), *(slice(None, None, s) for s in steps))]
    device_view = cuda.to_device(base[padded])[(*(slice(None) for _ in padded), *(slice(None, None, s) for s in steps))]
    expected = _expected(op, view, leak)
    for result, want in zip(_run(op, "strided", device_view, leak, expected), expected, strict=True):
        np.testing.assert_array_equal(result, want, strict=True)


@pytest.mark.parametrize("op", sorted(_numba_cuda.KERNEL_OPERATIONS))
@pytest.mark.parametrize("kind", ["quads", "flat"])
@pytest.mark.parametrize("blocks", [1, 3])
def test_flat_kernels_over_many_tiles(op, kind, blocks):
    """Full tiles, a partial last tile, the grid-stride step between tiles and (for
    the quads) the last size % 4 elements, which the small arrays above never reach;
    relu_backward's two inputs too."""
    n = 5 * _numba_cuda.ELEMENTS_PER_STEP[kind] * _numba_cuda.THREADS_PER_BLOCK + 77
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    x[::7] = -np.inf
    if op == "relu_backward":
        grad = rng.standard_normal(n).astype(np.float32)
        inputs, expected = (grad, x), [grad * oracle.relu_dash(x, 0.1)]
    else:
        inputs, expected = (x,), _expected(op, x, 0.1)
    device_arrays = [cuda.to_device(a) for a in inputs] + [cuda.device_array(n, np.float32) for _ in expected]
    pointers, arrays = zip(*(_numba_cuda._raw(a) for a in device_arrays), strict=True)
    device = _numba_cuda.current_device_id()
    stream = _numba_cuda.stream_for(device, 0)
    _numba_cuda.launch_raw(op, kind, np.float32(0.1), list(pointers), arrays, stream, device, blocks=blocks)
    for out, want in zip(device_arrays[len(inputs):], expected, strict=True):
        np.testing.assert_array_equal(out.copy_to_host(), want, strict=True)


def _relu_outputs_first(n, y, w0, dy, w1, a, x0, r0, x1, r1):
    """``relu``'s flat kernel, simply, with its parameters in another order."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i * w0] = _numba_cuda._DEVICE_FUNCTIONS["relu"](x0[i * r0], a)


def test_arguments_are_packed_in_the_order_of_the_kernels_parameters(monkeypatch):
    """The launcher packs each parameter where the kernel has it, by its name: not in
    an order of its own, which the compiled kernel's sizes (all 8 bytes here) cannot
    tell from another."""
    monkeypatch.setitem(_numba_cuda.KERNELS, ("relu, outputs first", "flat"), _relu_outputs_first)
    monkeypatch.setitem(_numba_cuda.KERNEL_OPERATIONS, "relu, outputs first", _numba_cuda.KERNEL_OPERATIONS["relu"])
    x = np.linspace(-2, 2, 9, dtype=np.float64)
    y = np.zeros_like(x)
    arrays = (_numba_cuda.RawArray(0, x.shape, x.strides, x.dtype),) * 2
    device = _numba_cuda.current_device_id()
    _numba_cuda.launch_raw("relu, outputs first", "flat", np.float64(0.25), [x.ctypes.data, y.ctypes.data], arrays,
                           _numba_cuda.stream_for(device, 0), device)
    np.testing.assert_array_equal(y, oracle.relu(x, 0.25), strict=True)
    np.testing.assert_array_equal(x, np.linspace(-2, 2, 9), strict=True)
    assert _numba_cuda.parameter_order("relu, outputs first", "flat") == ("n", "y", "dy", "a", "x0", "x1")


def test_a_kernel_must_group_each_operands_parameters(monkeypatch):
    def strides_apart(n, x0, x1, r0, r1, a, y, w0, dy, w1):
        pass

    monkeypatch.setitem(_numba_cuda.KERNELS, ("relu, strides apart", "flat"), strides_apart)
    with pytest.raises(TypeError, match="followed by its strides"):
        _numba_cuda.parameter_order("relu, strides apart", "flat")


def test_stream_wrappers_are_kept_for_the_streams_in_use_only():
    """One wrapper per stream handle, for the most recently used: a program that makes
    and destroys streams does not grow the cache without end."""
    _numba_cuda.stream_for.cache_clear()
    for handle in range(1, 10 * _numba_cuda.STREAM_WRAPPERS):
        _numba_cuda.stream_for(0, handle)
    assert _numba_cuda.stream_for.cache_info().currsize == _numba_cuda.STREAM_WRAPPERS


def test_the_cuda_extras_declare_what_the_gpu_code_imports():
    """cuda.core and cuda.bindings are imported by the GPU code: the cuda12 and cuda13
    extras name them, cuda.core from 0.5.0 (its top-level namespace), and what the code
    imports from them exists in the versions installed here."""
    import ast
    import importlib

    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement
    from packaging.version import Version

    root = Path(__file__).resolve().parent.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, major in (("cuda12", 12), ("cuda13", 13)):
        required = {r.name: r.specifier for r in map(Requirement, extras[extra])}
        assert Version("0.5.0") in required["cuda-core"] and Version("0.4.2") not in required["cuda-core"], extra
        assert Version(f"{major}.9.0") in required["cuda-bindings"], extra
        assert Version(f"{major + 1}.0.0") not in required["cuda-bindings"], extra
    imported = set()
    for path in (root / "relukernels" / "_backends").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.partition(".")[0] == "cuda":
                imported |= {(node.module, alias.name) for alias in node.names}
    assert {("cuda.core", "Linker"), ("cuda.bindings", "driver")} <= imported
    missing = [f"{module}.{name}" for module, name in imported if not hasattr(importlib.import_module(module), name)]
    assert not missing


def test_empty_arrays_launch_nothing():
    x = cuda.to_device(np.empty(0, np.float32))
    y = cuda.device_array(0, np.float32)
    _numba_cuda.launch("relu", "quads", x, np.float32(0.1), (y,))
    assert y.copy_to_host().shape == (0,)


def test_grid_is_capped_for_large_arrays():
    """Launches are grid-stride loops: the block count stops growing with the size."""
    device = _numba_cuda.current_device_id()
    for kind in _numba_cuda.ELEMENTS_PER_STEP:
        assert _numba_cuda._blocks(kind, 1, device) == 1
        assert _numba_cuda._blocks(kind, 10**12, device) == _numba_cuda._blocks(kind, 10**13, device)


@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=6).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.lists(st.permutations(range(len(shape))), min_size=1, max_size=3),
            st.lists(
                st.lists(st.sampled_from([1, 2, -1]), min_size=len(shape), max_size=len(shape)), min_size=1, max_size=3
            ),
        )
    )
)
def test_merged_dimensions_reach_the_same_elements(case):
    """Merging dimensions for the strided launch must not change which element of
    each array meets which: the (offset in x, offset in out) pairs are preserved."""
    shape, orders, steps_list = case
    arrays = []
    # orders and steps_list are drawn with independent lengths: pair them up to the shorter
    for order, steps in zip(orders, steps_list, strict=False):
        base = np.empty([shape[d] * abs(steps[d]) for d in order], np.int8)
        view = base[tuple(slice(None, None, steps[d]) for d in order)].transpose(np.argsort(order))
        assert view.shape == shape
        arrays.append(view)
    strides = [a.strides for a in arrays]
    merged_shape, merged_strides = _merge_dims(arrays[0].shape, strides)
    original = {tuple(sum(i * s for i, s in zip(index, st, strict=True)) for st in strides)
                for index in np.ndindex(arrays[0].shape)}
    merged = {tuple(sum(i * s for i, s in zip(index, st, strict=True)) for st in merged_strides)
              for index in np.ndindex(merged_shape)}
    assert merged == original
    assert int(np.prod(merged_shape)) == arrays[0].size


@pytest.mark.parametrize(
    "array, order",
    [
        (np.empty((3, 4)), "C"),
        (np.empty((3, 4), order="F"), "F"),
        (np.empty((3, 4))[:, ::2], None),
        (np.empty((3, 4))[::-1], None),
        (np.empty((1, 5, 1)), "C"),
        (np.empty(()), "C"),
    ],
)
def test_order(array, order):
    strides = tuple(s // array.itemsize for s in array.strides)
    assert _order(array.shape, strides) == order


def test_ptx_check():
    """The real kernels compiled to PTX (NVVM, no GPU needed; in a process without the
    simulator): the quads kernels use vector loads and stores, the others do not, and
    every kernel's parameters have the sizes of what the launcher packs for it."""
    environment = {key: value for key, value in os.environ.items() if key != "NUMBA_ENABLE_CUDASIM"}
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "ptx_check.py"
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=environment, timeout=600)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "| relu | quads | f4 → f4 |" in run.stdout and "all checks pass" in run.stdout, run.stdout


def test_gpu_check_uses_only_what_exists():
    """benchmarks/gpu_check.py runs only on a lent GPU, in one call: every relukernels
    internal it reaches for must exist here, or that call is wasted."""
    import ast
    import importlib

    source = (Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py").read_text()
    modules = {
        "_numba_cuda": importlib.import_module("relukernels._backends._numba_cuda"),
        "cuda_backend": importlib.import_module("relukernels._backends.cuda"),
        "_bench": importlib.import_module("relukernels._bench"),
        "rk": importlib.import_module("relukernels"),
    }
    used = {
        (node.value.id, node.attr)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
    }
    assert len(used) > 10
    missing = sorted(f"{module}.{name}" for module, name in used if not hasattr(modules[module], name))
    assert not missing, missing
