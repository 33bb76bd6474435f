"""CuPy arrays, and any object with ``__cuda_array_interface__``, on the CUDA kernels.

The arrays are wrapped as Numba device arrays without a copy (zero-copy views built
from their interface, on any strides), outputs are allocated by the input's own
library on the input's device, and kernels launch on the caller's current stream:
CuPy's ``get_current_stream()``, wrapped once per stream by ``cuda.external_stream``.
Nothing here imports CUDA until an array of this backend arrives.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from .. import _validate

_KERNEL_DTYPES = frozenset(np.dtype(c) for c in "f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8".split())
_FLOAT64 = np.dtype(np.float64)


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.partition(".")[0] == "cupy"


class CudaBackend:
    """CuPy arrays and other ``__cuda_array_interface__`` objects (not torch tensors,
    which may live on either side and have a backend of their own)."""

    name = "cuda"

    def __init__(self) -> None:
        self._streams: dict[tuple[int, int], Any] = {}

    def accepts(self, x: Any) -> bool:
        if type(x).__module__.partition(".")[0] == "torch":
            return False
        return hasattr(x, "__cuda_array_interface__")

    def relu(self, x: Any, leak: int | float, out: Any) -> Any:
        return self._run("relu", x, leak, (out,), ("out",))[0]

    def relu_dash(self, x: Any, leak: int | float, out: Any) -> Any:
        return self._run("relu_dash", x, leak, (out,), ("out",))[0]

    def relu_and_dash(self, x: Any, leak: int | float, out: Any) -> tuple[Any, Any]:
        pair = _validate.out_pair(out) or (None, None)
        y, dy = self._run("relu_and_dash", x, leak, pair, ("out[0]", "out[1]"))
        return y, dy

    def _run(self, op: str, x: Any, leak: int | float, outs: tuple, names: tuple) -> list:
        x_info = _Interface(x)
        a, keeps_dtype = _validate.dtype_rule(np, x_info.dtype).resolve(leak)
        dtype = x_info.dtype if keeps_dtype else _FLOAT64
        if x_info.dtype not in _KERNEL_DTYPES:
            raise TypeError(f"x has dtype {x_info.dtype}, which the CUDA kernels do not support")
        given = [(out, name) for out, name in zip(outs, names) if out is not None]
        for out, name in given:
            self._check_out(out, x, x_info, dtype, name)
        _check_overlaps(x, x_info, given)
        outs = [self._allocate(x, x_info, dtype) if out is None else out for out in outs]
        if x_info.size == 0:
            return outs
        from . import _numba_cuda

        with self._device(x):
            device_id = x.device.id if _is_cupy(x) else _numba_cuda.current_device_id()
            stream = self._stream(x)
            leak_scalar = dtype.type(a)
            for arrays in _launch_views([x_info, *map(_Interface, outs)]):
                _numba_cuda.launch_raw(op, leak_scalar, arrays, stream, device_id)
        return outs

    @staticmethod
    def _allocate(x: Any, x_info: "_Interface", dtype: np.dtype) -> Any:
        """A new output in ``x``'s library, on its device, in its memory order."""
        if _is_cupy(x):
            import cupy

            with x.device:
                return cupy.empty_like(x, dtype=dtype)
        from numba import cuda

        return cuda.device_array(x_info.shape, dtype=dtype, order="F" if x_info.order == "F" else "C")

    @staticmethod
    def _check_out(out: Any, x: Any, x_info: "_Interface", dtype: np.dtype, name: str) -> None:
        _validate.out_array(
            out,
            name=name,
            expected_type=type(x),
            shape=x_info.shape,
            dtype=dtype,
            device=_device_id(x),
            device_of=_device_id,
        )
        if not _is_cupy(out) and _Interface(out).read_only:
            raise ValueError(f"{name} is read-only")

    @staticmethod
    def _device(x: Any) -> contextlib.AbstractContextManager:
        """Make ``x``'s device the current one while launching: CuPy's device context
        for CuPy arrays (cheap; Numba attaches to the same primary context), else
        Numba's current device."""
        if _is_cupy(x):
            return x.device
        return contextlib.nullcontext()

    def _stream(self, x: Any) -> Any:
        """The caller's current stream as a ``cuda.core`` stream, one per stream handle:
        CuPy's current stream for CuPy arrays, else the legacy default stream (0)."""
        if _is_cupy(x):
            import cupy

            key = (x.device.id, cupy.cuda.get_current_stream().ptr)
        else:
            key = (_device_id(x), 0)
        stream = self._streams.get(key)
        if stream is None:
            from cuda.core import Stream

            stream = self._streams[key] = Stream.from_handle(key[1])
        return stream


def _device_id(x: Any) -> int | None:
    device = getattr(x, "device", None)
    return getattr(device, "id", None)


class _Interface:
    """Pointer, shape, strides (in elements) and dtype of a device array: from CuPy's
    attributes for CuPy arrays, which is much faster, else from the interface."""

    def __init__(self, array: Any) -> None:
        if _is_cupy(array):
            self.pointer, self.shape = array.data.ptr, array.shape
            self.dtype, byte_strides = array.dtype, array.strides
            self.read_only = False
        else:
            cai = array.__cuda_array_interface__
            self.pointer, self.read_only = cai["data"]
            self.shape, self.dtype = tuple(cai["shape"]), np.dtype(cai["typestr"])
            byte_strides = cai.get("strides") or _c_strides(self.shape, self.dtype.itemsize)
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


def _check_overlaps(x: Any, x_info: _Interface, given: list[tuple[Any, str]]) -> None:
    """Outputs the caller passed may be ``x`` itself, but may not partly overlap it
    (the kernels read and write in parallel), nor each other."""
    if x_info.size == 0:
        return
    extents = []
    for out, name in given:
        info = _Interface(out)
        same = (info.pointer, info.shape, info.strides) == (x_info.pointer, x_info.shape, x_info.strides)
        if out is not x and not same and _intersect(info.extent(), x_info.extent()):
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
