"""``@numba.cuda.jit`` kernels, compiled from the same formulas as the CPU loops.

Four kernels for each operation, by the layout of the arrays and the leak they take:

- ``quads``: 1-d C-contiguous arrays whose data are aligned to four elements (every
  fresh CuPy or PyTorch allocation). Each thread loads two quads of four elements
  with one vector access each (``_cuda_quads``) before it stores any; the last
  ``size % 4`` elements one by one.
- ``flat``: 1-d arrays of any stride (and contiguous ones that are not aligned).
  Each thread loads ``TILE`` elements a block apart before it stores any.
- ``strided``: 4-d views of any strides, negative included; one element per thread
  per step, the flat index unravelled in the kernel.
- ``leaks``: ``strided`` with an array leak, a 4-d view broadcast to ``x``'s shape
  (stride 0 along the dimensions it repeats), read at each element's index.

On an H100 (2026-11-26) one scalar element per thread reached 60% of the copy
bandwidth and four in flight 80%; PyTorch's vector accesses reach 98%. The quads
kernel has not been timed on a GPU yet (benchmarks/gpu_check.py does). Every kernel is a grid-stride loop with 64-bit
indices and takes ``(x, a, y, dy)``: the one-output operations get their output
twice and write it once. Loads come before stores because the output may be the
input itself, so the compiler may not move them past the stores.

Two ways to launch: ``launch`` goes through Numba's own launcher with Numba device
arrays (real, or the CUDA simulator's); ``launch_raw`` takes bare pointers, shapes
and strides and calls ``cuda.core.launch`` on the compiled kernel, skipping the tens
of microseconds that building device arrays and Numba's argument handling cost.
Under the simulator ``launch_raw`` wraps the (host) memory behind the pointers in
simulator arrays and goes through ``launch``, so the tests run the whole backend
without a GPU. Importing this module imports ``numba.cuda``.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, Callable, NamedTuple

import numpy as np
from numba import config, cuda

from .. import _scalar
from .._ops import OPERATIONS
from ._cuda_quads import load_quad, store_quad

SIMULATOR = bool(config.ENABLE_CUDASIM)
STRIDED_NDIM = 4
"""Strided arrays are launched as views of this many dimensions."""

THREADS_PER_BLOCK = 256
BLOCKS_PER_SM = 8  # 8 x 256 threads fill an SM of 2,048: one wave, then grid-stride
TILE = 4  # elements in flight per thread in the flat kernel (its loop unrolls 4)
QUADS = 2  # quads in flight per thread in the quads kernel (its loop unrolls 2)
ELEMENTS_PER_STEP = {"quads": 4 * QUADS, "flat": TILE, "strided": 1, "leaks": 1}
"""Elements one thread handles per step of each kernel's grid-stride loop."""

_DEVICE_FUNCTIONS = {element: cuda.jit(device=True)(element) for element in (_scalar.relu, _scalar.relu_dash)}
"""The element formulas as CUDA device functions."""


def _writers(first: Any, second: Any = None) -> tuple[Any, Any]:
    """Device functions writing ``first`` (and ``second``) of a value into ``y`` (and
    ``dy``) at an index, and of a quad at a quad index."""
    if second is None:

        @cuda.jit(device=True)
        def write(y, dy, at, v, a):
            y[at] = first(v, a)

        @cuda.jit(device=True)
        def write_quad(y, dy, j, q, a):
            store_quad(y, j, (first(q[0], a), first(q[1], a), first(q[2], a), first(q[3], a)))

        return write, write_quad

    @cuda.jit(device=True)
    def write_pair(y, dy, at, v, a):
        y[at], dy[at] = first(v, a), second(v, a)

    @cuda.jit(device=True)
    def write_pair_quad(y, dy, j, q, a):
        store_quad(y, j, (first(q[0], a), first(q[1], a), first(q[2], a), first(q[3], a)))
        store_quad(dy, j, (second(q[0], a), second(q[1], a), second(q[2], a), second(q[3], a)))

    return write_pair, write_pair_quad


@cuda.jit(device=True)
def _unravel_4d(i, shape):
    i3 = i % shape[3]
    rest = i // shape[3]
    i2 = rest % shape[2]
    rest = rest // shape[2]
    return rest // shape[1], rest % shape[1], i2, i3


