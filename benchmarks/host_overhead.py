"""The CUDA backend's own Python per call, measurable without a GPU.

``rk.relu(x, 0.1, out=y)`` on 1,024 float32 elements of host memory behind
``__cuda_array_interface__``, with only the calls that need a driver replaced by
no-ops: ``cuda.core.launch``, the compiled-kernel lookup, the context check and the
device and stream queries. What is left is everything relukernels does in Python
around a launch (checks, layouts, launch plan, kernel arguments). On a GPU,
``benchmarks/gpu_check.py`` measures the whole call and each layer of it.

    python benchmarks/host_overhead.py
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any


class HostArray:
    """A NumPy array seen through ``__cuda_array_interface__``."""

    def __init__(self, array: Any) -> None:
        self.shape = array.shape
        self.__cuda_array_interface__ = {"shape": array.shape, "typestr": array.dtype.str,
                                         "data": (array.ctypes.data, False), "strides": None, "version": 3}


def main() -> None:
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)  # the real numba.cuda, compiled for no device
    import cuda.core
    import numpy as np

    import relukernels as rk
    from relukernels._backends import _numba_cuda

    _numba_cuda.current_device_id = lambda: 0
    _numba_cuda.stream_for = lambda device_id, handle: None
    _numba_cuda._compiled_kernel = lambda *signature: None
    _numba_cuda._ensure_context = lambda device_id: None
    _numba_cuda.pointer_device_id = lambda pointer: 0
    _numba_cuda.device_context = lambda device_id: contextlib.nullcontext()
    _numba_cuda._multiprocessors[0] = 132
    cuda.core.launch = lambda *arguments: None
    x, y = HostArray(np.ones(1024, np.float32)), HostArray(np.empty(1024, np.float32))
    calls = 20_000
    for _ in range(1_000):
        rk.relu(x, 0.1, out=y)
    samples = []
    for _ in range(9):
        start = time.perf_counter()
        for _ in range(calls):
            rk.relu(x, 0.1, out=y)
        samples.append((time.perf_counter() - start) / calls * 1e6)
    print(f"rk.relu(x, 0.1, out=y), driver calls stubbed: {sorted(samples)[4]:.1f} µs "
          f"(median of 9 batches of {calls:,} calls)")


if __name__ == "__main__":
    main()
