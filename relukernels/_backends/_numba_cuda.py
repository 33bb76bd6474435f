"""CUDA kernels over raw pointers, compiled from the same formulas as the CPU loops.

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

One scalar access per element keeps too few bytes in flight to reach a GPU's copy
bandwidth; vector accesses of four elements (as PyTorch's elementwise kernels use) are
how the quads kernel means to reach it (``benchmarks/gpu_check.py`` times the kernels
against a device copy). Every kernel is a grid-stride loop with 64-bit indices. Loads come before stores because an
output may be an input itself, so the compiler may not move them past the stores.

The kernels take plain parameters only, so that what the launcher packs is what the
compiled code reads, with no library's array layout in between: the element count
``n`` (four extents ``n0`` to ``n3`` for the 4-d kernels), and for each operand a
pointer followed by its strides in elements (none for ``quads``): inputs ``x0`` and
``x1`` (strides ``r0``, ``r1``; ``r00`` to ``r03`` and ``r10`` to ``r13`` in 4-d),
the leak ``a`` (a scalar of the output dtype; for ``leaks`` a pointer, strides
``l0`` to ``l3``), outputs ``y`` and ``dy`` (strides ``w0``, ``w1``, ...). An
operation with one input gets it twice and reads it once; one with one output gets
it twice and writes it once. The order is each kernel's own: the Numba signature it
is compiled for and the parameters packed at launch both follow its parameter
names (``parameter_order``), so the two cannot disagree.

How a launch runs: ``numba.cuda.compile_all`` compiles the kernel's Python function
to PTX for the device's compute capability (with Numba's float16 operators where it
calls them); ``cuda.core`` links the PTX into a cubin (``Linker``), loads it and
launches it (``launch``) with the packed parameters, after checking once per kernel
that their sizes are those the driver reports for it (``Kernel.arguments_info``),
which would catch a Numba that compiles parameters differently. Nothing of Numba but
its public compiler is used.
Under the simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels run in Python
through Numba's simulated launcher, each pointer a view of the host memory behind
it, so the tests run the whole backend without a GPU; ``benchmarks/ptx_check.py``
compiles the real ones and checks their parameters against the packing. Importing
this module imports ``numba.cuda``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numba import config, cuda

from .. import _kernels
from .._ops import OPERATIONS, RELU_BACKWARD, Operation
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

KERNEL_OPERATIONS: dict[str, Operation] = {**OPERATIONS, RELU_BACKWARD.name: RELU_BACKWARD}
"""The operations with kernels, by name."""

_DEVICE_FUNCTIONS = {name: cuda.jit(device=True)(element) for name, element in _kernels.ELEMENTS.items()}
"""The element formulas as CUDA device functions, by name."""


def _readers(inputs: int) -> tuple[Any, Any]:
    """Device functions reading the value at an element offset of each input, and
    the quad at a quad index: one value, or a pair for two inputs."""
    if inputs == 1:

        @cuda.jit(device=True)
        def read(x0, x1, i, k):
            return x0[i]

        @cuda.jit(device=True)
        def read_quad(x0, x1, j):
            return load_quad(x0, j)

        return read, read_quad

    @cuda.jit(device=True)
    def read_pair(x0, x1, i, k):
        return x0[i], x1[k]

    @cuda.jit(device=True)
    def read_pair_quad(x0, x1, j):
        return load_quad(x0, j), load_quad(x1, j)

    return read_pair, read_pair_quad


def _callers(element: Any, inputs: int) -> tuple[Any, Any]:
    """Device functions applying ``element`` to what a reader read, and to a quad of it."""
    if inputs == 1:

        @cuda.jit(device=True)
        def call(v, a):
            return element(v, a)

        @cuda.jit(device=True)
        def call_quad(q, a):
            return element(q[0], a), element(q[1], a), element(q[2], a), element(q[3], a)

        return call, call_quad

    @cuda.jit(device=True)
    def call_pair(v, a):
        return element(v[0], v[1], a)

    @cuda.jit(device=True)
    def call_pair_quad(q, a):
        return (element(q[0][0], q[1][0], a), element(q[0][1], q[1][1], a), element(q[0][2], q[1][2], a),
                element(q[0][3], q[1][3], a))

    return call_pair, call_pair_quad


def _writers(first: tuple[Any, Any], second: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """Device functions writing ``first`` (and ``second``) of a value into ``y`` (and
    ``dy``) at element offsets, and of a quad at a quad index."""
    call, call_quad = first
    if second is None:

        @cuda.jit(device=True)
        def write(y, dy, p, q, v, a):
            y[p] = call(v, a)

        @cuda.jit(device=True)
        def write_quad(y, dy, j, v, a):
            store_quad(y, j, call_quad(v, a))

        return write, write_quad

    call_second, call_second_quad = second

    @cuda.jit(device=True)
    def write_pair(y, dy, p, q, v, a):
        y[p], dy[q] = call(v, a), call_second(v, a)

    @cuda.jit(device=True)
    def write_pair_quad(y, dy, j, v, a):
        store_quad(y, j, call_quad(v, a))
        store_quad(dy, j, call_second_quad(v, a))

    return write_pair, write_pair_quad


@cuda.jit(device=True)
def _unravel_4d(i, n1, n2, n3):
    i3 = i % n3
    rest = i // n3
    i2 = rest % n2
    rest = rest // n2
    return rest // n1, rest % n1, i2, i3


@cuda.jit(device=True)
def _offset(at, s0, s1, s2, s3):
    return at[0] * s0 + at[1] * s1 + at[2] * s2 + at[3] * s3


def _python_kernels(op: Operation) -> dict[str, Callable[..., None]]:
    """The four kernels of ``op``, by kind (see the module's docstring), as Python
    functions for ``numba.cuda`` to compile or simulate."""
    inputs = len(op.inputs)
    read, read_quad = _readers(inputs)
    write, write_quad = _writers(*(_callers(_DEVICE_FUNCTIONS[e], inputs) for e in op.elements))

    def quads(n, x0, x1, a, y, dy):
        w = cuda.blockDim.x
        count = n // 4
        j = cuda.blockIdx.x * QUADS * w + cuda.threadIdx.x
        step = cuda.gridDim.x * QUADS * w
        while j + w < count:
            p, q = read_quad(x0, x1, j), read_quad(x0, x1, j + w)
            write_quad(y, dy, j, p, a)
            write_quad(y, dy, j + w, q, a)
            j += step
        if j < count:  # this thread's part of the last, partial tile
            write_quad(y, dy, j, read_quad(x0, x1, j), a)
        i = 4 * count + cuda.grid(1)
        if i < n:  # the last size % 4 elements, on the first threads
            write(y, dy, i, i, read(x0, x1, i, i), a)

    def flat(n, x0, r0, x1, r1, a, y, w0, dy, w1):
        w = cuda.blockDim.x
        i = cuda.blockIdx.x * TILE * w + cuda.threadIdx.x
        step = cuda.gridDim.x * TILE * w
        while i + 3 * w < n:
            v0 = read(x0, x1, i * r0, i * r1)
            v1 = read(x0, x1, (i + w) * r0, (i + w) * r1)
            v2 = read(x0, x1, (i + 2 * w) * r0, (i + 2 * w) * r1)
            v3 = read(x0, x1, (i + 3 * w) * r0, (i + 3 * w) * r1)
            write(y, dy, i * w0, i * w1, v0, a)
            write(y, dy, (i + w) * w0, (i + w) * w1, v1, a)
            write(y, dy, (i + 2 * w) * w0, (i + 2 * w) * w1, v2, a)
            write(y, dy, (i + 3 * w) * w0, (i + 3 * w) * w1, v3, a)
            i += step
        while i < n:  # this thread's part of the last, partial tile
            write(y, dy, i * w0, i * w1, read(x0, x1, i * r0, i * r1), a)
            i += w

    def strided(n0, n1, n2, n3, x0, r00, r01, r02, r03, x1, r10, r11, r12, r13, a,
                y, w00, w01, w02, w03, dy, w10, w11, w12, w13):
        for i in range(cuda.grid(1), n0 * n1 * n2 * n3, cuda.gridsize(1)):
            at = _unravel_4d(i, n1, n2, n3)
            v = read(x0, x1, _offset(at, r00, r01, r02, r03), _offset(at, r10, r11, r12, r13))
            write(y, dy, _offset(at, w00, w01, w02, w03), _offset(at, w10, w11, w12, w13), v, a)

    def leaks(n0, n1, n2, n3, x0, r00, r01, r02, r03, x1, r10, r11, r12, r13, a, l0, l1, l2, l3,
              y, w00, w01, w02, w03, dy, w10, w11, w12, w13):
        for i in range(cuda.grid(1), n0 * n1 * n2 * n3, cuda.gridsize(1)):
            at = _unravel_4d(i, n1, n2, n3)
            v = read(x0, x1, _offset(at, r00, r01, r02, r03), _offset(at, r10, r11, r12, r13))
            write(y, dy, _offset(at, w00, w01, w02, w03), _offset(at, w10, w11, w12, w13), v,
                  a[_offset(at, l0, l1, l2, l3)])

    return {"quads": quads, "flat": flat, "strided": strided, "leaks": leaks}


KERNELS: dict[tuple[str, str], Callable[..., None]] = {
    (name, kind): kernel for name, op in KERNEL_OPERATIONS.items() for kind, kernel in _python_kernels(op).items()
}
"""Kernels by (operation, kind: "quads", "flat", "strided" or "leaks"), as Python functions."""

KIND_NDIM = {"quads": 1, "flat": 1, "strided": STRIDED_NDIM, "leaks": STRIDED_NDIM}


class RawArray(NamedTuple):
    """Device memory seen as an array, ``offset`` bytes from a pointer given at launch:
    what a kernel argument needs, nothing more."""

    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in bytes, whole elements
    dtype: np.dtype


_STRIDES = {"x0": "r0", "x1": "r1", "a": "l", "y": "w0", "dy": "w1"}
"""The kernels' operands, by the name of their pointer parameter, with the name of
their strides' parameters (in 4-d, followed by the dimension: ``r00`` to ``r03``)."""


def _operand_parameters(operand: str, kind: str) -> list[str]:
    """The names of an operand's parameters in a ``kind`` kernel: ``n``, the extents
    (``n0`` to ``n3`` in 4-d); else the pointer, then the strides (none for quads, nor
    for a scalar leak)."""
    ndim = KIND_NDIM[kind]
    if operand == "n":
        return ["n"] if ndim == 1 else [f"n{d}" for d in range(ndim)]
    if kind == "quads" or (operand == "a" and kind != "leaks"):
        return [operand]
    prefix = _STRIDES[operand]
    return [operand, prefix] if ndim == 1 else [operand, *(f"{prefix}{d}" for d in range(ndim))]


@functools.cache
def parameter_order(op: str, kind: str) -> tuple[str, ...]:
    """The operands of ``op``'s ``kind`` kernel in the order of its parameters: ``n``
    (the extents), ``x0``, ``x1``, ``a``, ``y`` and ``dy``, read from the kernel
    function's parameter names, which must group each operand's parameters (see
    ``_operand_parameters``). ``signature`` and ``kernel_arguments`` follow it."""
    kernel = KERNELS[op, kind]
    names = list(inspect.signature(kernel).parameters)
    order = tuple("n" if name == "n0" else name for name in names if name in ("n", "n0", *_STRIDES))
    grouped = [name for operand in order for name in _operand_parameters(operand, kind)]
    if sorted(order) != sorted(("n", *_STRIDES)) or names != grouped:
        raise TypeError(
            f"the {op} kernel ({kind}) has parameters {names}: each of n, {', '.join(_STRIDES)} must appear once, "
            "followed by its strides, as kernel_arguments packs them"
        )
    return order


def signature(op: str, kind: str, dtypes: tuple[np.dtype, ...]) -> tuple:
    """The Numba argument types of ``op``'s ``kind`` kernel for ``dtypes``: its
    inputs' dtypes, then the output's; in the kernel's ``parameter_order``."""
    from numba.cuda import types
    from numba.cuda.np.numpy_support import from_dtype

    ndim = KIND_NDIM[kind]
    strides = () if kind == "quads" else (types.int64,) * ndim
    output = from_dtype(dtypes[-1])
    operand_types = {
        "n": (types.int64,) * ndim,
        "x0": (types.CPointer(from_dtype(dtypes[0])), *strides),
        "x1": (types.CPointer(from_dtype(dtypes[-2])), *strides),
        "a": (types.CPointer(output), *strides) if kind == "leaks" else (output,),
        "y": (types.CPointer(output), *strides),
        "dy": (types.CPointer(output), *strides),
    }
    return tuple(t for operand in parameter_order(op, kind) for t in operand_types[operand])


def kernel_ptx(op: str, kind: str, dtypes: tuple[np.dtype, ...], cc: tuple[int, int]) -> str:
    """The PTX of ``op``'s ``kind`` kernel for ``dtypes`` (as ``signature`` takes
    them), for compute capability ``cc``: ``numba.cuda.compile_ptx``, which needs
    NVVM but no GPU. Float16 kernels call Numba's ``__half`` operators, which this
    PTX leaves undefined (``kernel_codes`` has them)."""
    code, _ = cuda.compile_ptx(KERNELS[op, kind], signature(op, kind, dtypes), cc=cc)
    return code


def kernel_codes(op: str, kind: str, dtypes: tuple[np.dtype, ...], cc: tuple[int, int]) -> list[Any]:
    """The kernel's PTX, as ``kernel_ptx`` gives it, first, then the code of the
    functions it calls from outside (``numba.cuda.compile_all``; NVRTC compiles
    Numba's float16 operators, and checks the driver's version to do so)."""
    codes, _ = cuda.compile_all(KERNELS[op, kind], signature(op, kind, dtypes), device=False, abi="numba", cc=cc,
                                output="ptx")
    return codes


def link(codes: list[Any], cc: tuple[int, int]) -> Any:
    """PTX ``codes`` linked into one ``cuda.core.ObjectCode`` cubin for ``cc``
    (nvJitLink where installed, else the driver's linker)."""
    from cuda.core import Linker, LinkerOptions, ObjectCode

    objects = [ObjectCode.from_ptx(code.encode() if isinstance(code, str) else code) for code in codes]
    return Linker(*objects, options=LinkerOptions(arch=f"sm_{cc[0]}{cc[1]}")).link("cubin")


def entry_name(ptx: str) -> str:
    """The name of the one kernel in ``ptx``."""
    [name] = re.findall(r"\.entry\s+([^\s(]+)\s*\(", ptx)
    return name


def argument_sizes(arguments: list[Any]) -> list[int]:
    """The size in bytes of each kernel parameter as ``cuda.core.launch`` passes it:
    a Python int as a 64-bit integer, a ctypes value as its C type."""
    return [8 if isinstance(argument, int) else ctypes.sizeof(argument) for argument in arguments]


_SCALARS: dict[np.dtype, Callable[[Any], Any]] = {
    np.dtype(np.float16): lambda a: ctypes.c_uint16(int(np.float16(a).view(np.uint16))),
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
    **{np.dtype(c): getattr(ctypes, f"c_{np.dtype(c).name}") for c in "i1 i2 i4 i8 u1 u2 u4 u8".split()},
}
"""The leak as the kernel's C parameter, by its dtype (float16 goes as its bits)."""


class HostPointer:
    """Under the simulator, a pointer into host memory indexed by element, negative
    offsets included (what a NumPy view, which wraps them around, cannot be)."""

    def __init__(self, pointer: int, array: RawArray) -> None:
        self.memory, low = _host_memory(pointer, array)
        self.origin = -low // array.dtype.itemsize

    def __getitem__(self, i: int) -> Any:
        return self.memory[self.origin + i]

    def __setitem__(self, i: int, value: Any) -> None:
        self.memory[self.origin + i] = value


@functools.cache
def _packing(op: str, kind: str) -> tuple[tuple[str, int], ...]:
    """``parameter_order`` of ``op``'s ``kind`` kernel, each operand with the index of
    its array among ``kernel_arguments``' (the output's for the leak)."""
    inputs = len(KERNEL_OPERATIONS[op].inputs)
    index = {"n": 0, "x0": 0, "x1": inputs - 1, "a": inputs, "y": inputs, "dy": -1}
    return tuple((operand, index[operand]) for operand in parameter_order(op, kind))


def kernel_arguments(op: str, kind: str, a: Any, pointers: list[int], arrays: tuple[RawArray, ...]) -> list[Any]:
    """The parameters of ``op``'s ``kind`` kernel over ``arrays`` (inputs, then outputs;
    array ``i`` at ``pointers[i]`` plus its offset) with leak ``a`` (as ``launch_raw``
    takes it), in the kernel's ``parameter_order``. Under the simulator each pointer
    is a ``HostPointer`` and the leak a NumPy scalar."""
    operand = _simulated_operand if SIMULATOR else _operand
    arguments: list[Any] = []
    for name, i in _packing(op, kind):
        if name == "n":
            arguments += arrays[0].shape
        elif name != "a":
            arguments += operand(kind, pointers[i], arrays[i])
        elif kind == "leaks":
            arguments += operand(kind, *a)
        else:
            arguments.append(a if SIMULATOR else _SCALARS[arrays[i].dtype](a))
    return arguments


def _operand(kind: str, pointer: int, array: RawArray) -> list[Any]:
    """An array's parameters: its address, then (but for "quads") its strides in elements."""
    address = pointer + array.offset
    return [address] if kind == "quads" else [address, *(s // array.dtype.itemsize for s in array.strides)]


def _simulated_operand(kind: str, pointer: int, array: RawArray) -> list[Any]:
    host = HostPointer(pointer, array)
    return [host] if kind == "quads" else [host, *(s // array.dtype.itemsize for s in array.strides)]


_multiprocessors: dict[int, int] = {}
_compiled: dict[tuple, Any] = {}
_simulated: dict[tuple[str, str], Any] = {}
_configs: dict[int, Any] = {}

STREAM_WRAPPERS = 32
"""How many ``cuda.core`` wrappers of callers' streams ``stream_for`` keeps, the most
recently used."""


def current_device_id() -> int:
    """Numba's current device (the simulator's has no id: 0)."""
    return getattr(cuda.get_current_device(), "id", 0)


def pointer_device_id(pointer: int) -> int:
    """The device whose memory ``pointer`` is in (``cuPointerGetAttribute``); the current
    device for a null pointer (an empty array's may be), and under the simulator, whose
    one device is 0. Raises ``ValueError`` for memory CUDA does not know."""
    if SIMULATOR or not pointer:
        return current_device_id()
    from cuda.bindings import driver

    error, ordinal = driver.cuPointerGetAttribute(
        driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, pointer
    )
    if error != driver.CUresult.CUDA_SUCCESS:
        raise ValueError(f"the array's data at {pointer:#x} is not memory that CUDA knows ({error.name})")
    return int(ordinal)


def device_context(device_id: int) -> contextlib.AbstractContextManager:
    """A ``with`` block in which ``device_id`` is Numba's current device, as it is
    already where its context is current (and under the simulator, with one device)."""
    if SIMULATOR:
        return contextlib.nullcontext()
    from cuda.bindings import driver

    error, device = driver.cuCtxGetDevice()
    if error == driver.CUresult.CUDA_SUCCESS and int(device) == device_id:
        return contextlib.nullcontext()
    return cuda.gpus[device_id]


def _blocks(kind: str, size: int, device_id: int) -> int:
    sms = _multiprocessors.get(device_id)
    if sms is None:
        if SIMULATOR:
            sms = 1
        else:
            from cuda.core import Device

            sms = Device(device_id).properties.multiprocessor_count
        _multiprocessors[device_id] = sms
    return max(1, min(-(-size // (ELEMENTS_PER_STEP[kind] * THREADS_PER_BLOCK)), sms * BLOCKS_PER_SM))


def _compiled_kernel(op: str, kind: str, dtypes: tuple[np.dtype, ...], device_id: int, arguments: list[Any]) -> Any:
    """The ``cuda.core`` kernel of ``op`` for ``dtypes`` on a device, compiled and
    loaded on first use; its parameters checked against ``arguments`` then."""
    key = (op, kind, dtypes, device_id)
    kernel = _compiled.get(key)
    if kernel is None:
        from cuda.core import Device

        capability = Device(device_id).compute_capability
        cc = (capability.major, capability.minor)
        codes = kernel_codes(op, kind, dtypes, cc)
        kernel = link(codes, cc).get_kernel(entry_name(codes[0]))
        expected = [info.size for info in kernel.arguments_info]
        if argument_sizes(arguments) != expected:
            raise RuntimeError(
                f"the compiled {op} kernel ({kind}) takes parameters of {expected} bytes, but the launcher packs "
                f"{argument_sizes(arguments)}: numba-cuda compiles kernel parameters differently than this "
                "version of relukernels expects"
            )
        _compiled[key] = kernel
    return kernel


@functools.lru_cache(maxsize=STREAM_WRAPPERS)
def stream_for(device_id: int, handle: int) -> Any:
    """The caller's stream ``handle`` on a device as ``launch_raw`` takes it: a
    ``cuda.core`` wrapper, made once for a stream in use and dropped once
    ``STREAM_WRAPPERS`` others were used since (a program that makes and destroys
    streams would otherwise keep one for each). The device is part of the key: the
    default streams' handles (0, 1, 2) are those of the current device's context."""
    if SIMULATOR:
        return 0
    from cuda.core import Stream

    return Stream.from_handle(handle)


def launch_raw(op: str, kind: str, a: Any, pointers: list[int], arrays: tuple[RawArray, ...], stream: Any,
               device_id: int, *, blocks: int | None = None) -> None:
    """Run ``op``'s ``kind`` kernel over its inputs ``arrays[:k]`` into its outputs
    ``arrays[k:]``, array ``i`` at ``pointers[i]`` plus its offset.

    The arrays have ``KIND_NDIM[kind]`` dimensions and one shape (and for "quads",
    C-contiguous data aligned to four elements); ``a`` is the leak, cast to the output
    dtype, or for "leaks" a pair (pointer, ``RawArray``) of an array of that dtype;
    ``stream`` comes from ``stream_for``; ``device_id`` is the current device, where
    the kernel is loaded; ``blocks`` the grid's size, by default enough blocks for
    the array up to one wave of the device (then the kernels loop).
    """
    x = arrays[0]
    size = math.prod(x.shape)
    if size == 0:
        return
    if blocks is None:
        blocks = _blocks(kind, size, device_id)
    arguments = kernel_arguments(op, kind, a, pointers, arrays)
    if SIMULATOR:
        kernel = _simulated.get((op, kind))
        if kernel is None:
            kernel = _simulated[op, kind] = cuda.jit(KERNELS[op, kind])
        kernel[blocks, THREADS_PER_BLOCK](*arguments)
        return
    from cuda.core import LaunchConfig
    from cuda.core import launch as core_launch

    inputs = len(KERNEL_OPERATIONS[op].inputs)
    dtypes = tuple(array.dtype for array in arrays[: inputs + 1])
    kernel = _compiled_kernel(op, kind, dtypes, device_id, arguments)
    _ensure_context(device_id)
    config = _configs.get(blocks)
    if config is None:
        config = _configs[blocks] = LaunchConfig(grid=blocks, block=THREADS_PER_BLOCK, shmem_size=0)
    core_launch(stream, config, kernel, *arguments)


def launch(op: str, kind: str, x: Any, a: Any, outs: tuple[Any, ...], stream: Any = 0) -> None:
    """Run ``op``'s ``kind`` kernel over device array ``x`` into ``outs`` (Numba
    device arrays, or any ``__cuda_array_interface__`` objects) on the current device,
    on Numba stream ``stream`` (0: the legacy default stream).

    The arrays have ``KIND_NDIM[kind]`` dimensions and one shape (and for "quads",
    C-contiguous data aligned to four elements); ``a`` is the leak as a NumPy scalar
    of the output dtype, or for "leaks" a device array of that dtype and shape.
    """
    pointers, arrays = [], []
    for array in (x, *outs):
        pointer, raw = _raw(array)
        pointers.append(pointer)
        arrays.append(raw)
    device_id = current_device_id()
    leak = _raw(a) if kind == "leaks" else a
    handle = 0 if SIMULATOR or not stream else int(stream)
    launch_raw(op, kind, leak, pointers, tuple(arrays), stream_for(device_id, handle), device_id)


def _raw(array: Any) -> tuple[int, RawArray]:
    """The pointer and ``RawArray`` of a ``__cuda_array_interface__`` object (under the
    simulator, of a simulated device array: its host memory's ``__array_interface__``)."""
    from .cuda import _c_strides

    interface = array.__array_interface__ if SIMULATOR else array.__cuda_array_interface__
    dtype, shape = np.dtype(interface["typestr"]), tuple(interface["shape"])
    strides = interface.get("strides") or _c_strides(shape, dtype.itemsize)
    return interface["data"][0], RawArray(0, shape, tuple(strides), dtype)


def _host_memory(pointer: int, array: RawArray) -> tuple[np.ndarray, int]:
    """The host memory an array spans, as a 1-d array of its dtype, and where the
    array's pointer is from its start (minus, in bytes)."""
    from .cuda import byte_extent

    low, high = byte_extent(array.shape, array.strides, array.dtype.itemsize)
    buffer = (ctypes.c_char * (high - low)).from_address(pointer + array.offset + low)
    # (numpy's stubs omit ctypes arrays, which give their buffer all the same)
    return np.frombuffer(buffer, array.dtype), low  # type: ignore[call-overload]


def _ensure_context(device_id: int) -> None:
    """Bind the device's primary context to this thread if none is bound.

    CuPy and PyTorch bind one in the threads where they work, but not necessarily in
    others: PyTorch runs backward passes in threads of its own, where the first
    launch found no context (CUDA_ERROR_INVALID_CONTEXT).
    """
    from cuda.bindings import driver

    error, context = driver.cuCtxGetCurrent()
    if error == driver.CUresult.CUDA_SUCCESS and int(context) == 0:
        from cuda.core import Device

        Device(device_id).set_current()
