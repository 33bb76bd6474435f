"""Compile the CUDA kernels to PTX for an H100 (sm_90) and count their global-memory
instructions: the check, without a GPU, that the quads kernels load and store with
vector instructions (``ld.global.v4.f32``) and the others do not.

Needs numba-cuda with NVVM (``pip install "numba-cuda[cu13]"``), not a GPU. Numba
asks the current device for its compute capability when it compiles a device
function; with no GPU this script answers (9, 0) for it.

    python benchmarks/ptx_check.py            # a markdown table
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections import Counter

CASES = [
    ("relu", "quads", "f4", "f4"),
    ("relu", "flat", "f4", "f4"),
    ("relu", "strided", "f4", "f4"),
    ("relu", "leaks", "f4", "f4"),
    ("relu_dash", "quads", "f2", "f2"),
    ("relu_and_dash", "quads", "f8", "f8"),
    ("relu", "quads", "i1", "f8"),
    ("relu_dash", "quads", "i1", "i1"),
]


def ptx(op: str, kind: str, in_dtype: str, out_dtype: str) -> str:
    import numpy as np
    from numba import cuda
    from numba.cuda import types as nb
    from numba.cuda.np.numpy_support import from_dtype

    from relukernels._backends import _numba_cuda

    ndim, layout = _numba_cuda.KIND_NDIM[kind], _numba_cuda._KIND_LAYOUT[kind]
    y = nb.Array(from_dtype(np.dtype(out_dtype)), ndim, layout)
    leak = y if kind == "leaks" else from_dtype(np.dtype(out_dtype))
    signature = (nb.Array(from_dtype(np.dtype(in_dtype)), ndim, layout), leak, y, y)
    code, _ = cuda.compile_ptx(_numba_cuda.KERNELS[op, kind].py_func, signature, cc=(9, 0))
    return code


def memory_instructions(code: str) -> Counter:
    """Loads and stores of data (not of kernel parameters), by PTX instruction."""
    found = re.findall(r"^\s*((?:ld|st)(?:\.global)?\.(?:v[24]\.)?[a-z]\d+)\s", code, re.MULTILINE)
    return Counter(name for name in found if ".param" not in name)


def main() -> int:
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)  # the real numba.cuda, compiled for no device
    from numba import cuda

    if not cuda.is_available():
        import numba.cuda.dispatcher

        numba.cuda.dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    print("| op | kernel | x → out | loads and stores in the PTX (count of each instruction) |")
    print("| --- | --- | --- | --- |")
    for op, kind, in_dtype, out_dtype in CASES:
        counts = memory_instructions(ptx(op, kind, in_dtype, out_dtype))
        listed = ", ".join(f"{name} × {count}" for name, count in sorted(counts.items()))
        print(f"| {op} | {kind} | {in_dtype} → {out_dtype} | {listed} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