def _kernels(write: Any, write_quad: Any) -> dict[str, Any]:
    """The three kernels of one operation, by layout (see the module's docstring)."""

    @cuda.jit
    def quads(x, a, y, dy):
        n, w = x.size, cuda.blockDim.x
        count = n // 4
        j = cuda.blockIdx.x * QUADS * w + cuda.threadIdx.x
        step = cuda.gridDim.x * QUADS * w
        while j + w < count:
            p, q = load_quad(x, j), load_quad(x, j + w)
            write_quad(y, dy, j, p, a)
            write_quad(y, dy, j + w, q, a)
            j += step
        if j < count:  # this thread's part of the last, partial tile
            write_quad(y, dy, j, load_quad(x, j), a)
        i = 4 * count + cuda.grid(1)
        if i < n:  # the last size % 4 elements, on the first threads
            write(y, dy, i, x[i], a)

    @cuda.jit
    def flat(x, a, y, dy):
        n, w = x.size, cuda.blockDim.x
        i = cuda.blockIdx.x * TILE * w + cuda.threadIdx.x
        step = cuda.gridDim.x * TILE * w
        while i + 3 * w < n:
            v0, v1, v2, v3 = x[i], x[i + w], x[i + 2 * w], x[i + 3 * w]
            write(y, dy, i, v0, a)
            write(y, dy, i + w, v1, a)
            write(y, dy, i + 2 * w, v2, a)
            write(y, dy, i + 3 * w, v3, a)
            i += step
        while i < n:  # this thread's part of the last, partial tile
            write(y, dy, i, x[i], a)
            i += w

    @cuda.jit
    def strided(x, a, y, dy):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            at = _unravel_4d(i, x.shape)
            write(y, dy, at, x[at], a)

    @cuda.jit
    def leaks(x, a, y, dy):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            at = _unravel_4d(i, x.shape)
            write(y, dy, at, x[at], a[at])

    return {"quads": quads, "flat": flat, "strided": strided, "leaks": leaks}


_BY_OP = {name: _kernels(*_writers(*(_DEVICE_FUNCTIONS[e] for e in op.elements))) for name, op in OPERATIONS.items()}
KERNELS: dict[tuple[str, str], Any] = {(op, kind): kernel for op, kinds in _BY_OP.items() for kind, kernel in kinds.items()}
"""Kernels by (operation, kind: "quads", "flat", "strided" or "leaks")."""

KIND_NDIM = {"quads": 1, "flat": 1, "strided": STRIDED_NDIM, "leaks": STRIDED_NDIM}
_KIND_LAYOUT = {"quads": "C", "flat": "A", "strided": "A", "leaks": "A"}
_multiprocessors: dict[int, int] = {}


def current_device_id() -> int:
    """Numba's current device (the simulator's has no id: 0)."""
    return getattr(cuda.get_current_device(), "id", 0)


