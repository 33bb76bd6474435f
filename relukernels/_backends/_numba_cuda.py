"""``@numba.cuda.jit`` kernels, compiled from the same formulas as the CPU loops.

Every kernel is a grid-stride loop with 64-bit indices. The flat kernels take 1-d
arrays of any stride and keep four loads in flight per thread, in tiles of consecutive
elements (on an H100 one element per thread reached 60% of the copy bandwidth, four
strided a grid apart 80%); the strided kernels take 4-d views of any strides,
negative included, and unravel the flat index themselves.

Two ways to launch: ``launch`` goes through Numba's own launcher with Numba device
arrays, real or from the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how the
tests run the kernels without a GPU; ``launch_raw`` takes bare pointers, shapes and
strides and calls ``cuda.core.launch`` on the compiled kernel, skipping the tens of
microseconds that building device arrays and Numba's argument handling cost.
Importing this module imports ``numba.cuda``.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, Callable, NamedTuple

import numpy as np
from numba import cuda

from .. import _scalar

STRIDED_NDIM = 4
"""Strided arrays are launched as views of this many dimensions."""

THREADS_PER_BLOCK = 256
BLOCKS_PER_SM = 8  # 8 x 256 threads fill an SM of 2,048: one wave, then grid-stride
TILE = 4  # elements per thread per step of the flat kernels (the kernels unroll 4)

_relu = cuda.jit(device=True)(_scalar.relu)
_relu_dash = cuda.jit(device=True)(_scalar.relu_dash)


def _flat_kernels(first: Any, second: Any = None) -> Any:
    """A 1-d kernel writing ``first(x, a)`` (and ``second(x, a)``).

    Each block works through tiles of ``TILE`` consecutive blocks' worth of elements
    (a grid-stride loop over tiles); each thread loads its ``TILE`` elements of a
    tile before it stores any. The loads in flight keep the memory busy, the tiles
    keep a block's accesses together, and the loads come first because the output
    may be the input itself, so the compiler may not move them past the stores.
    """
    if second is None:

        @cuda.jit
        def kernel(x, a, y):
            n, w = x.size, cuda.blockDim.x
            i = cuda.blockIdx.x * TILE * w + cuda.threadIdx.x
            step = cuda.gridDim.x * TILE * w
            while i + 3 * w < n:
                v0, v1, v2, v3 = x[i], x[i + w], x[i + 2 * w], x[i + 3 * w]
                y[i], y[i + w] = first(v0, a), first(v1, a)
                y[i + 2 * w], y[i + 3 * w] = first(v2, a), first(v3, a)
                i += step
            while i < n:  # this thread's part of the last, partial tile
                y[i] = first(x[i], a)
                i += w

        return kernel

    @cuda.jit
    def kernel_pair(x, a, y, dy):
        n, w = x.size, cuda.blockDim.x
        i = cuda.blockIdx.x * TILE * w + cuda.threadIdx.x
        step = cuda.gridDim.x * TILE * w
        while i + 3 * w < n:
            v0, v1, v2, v3 = x[i], x[i + w], x[i + 2 * w], x[i + 3 * w]
            y[i], y[i + w] = first(v0, a), first(v1, a)
            y[i + 2 * w], y[i + 3 * w] = first(v2, a), first(v3, a)
            dy[i], dy[i + w] = second(v0, a), second(v1, a)
            dy[i + 2 * w], dy[i + 3 * w] = second(v2, a), second(v3, a)
            i += step
        while i < n:
            v = x[i]
            y[i], dy[i] = first(v, a), second(v, a)
            i += w

    return kernel_pair


@cuda.jit(device=True)
def _unravel_4d(i, shape):
    i3 = i % shape[3]
    rest = i // shape[3]
    i2 = rest % shape[2]
    rest = rest // shape[2]
    return rest // shape[1], rest % shape[1], i2, i3


@cuda.jit
def _relu_strided(x, a, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        at = _unravel_4d(i, x.shape)
        y[at] = _relu(x[at], a)


@cuda.jit
def _relu_dash_strided(x, a, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        at = _unravel_4d(i, x.shape)
        y[at] = _relu_dash(x[at], a)


@cuda.jit
def _relu_and_dash_strided(x, a, y, dy):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        at = _unravel_4d(i, x.shape)
        value = x[at]
        y[at] = _relu(value, a)
        dy[at] = _relu_dash(value, a)


KERNELS: dict[tuple[str, int], Any] = {
    ("relu", 1): _flat_kernels(_relu),
    ("relu_dash", 1): _flat_kernels(_relu_dash),
    ("relu_and_dash", 1): _flat_kernels(_relu, _relu_dash),
    ("relu", STRIDED_NDIM): _relu_strided,
    ("relu_dash", STRIDED_NDIM): _relu_dash_strided,
    ("relu_and_dash", STRIDED_NDIM): _relu_and_dash_strided,
}
"""Kernels by (operation, dimensions of the arrays they take)."""

_multiprocessors: dict[int, int] = {}


def current_device_id() -> int:
    """Numba's current device (the simulator's has no id: 0)."""
    return getattr(cuda.get_current_device(), "id", 0)


def _blocks(size: int, device_id: int) -> int:
    sms = _multiprocessors.get(device_id)
    if sms is None:
        sms = _multiprocessors[device_id] = getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1)
    return max(1, min(-(-size // (TILE * THREADS_PER_BLOCK)), sms * BLOCKS_PER_SM))


def launch(op: str, x: Any, a: Any, outs: tuple[Any, ...], stream: Any = 0) -> None:
    """Run ``op`` through Numba's launcher over device array ``x`` into ``outs``.

    The arrays are 1-d or ``STRIDED_NDIM``-d, all of one shape; ``a`` is the leak as a
    NumPy scalar of the output dtype.
    """
    if x.size == 0:
        return
    KERNELS[op, x.ndim][_blocks(x.size, current_device_id()), THREADS_PER_BLOCK, stream](x, a, *outs)


class RawArray(NamedTuple):
    """Device memory seen as an array: what a kernel argument needs, nothing more."""

    pointer: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in bytes
    dtype: np.dtype


_SCALARS: dict[np.dtype, Callable[[Any], Any]] = {
    np.dtype(np.float16): lambda a: ctypes.c_uint16(int(np.float16(a).view(np.uint16))),
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
    **{np.dtype(c): getattr(ctypes, f"c_{np.dtype(c).name}") for c in "i1 i2 i4 i8 u1 u2 u4 u8".split()},
}
"""The leak as the kernel's C parameter, by its dtype (float16 goes as its bits)."""

