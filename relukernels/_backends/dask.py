"""Dask arrays: lazily, chunk by chunk, on whichever kernels the chunks call for.

Each chunk goes through the public functions, so NumPy chunks run the CPU loops and
CuPy chunks the CUDA kernels, on any scheduler (threads, processes, a
``dask.distributed`` cluster). ``relu_and_dash`` makes one task per chunk that returns
both results, and two arrays that pick them out: computed together, they read each
chunk once. Dask arrays are immutable, so ``out=`` is refused.
"""

from __future__ import annotations

import operator
import sys
from typing import Any

import numpy as np

import relukernels


class DaskBackend:
    """``dask.array.Array``."""

    name = "dask"

    def accepts(self, x: Any) -> bool:
        array = sys.modules.get("dask.array")
        return array is not None and isinstance(x, array.Array)

    def relu(self, x: Any, leak: int | float, out: Any) -> Any:
        _refuse_out(out)
        meta = relukernels.relu(x._meta, leak)
        return x.map_blocks(relukernels.relu, leak, dtype=meta.dtype, meta=meta)

    def relu_dash(self, x: Any, leak: int | float, out: Any) -> Any:
        _refuse_out(out)
        meta = relukernels.relu_dash(x._meta, leak)
        return x.map_blocks(relukernels.relu_dash, leak, dtype=meta.dtype, meta=meta)

    def relu_and_dash(self, x: Any, leak: int | float, out: Any) -> tuple[Any, Any]:
        _refuse_out(out)
        import dask.array as da
        from dask.base import tokenize
        from dask.highlevelgraph import HighLevelGraph

        y_meta, dy_meta = relukernels.relu_and_dash(x._meta, leak)
        both = "relu-and-dash-" + tokenize(x, leak)
        tasks = {
            (both, *index): (relukernels.relu_and_dash, (x.name, *index), leak)
            for index in np.ndindex(*x.numblocks)
        }
        graph = HighLevelGraph.from_collections(both, tasks, dependencies=[x])
        results = []
        for position, meta in enumerate((y_meta, dy_meta)):
            name = f"{('relu', 'relu-dash')[position]}-of-{both}"
            picks = {
                (name, *index): (operator.getitem, (both, *index), position)
                for index in np.ndindex(*x.numblocks)
            }
            layers = HighLevelGraph({**graph.layers, name: picks}, {**graph.dependencies, name: {both}})
            results.append(da.Array(layers, name, x.chunks, meta=meta))
        return results[0], results[1]


def _refuse_out(out: Any) -> None:
    if out is not None:
        raise TypeError("out= is not supported for Dask arrays, which are immutable; use the result")