def _blocks(kind: str, size: int, device_id: int) -> int:
    sms = _multiprocessors.get(device_id)
    if sms is None:
        sms = _multiprocessors[device_id] = getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1)
    return max(1, min(-(-size // (ELEMENTS_PER_STEP[kind] * THREADS_PER_BLOCK)), sms * BLOCKS_PER_SM))


def launch(op: str, kind: str, x: Any, a: Any, outs: tuple[Any, ...], stream: Any = 0) -> None:
    """Run ``op``'s ``kind`` kernel through Numba's launcher over device array ``x``
    into ``outs``.

    The arrays have ``KIND_NDIM[kind]`` dimensions and one shape (and for "quads",
    C-contiguous data aligned to four elements); ``a`` is the leak as a NumPy scalar
    of the output dtype, or for "leaks" a device array of that dtype and shape.
    """
    if x.size == 0:
        return
    blocks = _blocks(kind, x.size, current_device_id())
    KERNELS[op, kind][blocks, THREADS_PER_BLOCK, stream](x, a, outs[0], outs[-1])


class RawArray(NamedTuple):
    """Device memory seen as an array, ``offset`` bytes from a pointer given at launch:
    what a kernel argument needs, nothing more."""

    offset: int
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
_streams: dict[tuple[int, int], Any] = {}


def _compiled_kernel(op: str, kind: str, in_dtype: np.dtype, out_dtype: np.dtype, device_id: int) -> Any:
    """The ``cuda.core`` kernel of ``op`` for one signature, on the current device."""
    key = (op, kind, in_dtype, out_dtype, device_id)
    kernel = _compiled.get(key)
    if kernel is None:
        from numba.cuda import types
        from numba.cuda.np.numpy_support import from_dtype

        ndim, layout = KIND_NDIM[kind], _KIND_LAYOUT[kind]
        y_type = types.Array(from_dtype(out_dtype), ndim, layout)
        a_type = y_type if kind == "leaks" else from_dtype(out_dtype)
        signature = (types.Array(from_dtype(in_dtype), ndim, layout), a_type, y_type, y_type)
        compiled = KERNELS[op, kind].compile(signature)
        kernel = _compiled[key] = compiled._codelibrary.get_cufunc().kernel
    return kernel


def stream_for(device_id: int, handle: int) -> Any:
    """The caller's stream ``handle`` as ``launch_raw`` takes it, one wrapper per handle."""
    if SIMULATOR:
        return 0
    stream = _streams.get((device_id, handle))
    if stream is None:
        from cuda.core import Stream

        stream = _streams[device_id, handle] = Stream.from_handle(handle)
    return stream


def launch_raw(op: str, kind: str, a: Any, pointers: list[int], arrays: tuple[RawArray, ...], stream: Any,
               device_id: int) -> None:
    """Run ``op``'s ``kind`` kernel over ``arrays[0]`` into ``arrays[1:]``, array ``i``
    at ``pointers[i]`` plus its offset.

    The arrays are as ``launch`` takes them; ``a`` is the leak, cast to the output
    dtype, or for "leaks" a pair (pointer, ``RawArray``) of an array of that dtype;
    ``stream`` comes from ``stream_for``; ``device_id`` is Numba's current device,
    where the kernel is loaded.
    """
    x = arrays[0]
    size = math.prod(x.shape)
    if size == 0:
        return
    if SIMULATOR:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        views = [FakeCUDAArray(_host_view(pointer, array)) for pointer, array in zip(pointers, arrays)]
        launch(op, kind, views[0], FakeCUDAArray(_host_view(*a)) if kind == "leaks" else a, tuple(views[1:]))
        return
    from cuda.core import LaunchConfig, launch as core_launch

    kernel = _compiled_kernel(op, kind, x.dtype, arrays[1].dtype, device_id)
    arguments = _array_arguments(pointers[0], x)
    arguments += _array_arguments(*a) if kind == "leaks" else [_SCALARS[arrays[1].dtype](a)]
    arguments += _array_arguments(pointers[1], arrays[1])
    arguments += _array_arguments(pointers[-1], arrays[-1])
    _ensure_context(device_id)
    blocks = _blocks(kind, size, device_id)
    config = _configs.get(blocks)
    if config is None:
        config = _configs[blocks] = LaunchConfig(grid=blocks, block=THREADS_PER_BLOCK, shmem_size=0)
    core_launch(stream, config, kernel, *arguments)


def copy_to_host(pointer: int, array: RawArray, device_array: Any) -> np.ndarray:
    """A host copy of ``device_array`` (any ``__cuda_array_interface__`` object), which
    is ``array`` at ``pointer``."""
    if SIMULATOR:
        return _host_view(pointer, array).copy()
    return cuda.as_cuda_array(device_array).copy_to_host()


def _host_view(pointer: int, array: RawArray) -> np.ndarray:
    """The simulator's "device" memory is host memory: a NumPy view of it."""
    from .cuda import byte_extent

    low, high = byte_extent(array.shape, array.strides, array.dtype.itemsize)
    buffer = (ctypes.c_char * (high - low)).from_address(pointer + array.offset + low)
    return np.ndarray(array.shape, array.dtype, buffer, offset=-low, strides=array.strides)


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


def _array_arguments(pointer: int, array: RawArray) -> list[Any]:
    """Numba's array ABI: meminfo, parent, size, itemsize, data, shape..., strides..."""
    return [0, 0, math.prod(array.shape), array.dtype.itemsize, pointer + array.offset, *array.shape, *array.strides]