_compiled: dict[tuple, Any] = {}
_configs: dict[int, Any] = {}


def _compiled_kernel(op: str, ndim: int, in_dtype: np.dtype, out_dtype: np.dtype, device_id: int) -> Any:
    """The ``cuda.core`` kernel of ``op`` for one signature, on the current device."""
    key = (op, ndim, in_dtype, out_dtype, device_id)
    kernel = _compiled.get(key)
    if kernel is None:
        from numba.cuda import types
        from numba.cuda.np.numpy_support import from_dtype

        x_type, y_type = from_dtype(in_dtype), from_dtype(out_dtype)
        outputs = 2 if op == "relu_and_dash" else 1
        signature = (types.Array(x_type, ndim, "A"), y_type) + (types.Array(y_type, ndim, "A"),) * outputs
        compiled = KERNELS[op, ndim].compile(signature)
        kernel = _compiled[key] = compiled._codelibrary.get_cufunc().kernel
    return kernel


def launch_raw(op: str, a: Any, arrays: list[RawArray], stream: Any, device_id: int) -> None:
    """Run ``op`` over ``arrays[0]`` into ``arrays[1:]`` with ``cuda.core.launch``.

    The arrays are 1-d or ``STRIDED_NDIM``-d, all of one shape; ``a`` is the leak,
    cast to the output dtype; ``stream`` is a ``cuda.core`` stream; ``device_id`` is
    Numba's current device, where the kernel is loaded.
    """
    from cuda.core import LaunchConfig, launch as core_launch

    x = arrays[0]
    size = math.prod(x.shape)
    if size == 0:
        return
    kernel = _compiled_kernel(op, len(x.shape), x.dtype, arrays[1].dtype, device_id)
    arguments = _array_arguments(x)
    arguments.append(_SCALARS[arrays[1].dtype](a))
    for out in arrays[1:]:
        arguments += _array_arguments(out)
    _ensure_context(device_id)
    blocks = _blocks(size, device_id)
    config = _configs.get(blocks)
    if config is None:
        config = _configs[blocks] = LaunchConfig(grid=blocks, block=THREADS_PER_BLOCK, shmem_size=0)
    core_launch(stream, config, kernel, *arguments)


def _ensure_context(device_id: int) -> None:
    """Bind the device's primary context to this thread if none is bound.

    CuPy and PyTorch bind one in the threads where they work, but not necessarily in
    others: PyTorch runs backward passes in threads of its own, where the first
    launch found no context (CUDA_ERROR_INVALID_CONTEXT, seen on an H100).
    """
    from cuda.bindings import driver

    error, context = driver.cuCtxGetCurrent()
    if error == driver.CUresult.CUDA_SUCCESS and int(context) == 0:
        from cuda.core import Device

        Device(device_id).set_current()


def _array_arguments(array: RawArray) -> list[Any]:
    """Numba's array ABI: meminfo, parent, size, itemsize, data, shape..., strides..."""
    return [0, 0, math.prod(array.shape), array.dtype.itemsize, array.pointer, *array.shape, *array.strides]
