"""GPU arrays on the CUDA kernels: CuPy arrays, PyTorch CUDA tensors (through the
torch backend) and any object with ``__cuda_array_interface__``.

Inputs and outputs are never copied: the kernels get the arrays' pointers, shapes and
strides. What differs between libraries sits in one adapter each: how to read an
array's layout cheaply, how to allocate an output (in the input's library, on its
device, in its memory order), which device to make current, and which stream is the
caller's (CuPy's and PyTorch's current stream; the legacy default stream otherwise).
Nothing here imports CUDA until an array of this backend arrives.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from .. import _validate

_KERNEL_DTYPES = frozenset(np.dtype(c) for c in "f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8".split())


def _library(x: Any) -> str:
    return type(x).__module__.partition(".")[0]


class _CupyArrays:
    """CuPy: attributes for the layout, ``empty_like`` under the array's device."""

    @staticmethod
    def layout(x: Any) -> tuple[int, tuple, tuple, np.dtype, bool]:
        return x.data.ptr, x.shape, x.strides, x.dtype, False

    @staticmethod
    def allocate(x: Any, dtype: np.dtype, order: str | None) -> Any:
        import cupy

        with x.device:
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
    def layout(x: Any) -> tuple[int, tuple, tuple, np.dtype, bool]:
        size = x.element_size()
        return x.data_ptr(), tuple(x.shape), tuple(s * size for s in x.stride()), numpy_dtype(x.dtype), False

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
    """Any other ``__cuda_array_interface__`` object; outputs are Numba device arrays."""

    @staticmethod
    def layout(x: Any) -> tuple[int, tuple, tuple, np.dtype, bool]:
        cai = x.__cuda_array_interface__
        shape, dtype = tuple(cai["shape"]), np.dtype(cai["typestr"])
        strides = cai.get("strides") or _c_strides(shape, dtype.itemsize)
        return cai["data"][0], shape, tuple(strides), dtype, cai["data"][1]

    @staticmethod
    def allocate(x: Any, dtype: np.dtype, order: str | None) -> Any:
        from numba import cuda

        return cuda.device_array(tuple(x.shape), dtype=dtype, order="F" if order == "F" else "C")

    @staticmethod
    def device_id(x: Any) -> int | None:
        return None

    @staticmethod
    def device(x: Any) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    @staticmethod
    def stream(x: Any) -> int:
        return 0


_ADAPTERS = {"cupy": _CupyArrays, "torch": _TorchArrays}


def numpy_dtype(torch_dtype: Any) -> np.dtype | None:
    """The NumPy dtype of a torch dtype, or None (bfloat16 and others NumPy lacks)."""
    import torch

    try:
        return torch.empty(0, dtype=torch_dtype).numpy().dtype
    except TypeError:
        return None


class CudaBackend:
    """CuPy arrays and other ``__cuda_array_interface__`` objects; the torch backend
    hands over its CUDA tensors (torch tensors may live on either side)."""

    name = "cuda"

    def __init__(self) -> None:
        self._streams: dict[tuple[int | None, int], Any] = {}

    def accepts(self, x: Any) -> bool:
        return _library(x) != "torch" and hasattr(x, "__cuda_array_interface__")

    def relu(self, x: Any, leak: int | float, out: Any) -> Any:
        return self.run("relu", x, leak, (out,), ("out",))[0]

    def relu_dash(self, x: Any, leak: int | float, out: Any) -> Any:
        return self.run("relu_dash", x, leak, (out,), ("out",))[0]

    def relu_and_dash(self, x: Any, leak: int | float, out: Any) -> tuple[Any, Any]:
        pair = _validate.out_pair(out) or (None, None)
        y, dy = self.run("relu_and_dash", x, leak, pair, ("out[0]", "out[1]"))
        return y, dy

    def run(self, op: str, x: Any, leak: int | float, outs: tuple, names: tuple) -> list:
        """``op`` over ``x`` into ``outs`` (each ``None`` or an array, named ``names``)."""
        adapter = _ADAPTERS.get(_library(x), _InterfaceArrays)
        x_info = _Interface(adapter, x)
        a, dtype = _validate.numpy_result(x_info.dtype, leak)
        if x_info.dtype not in _KERNEL_DTYPES:
            raise TypeError(f"x has dtype {x_info.dtype}, which the CUDA kernels do not support")
        infos: list[_Interface | None] = []
        for out, name in zip(outs, names):
            infos.append(None if out is None else self._checked_out(adapter, out, name, x, x_info, dtype))
        _check_overlaps(x, x_info, [(out, name, info) for out, name, info in zip(outs, names, infos) if info])
        outs = [adapter.allocate(x, dtype, x_info.order) if out is None else out for out in outs]
        if x_info.size == 0:
            return outs
        from . import _numba_cuda

        with adapter.device(x):
            device_id = adapter.device_id(x)
            if device_id is None:
                device_id = _numba_cuda.current_device_id()
            stream = self._stream(device_id, adapter.stream(x))
            leak_scalar = dtype.type(a)
            out_infos = [info or _Interface(adapter, out) for out, info in zip(outs, infos)]
            for arrays in _launch_views([x_info, *out_infos]):
                _numba_cuda.launch_raw(op, leak_scalar, arrays, stream, device_id)
        return outs

    @staticmethod
    def _checked_out(adapter: Any, out: Any, name: str, x: Any, x_info: "_Interface", dtype: np.dtype) -> "_Interface":
        """Check a caller's ``out`` against the result; return its layout."""
        _validate.out_array(
            out,
            name=name,
            expected_type=type(x),
            shape=x_info.shape,
            dtype=dtype,
            device=adapter.device_id(x),
            device_of=adapter.device_id,
            dtype_of=lambda array: adapter.layout(array)[3],
        )
        info = _Interface(adapter, out)
        if info.read_only:
            raise ValueError(f"{name} is read-only")
        return info

    def _stream(self, device_id: int, handle: int) -> Any:
        """The caller's stream as a ``cuda.core`` stream, one wrapper per handle."""
        stream = self._streams.get((device_id, handle))
        if stream is None:
            from cuda.core import Stream

            stream = self._streams[device_id, handle] = Stream.from_handle(handle)
        return stream


