"""GPU arrays on the CUDA kernels: CuPy arrays, PyTorch CUDA tensors (through the
torch backend) and any object with ``__cuda_array_interface__``.

Inputs and outputs are never copied: the kernels get the arrays' pointers, shapes and
strides (``relu_backward`` of mixed dtypes excepted: see ``CudaBackend.backward``).
What differs between libraries sits in one adapter each: how to read an array's
layout cheaply, how to allocate an output (in the input's library, on its device, in
its memory order), which device to make current, and which stream is the caller's
(CuPy's and PyTorch's current stream; the interface's ``stream`` field).
Nothing here waits for the device: an array leak's values are not read on the host
(see ``_device_leak``). Nothing here imports CUDA until an array of this backend
arrives.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, NamedTuple

import numpy as np

from .. import _validate
from .._ops import RELU_BACKWARD, Operation
from . import generic

_KERNEL_DTYPES = frozenset(np.dtype(c) for c in "f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8".split())


def _library(kind: type) -> str:
    """The top-level package that defines ``kind``."""
    return kind.__module__.partition(".")[0]


class _CupyArrays:
    """CuPy: attributes for the layout, ``empty_like``, the array's device and the current stream."""

    @staticmethod
    def view(x: Any) -> tuple[int, _Layout, bool]:
        return x.data.ptr, _layout(x.shape, x.strides, x.dtype), False

    @staticmethod
    def dtype(x: Any) -> np.dtype:
        return x.dtype

    @staticmethod
    def array_type(x: Any) -> type:
        return type(x)

    @staticmethod
    def allocate(x: Any, dtype: np.dtype, order: str | None) -> Any:
        import cupy

        return cupy.empty_like(x, dtype=dtype)

    @staticmethod
    def device_id(x: Any) -> int:
        return x.device.id

    @staticmethod
    def device(x: Any) -> contextlib.AbstractContextManager:
        return x.device

    @staticmethod
    def stream(x: Any) -> int:
        import cupy

        return cupy.cuda.get_current_stream().ptr


class _TorchArrays:
    """PyTorch CUDA tensors: ``data_ptr`` and ``stride``, ``empty_like``, the current stream."""

    @staticmethod
    def view(x: Any) -> tuple[int, _Layout, bool]:
        size = x.element_size()
        return x.data_ptr(), _layout(tuple(x.shape), tuple(s * size for s in x.stride()), numpy_dtype(x.dtype)), False

    @staticmethod
    def dtype(x: Any) -> np.dtype | None:
        return numpy_dtype(x.dtype)

    @staticmethod
    def array_type(x: Any) -> type:
        import torch

        return torch.Tensor  # nn.Parameter and other subclasses take plain tensors as out

    @staticmethod
    def allocate(x: Any, dtype: np.dtype, order: str | None) -> Any:
        import torch

        return torch.empty_like(x, dtype=torch.from_numpy(np.empty(0, dtype)).dtype)

    @staticmethod
    def device_id(x: Any) -> int:
        return x.device.index

    @staticmethod
    def device(x: Any) -> contextlib.AbstractContextManager:
        import torch

        return torch.cuda.device(x.device)

    @staticmethod
    def stream(x: Any) -> int:
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream


class _InterfaceArrays:
    """Any other ``__cuda_array_interface__`` object; outputs are Numba device arrays.
    Its device is that of the memory its pointer points into, as the driver tells."""

    @staticmethod
    def view(x: Any) -> tuple[int, _Layout, bool]:
        cai = x.__cuda_array_interface__
        shape, dtype = tuple(cai["shape"]), np.dtype(cai["typestr"])
        strides = cai.get("strides") or _c_strides(shape, dtype.itemsize)
        return cai["data"][0], _layout(shape, tuple(strides), dtype), cai["data"][1]

    @staticmethod
    def dtype(x: Any) -> np.dtype:
        return np.dtype(x.__cuda_array_interface__["typestr"])

    @staticmethod
    def array_type(x: Any) -> type:
        return type(x)

    @staticmethod
    def allocate(x: Any, dtype: np.dtype, order: str | None) -> Any:
        from numba import cuda

        return cuda.device_array(tuple(x.shape), dtype=dtype, order="F" if order == "F" else "C")

    @staticmethod
    def device_id(x: Any) -> int:
        return _kernels().pointer_device_id(x.__cuda_array_interface__["data"][0])

    @staticmethod
    def device(x: Any) -> contextlib.AbstractContextManager:
        return _kernels().device_context(_InterfaceArrays.device_id(x))

    @staticmethod
    def stream(x: Any) -> int:
        """Version 3's ``stream`` (1: the legacy default stream, 2: the per-thread
        one, else a stream's handle); the legacy default stream where none is given."""
        return x.__cuda_array_interface__.get("stream") or 0


