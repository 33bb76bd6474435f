"""Dask arrays: lazily, chunk by chunk, on whichever kernels the chunks call for.

Each chunk goes through the public functions, so NumPy chunks run the CPU kernels
and CuPy chunks the CUDA kernels, on any scheduler (threads, processes, a
``dask.distributed`` cluster). Everything goes through ``map_blocks``, so the graphs
are blockwise layers that fuse with their neighbours. ``relu_and_dash`` maps each
chunk to the pair of results once and picks each result out of it: computed
together, they read each chunk once. An array leak is rechunked to line up with
``x``'s chunks. Dask arrays are immutable, so ``out=`` is refused.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

import relukernels

from .. import _validate
from .._ops import Operation


class DaskBackend:
    """``dask.array.Array``."""

    name = "dask"

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        if any(out is not None for out in outs):
            raise TypeError("out= is not supported for Dask arrays, which are immutable; use the result")
        import dask.array as da

        leak = _validate.leak(leak)
        function = getattr(relukernels, op.name)
        leak_is_array = _validate.is_array_leak(leak)
        if leak_is_array:
            leak = _aligned_leak(da, x, leak)
        metas = _as_list(function(x._meta, leak._meta if leak_is_array else leak))
        if op.nout == 1:
            return [da.map_blocks(function, x, leak, dtype=metas[0].dtype, meta=metas[0])]
        both = da.map_blocks(function, x, leak, dtype=metas[0].dtype, meta=metas[0])  # blocks are tuples
        return [
            both.map_blocks(operator.itemgetter(i), dtype=meta.dtype, meta=meta)
            for i, meta in enumerate(metas)
        ]

    def backward(self, grad: Any, x: Any, leak: Any, out: Any) -> Any:
        """``relu_backward`` chunk by chunk, ``grad`` rechunked to ``x``'s chunks."""
        if out is not None:
            raise TypeError("out= is not supported for Dask arrays, which are immutable; use the result")
        import dask.array as da

        leak = _validate.leak(leak)
        if _known(grad.shape) and _known(x.shape):
            _validate.grad_shape(grad.shape, x.shape)
            grad = da.broadcast_to(grad, x.shape).rechunk(x.chunks)
        elif grad.numblocks != x.numblocks:  # the kernels check each pair of chunks
            raise ValueError("grad and x have chunks of unknown sizes in different numbers; compute their chunk sizes")
        if _validate.is_array_leak(leak):
            leak = _aligned_leak(da, x, leak)
        meta = relukernels.relu_backward(grad._meta, x._meta, leak._meta if _validate.is_array_leak(leak) else leak)
        return da.map_blocks(relukernels.relu_backward, grad, x, leak, dtype=meta.dtype, meta=meta)


def _known(shape: tuple) -> bool:
    """Whether every size in ``shape`` is known (Dask uses NaN for sizes it does not know)."""
    return not any(math.isnan(n) for n in shape)


def _as_list(results: Any) -> list:
    return list(results) if isinstance(results, tuple) else [results]


def _aligned_leak(da: Any, x: Any, leak: Any) -> Any:
    """``leak`` as a Dask array whose chunks line up with ``x``'s, checked to broadcast
    to ``x``'s shape. A NumPy leak's values are checked now; a Dask leak's chunk by
    chunk, by the kernels, when the result is computed."""
    if isinstance(leak, np.ndarray):  # its values are known: check them now
        _validate.array_leak(np, leak, x.shape, x.dtype)
    leak = da.asarray(leak)
    _validate.broadcast_leak(leak.shape, x.shape)
    chunks = tuple((1,) if n == 1 else c for n, c in zip(leak.shape, x.chunks[x.ndim - leak.ndim :], strict=True))
    return leak.rechunk(chunks)