class _Interface:
    """Pointer, shape, strides (in elements) and dtype of a device array."""

    def __init__(self, adapter: Any, array: Any) -> None:
        self.pointer, self.shape, byte_strides, self.dtype, self.read_only = adapter.layout(array)
        self.itemsize = self.dtype.itemsize
        self.size = math.prod(self.shape)
        if any(s % self.itemsize for s in byte_strides):
            raise ValueError("arrays with strides that are not whole elements are not supported")
        self.strides = tuple(s // self.itemsize for s in byte_strides)
        self.order = _order(self.shape, self.strides)

    def extent(self) -> tuple[int, int]:
        """The first and one-past-the-last byte that the array touches."""
        reach = [(n - 1) * s for n, s in zip(self.shape, self.strides) if n > 1]
        low = self.pointer + sum(r for r in reach if r < 0) * self.itemsize
        high = self.pointer + (sum(r for r in reach if r > 0) + 1) * self.itemsize
        return low, high


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _order(shape: tuple[int, ...], strides: tuple[int, ...]) -> str | None:
    """'C' or 'F' when the array is dense in that order ('C' for one element), else None."""
    dims = [(n, s) for n, s in zip(shape, strides) if n > 1]
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


def _check_overlaps(x: Any, x_info: _Interface, given: list[tuple[Any, str, _Interface]]) -> None:
    """Outputs the caller passed may be ``x`` itself, but may not partly overlap it
    (the kernels read and write in parallel), nor each other."""
    if x_info.size == 0:
        return
    x_extent = x_info.extent()
    extents = []
    for out, name, info in given:
        same = (info.pointer, info.shape, info.strides) == (x_info.pointer, x_info.shape, x_info.strides)
        if out is not x and not same and _intersect(info.extent(), x_extent):
            raise ValueError(f"{name} overlaps x without being x; pass out=x or a separate array")
        extents.append(info.extent())
    if len(extents) == 2 and _intersect(*extents):
        raise ValueError("out[0] and out[1] overlap; they must be separate arrays")


def _intersect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _launch_views(interfaces: list[_Interface]) -> list[list[Any]]:
    """The arrays as kernel arguments over the same memory, one list per launch.

    All arrays dense in one order: 1-d views. Otherwise the dimensions are merged
    where every array allows it; one dimension left is a strided 1-d view, more are
    4-d views, with one launch per index of any dimensions beyond four.
    """
    from ._numba_cuda import STRIDED_NDIM

    x = interfaces[0]
    if x.order is not None and all(i.order == x.order or x.size == 1 for i in interfaces):
        return [[_raw(i, i.pointer, (x.size,), (1,)) for i in interfaces]]
    shape, strides = _merge_dims(x.shape, [i.strides for i in interfaces])
    if len(shape) == 1:
        return [[_raw(i, i.pointer, shape, s) for i, s in zip(interfaces, strides)]]
    pad = max(0, STRIDED_NDIM - len(shape))
    shape = (1,) * pad + shape
    strides = [(0,) * pad + s for s in strides]
    lead = len(shape) - STRIDED_NDIM
    launches = []
    for index in np.ndindex(*shape[:lead]):
        views = []
        for interface, s in zip(interfaces, strides):
            offset = sum(i * step for i, step in zip(index, s[:lead])) * interface.itemsize
            views.append(_raw(interface, interface.pointer + offset, shape[lead:], s[lead:]))
        launches.append(views)
    return launches


def _merge_dims(shape: tuple[int, ...], strides: list[tuple[int, ...]]) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
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


def _raw(interface: _Interface, pointer: int, shape: tuple, strides: tuple) -> Any:
    from ._numba_cuda import RawArray

    return RawArray(pointer, tuple(shape), tuple(st * interface.itemsize for st in strides), interface.dtype)