_ADAPTERS = {"cupy": _CupyArrays, "torch": _TorchArrays}


@functools.lru_cache(maxsize=64)
def _adapter(kind: type) -> Any:
    return _ADAPTERS.get(_library(kind), _InterfaceArrays)


@functools.cache
def numpy_dtype(torch_dtype: Any) -> np.dtype | None:
    """The NumPy dtype of a torch dtype, or None (bfloat16 and others NumPy lacks)."""
    import torch

    try:
        return torch.empty(0, dtype=torch_dtype).numpy().dtype
    except TypeError:
        return None


class CudaBackend:
    """CuPy arrays and other ``__cuda_array_interface__`` objects; the torch backend
    hands over its CUDA tensors."""

    name = "cuda"

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        """``op`` over ``x`` into ``outs`` (each ``None`` or an array)."""
        adapter = _adapter(type(x))  # type: ignore[arg-type]  # classes are Hashable: python/mypy#11470
        x_view = _kernel_input(adapter, x)
        leak, a, dtype = _resolve_leak(adapter, leak, x, x_view[1])
        return _launch(op, adapter, (x,), (x_view,), leak, a, dtype, outs)

    def backward(self, grad: Any, x: Any, leak: Any, out: Any) -> Any:
        """``relu_backward``: ``grad * relu_dash(x, leak)`` into ``out`` (``None`` or an
        array; may be ``grad`` or ``x`` itself).

        The kernels run where ``grad``, ``x`` and the result share a dtype (the leak is
        rounded to it). Mixed dtypes take the formula in the array's library (CuPy's
        or PyTorch's operations, then a copy into ``out``); for arrays of no known
        library, which have none, they are a TypeError.
        """
        adapter = _adapter(type(x))  # type: ignore[arg-type]  # classes are Hashable: python/mypy#11470
        x_view = _kernel_input(adapter, x)
        grad_view = adapter.view(grad)[:2]
        _validate.grad_shape(grad_view[1].shape, x_view[1].shape)
        array_leak, a, dash_dtype = _resolve_leak(adapter, leak, x, x_view[1])
        dtype = _validate.grad_dtype(np, grad_view[1].dtype, dash_dtype)
        if grad_view[1].dtype == x_view[1].dtype == dtype:
            return _launch(RELU_BACKWARD, adapter, (grad, x), (grad_view, x_view), array_leak, a, dtype, (out,))[0]
        if adapter is _InterfaceArrays:
            raise TypeError(
                f"grad has dtype {grad_view[1].dtype} and x {x_view[1].dtype}: for arrays of no known library the "
                f"CUDA kernels need both in the result's dtype, {dtype}"
            )
        if out is not None:
            _checked_out(adapter, out, "out", x, x_view[1], dtype)
        with adapter.device(x):
            result = generic.backward_formula(generic.namespace(x), grad, x, leak if array_leak is None else array_leak)
            if out is None:
                return result
            out[...] = result
        return out


def _kernel_input(adapter: Any, x: Any) -> tuple[int, _Layout]:
    """``x``'s pointer and layout, once its dtype is checked to be one of the kernels'."""
    pointer, layout, _ = adapter.view(x)
    if layout.dtype not in _KERNEL_DTYPES:
        raise TypeError(f"x has dtype {layout.dtype}, which the CUDA kernels do not support")
    return pointer, layout


def _resolve_leak(adapter: Any, leak: Any, x: Any, x_layout: _Layout) -> tuple[Any, Any, np.dtype]:
    """The leak checked for ``x``: an array leak cast to the result dtype (``a`` is
    None), or a number as ``a`` (``leak`` is None); and ``relu``'s result dtype."""
    leak = _validate.leak(leak)
    if _validate.is_array_leak(leak):
        leak, dtype = _device_leak(adapter, leak, x, x_layout)
        return leak, None, dtype
    a, dtype = _validate.numpy_result(x_layout.dtype, leak)
    return None, a, dtype


def _launch(op: Operation, adapter: Any, inputs: tuple, views: tuple, leak: Any, a: Any, dtype: np.dtype,
            outs: tuple) -> list:
    """``op``'s kernels over ``inputs`` (their pointers and layouts in ``views``; ``x``
    last) into ``outs`` (each ``None`` or an unchecked array), with an array ``leak``
    or a number ``a`` (as ``_resolve_leak`` gives them) and result ``dtype``."""
    x, x_layout = inputs[-1], views[-1][1]
    given = [None if out is None else _checked_out(adapter, out, name, x, x_layout, dtype)
             for out, name in zip(outs, op.out_names, strict=True)]
    if x_layout.size and any(given):
        _check_overlaps(tuple(zip(op.inputs, inputs, views, strict=True)), outs, op.out_names, given)
    with adapter.device(x):  # outputs are allocated and kernels launched on x's device
        results = [adapter.allocate(x, dtype, x_layout.order) if out is None else out for out in outs]
        if x_layout.size == 0:
            return results
        kernels = _kernels()
        device_id = adapter.device_id(x)
        pointers, layouts = [pointer for pointer, _ in views], [layout for _, layout in views]
        for view, result in zip(given, results, strict=True):
            pointer, layout = view or adapter.view(result)[:2]
            pointers.append(pointer)
            layouts.append(layout)
        stream = kernels.stream_for(device_id, adapter.stream(x))
        if leak is not None:
            leak_pointer, leak_layout, _ = adapter.view(leak)
            layouts.append(_broadcast(leak_layout, x_layout.shape))
            for kind, arrays in _plan(tuple(layouts), False, array_leak=True):
                kernels.launch_raw(op.name, kind, (leak_pointer, arrays[-1]), pointers, arrays[:-1], stream, device_id)
        else:
            for kind, arrays in _plan(tuple(layouts), _aligned(pointers, layouts)):
                kernels.launch_raw(op.name, kind, dtype.type(a), pointers, arrays, stream, device_id)
    return results


def _device_leak(adapter: Any, leak: Any, x: Any, x_layout: _Layout) -> tuple[Any, np.dtype]:
    """An array ``leak``, checked and cast to the result dtype on ``x``'s device, and
    that dtype.

    It must be of ``x``'s library (any ``__cuda_array_interface__`` object for such an
    ``x``, already in the result dtype: there is no library to cast it with), on
    ``x``'s device, of a real dtype, and broadcast to ``x``'s shape. Its values are
    not read: the host would wait for the device on every call (stalling, say, each
    PReLU forward), and may not wait at all while a stream is captured into a CUDA
    graph. So a value that is not finite in the result dtype (NaN, infinity, or beyond
    its range once cast) is not refused as for host arrays, but gives non-finite
    results where it applies, as PyTorch's ``prelu`` does. One case still reads the
    leak, once: an integer leak with values that the integer result dtype cannot hold
    (int64 for an int8 ``x``) is checked to fit, since the cast would wrap them into
    wrong values silently; a leak in the result dtype never is.
    """
    if adapter is _InterfaceArrays and not hasattr(leak, "__cuda_array_interface__"):
        raise TypeError(f"leak must be a device array like x, got {type(leak).__name__}")
    if adapter is not _InterfaceArrays and _library(type(leak)) != _library(type(x)):
        raise TypeError(f"leak must be an array of x's library, got {type(leak).__module__}.{type(leak).__name__}")
    if adapter.device_id(leak) != adapter.device_id(x):
        raise ValueError(f"leak is on device {adapter.device_id(leak)}; x is on device {adapter.device_id(x)}")
    if adapter is _InterfaceArrays:
        layout = adapter.view(leak)[1]
        dtype = _validate.array_leak_dtype(np, layout.dtype, layout.shape, x_layout.shape, x_layout.dtype)
        if layout.dtype != dtype:
            raise TypeError(
                f"leak has dtype {layout.dtype}; for an x of no known library it must have the result's, {dtype}"
            )
        return leak, dtype
    import array_api_compat

    cast, _ = _validate.array_leak(array_api_compat.array_namespace(leak), leak, x_layout.shape, x.dtype)
    return cast, adapter.dtype(cast)


def _broadcast(layout: _Layout, shape: tuple[int, ...]) -> _Layout:
    """``layout`` broadcast to ``shape``: stride 0 along the dimensions it repeats."""
    pad = len(shape) - len(layout.shape)
    strides = (0,) * pad + tuple(0 if n == 1 else s for n, s in zip(layout.shape, layout.strides, strict=True))
    return _layout(shape, strides, layout.dtype)


_numba_cuda: Any = None


def _kernels() -> Any:
    """The kernels' module, imported with the first GPU array (it imports numba.cuda)."""
    global _numba_cuda
    if _numba_cuda is None:
        from . import _numba_cuda as module

        _numba_cuda = module
    return _numba_cuda


def _checked_out(adapter: Any, out: Any, name: str, x: Any, x_layout: _Layout, dtype: np.dtype) -> tuple[int, _Layout]:
    """Check a caller's ``out`` against the result; return its pointer and layout."""
    _validate.out_array(
        out,
        name=name,
        expected_type=adapter.array_type(x),
        shape=x_layout.shape,
        dtype=dtype,
        device=adapter.device_id(x),
        device_of=adapter.device_id,
        dtype_of=adapter.dtype,
    )
    pointer, layout, read_only = adapter.view(out)
    if read_only:
        raise ValueError(f"{name} is read-only")
    return pointer, layout


class _Layout(NamedTuple):
    """An array's layout, all a launch needs of it but its pointer."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in bytes
    dtype: np.dtype
    size: int
    order: str | None  # "C" or "F" where the array is dense in that order
    low: int  # the first byte the array touches, relative to its pointer
    high: int  # one past the last


@functools.lru_cache(maxsize=1024)
def _layout(shape: tuple[int, ...], strides: tuple[int, ...], dtype: np.dtype) -> _Layout:
    itemsize = dtype.itemsize
    if any(s % itemsize for s in strides):
        raise ValueError("arrays with strides that are not whole elements are not supported")
    low, high = byte_extent(shape, strides, itemsize)
    order = _order(shape, tuple(s // itemsize for s in strides))
    return _Layout(shape, strides, dtype, math.prod(shape), order, low, high)


def byte_extent(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> tuple[int, int]:
    """The first and one-past-the-last byte an array touches, relative to its pointer."""
    reach = [(n - 1) * s for n, s in zip(shape, strides, strict=True) if n > 1]
    return sum(r for r in reach if r < 0), sum(r for r in reach if r > 0) + itemsize


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _order(shape: tuple[int, ...], strides: tuple[int, ...]) -> str | None:
    """'C' or 'F' when the array is dense in that order ('C' for one element), else None."""
    dims = [(n, s) for n, s in zip(shape, strides, strict=True) if n > 1]
    if _is_dense(reversed(dims)):
        return "C"
    if _is_dense(dims):
        return "F"
    return None


def _is_dense(dims: Any) -> bool:
    """Whether (length, stride) pairs, innermost first, step through memory without gaps."""
    step = 1
    for length, stride in dims:
        if stride != step:
            return False
        step *= length
    return True


def _check_overlaps(inputs: tuple, outs: tuple, names: tuple, given: list) -> None:
    """Outputs the caller passed may be an input itself (``inputs``: its name, the
    array, its pointer and layout), but may not partly overlap one (the kernels read
    and write in parallel), nor each other."""
    extents = []
    for out, name, view in zip(outs, names, given, strict=True):
        if view is None:
            continue
        pointer, layout = view
        extent = (pointer + layout.low, pointer + layout.high)
        for input_name, array, (array_pointer, array_layout) in inputs:
            same = (pointer == array_pointer and layout.shape == array_layout.shape
                    and layout.strides == array_layout.strides)
            array_extent = (array_pointer + array_layout.low, array_pointer + array_layout.high)
            if out is not array and not same and _intersect(extent, array_extent):
                raise ValueError(f"{name} overlaps {input_name} without being {input_name}; "
                                 f"pass out={input_name} or a separate array")
        extents.append(extent)
    if len(extents) == 2 and _intersect(*extents):
        raise ValueError("out[0] and out[1] overlap; they must be separate arrays")


def _intersect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _aligned(pointers: list[int], layouts: list[_Layout]) -> bool:
    """Whether every array's data start on a multiple of four elements (the quads kernel)."""
    return all(pointer % (4 * layout.dtype.itemsize) == 0 for pointer, layout in zip(pointers, layouts, strict=True))


@functools.lru_cache(maxsize=1024)
def _plan(
    layouts: tuple[_Layout, ...], aligned: bool, array_leak: bool = False
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """How to launch over arrays of one shape with these layouts (the inputs first,
    then the outputs, then an array leak broadcast to their shape): per launch, the
    kernel kind and each array as a ``RawArray`` (offset from its pointer).

    All arrays dense in one order, with a scalar leak: one 1-d launch, of the quads
    kernel where every pointer is aligned to four elements. Otherwise the dimensions
    are merged where every array allows it; one dimension left is a strided 1-d
    launch, more are 4-d launches, one per index of any dimensions beyond four. An
    array leak always takes the 4-d kernel that reads it (``leaks``).
    """
    from ._numba_cuda import STRIDED_NDIM, RawArray

    x = layouts[0]
    if not array_leak and x.order is not None and all(layout.order == x.order or x.size == 1 for layout in layouts):
        kind = "quads" if aligned else "flat"
        return ((kind, tuple(RawArray(0, (x.size,), (layout.dtype.itemsize,), layout.dtype) for layout in layouts)),)
    shape, strides = _merge_dims(x.shape, [layout.strides for layout in layouts])
    if len(shape) == 1 and not array_leak:
        arrays = tuple(RawArray(0, shape, s, layout.dtype) for s, layout in zip(strides, layouts, strict=True))
        return (("flat", arrays),)
    pad = max(0, STRIDED_NDIM - len(shape))
    shape = (1,) * pad + shape
    strides = [(0,) * pad + s for s in strides]
    lead = len(shape) - STRIDED_NDIM
    return tuple(
        ("leaks" if array_leak else "strided",
         tuple(RawArray(sum(i * step for i, step in zip(index, s[:lead], strict=True)),
                        shape[lead:], s[lead:], layout.dtype)
               for s, layout in zip(strides, layouts, strict=True)))
        for index in np.ndindex(*shape[:lead])
    )


def _merge_dims(
    shape: tuple[int, ...], strides: list[tuple[int, ...]]
) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Drop unit dimensions and merge neighbours that every array steps through evenly."""
    keep = [d for d, n in enumerate(shape) if n != 1]
    merged_shape = [shape[d] for d in keep]
    merged = [[s[d] for d in keep] for s in strides]
    d = len(merged_shape) - 1
    while d > 0:
        if all(s[d - 1] == s[d] * merged_shape[d] for s in merged):
            merged_shape[d - 1] *= merged_shape[d]
            del merged_shape[d]
            for s in merged:
                s[d - 1] = s[d]
                del s[d]
        d -= 1
    return tuple(merged_shape), [tuple(s) for s in merged]
