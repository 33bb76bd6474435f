"""Compile the CUDA kernels to PTX for an H100 (sm_90), as the launcher compiles them,
and check two things without a GPU:

1. The loads and stores: the quads kernels load and store with vector instructions
   (``ld.global.v4.f32``; ``v2`` pairs for 8-byte elements) and the others do not.
2. The parameters: every kernel's PTX parameter list has the sizes and kinds
   (floating point or integer), in order, of what the launcher packs for it
   (``_numba_cuda.kernel_arguments``), so the pointers, extents, strides and leak land
   where the compiled code reads them. Both follow the kernel's parameter names
   (``_numba_cuda.parameter_order``); this checks that Numba compiles them as packed.
3. The link: each of those kernels but the float16 ones links into a cubin as the
   launcher links it (nvJitLink; float16 kernels need NVRTC, which needs a driver).

Needs numba-cuda with NVVM (``pip install "numba-cuda[cu13]"``), not a GPU. Numba
asks the current device for its compute capability when it compiles a device
function; with no GPU this script answers (9, 0) for it. Exits 1 when a check
fails, 77 when NVVM, NVRTC or nvJitLink is missing; tests/test_cuda_kernels.py runs it.

    python benchmarks/ptx_check.py            # a markdown table, then the checks
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import types
from collections import Counter

CC = (9, 0)
CASES = [
    ("relu", "quads", "f4", "f4"),
    ("relu", "flat", "f4", "f4"),
    ("relu", "strided", "f4", "f4"),
    ("relu", "leaks", "f4", "f4"),
    ("relu_dash", "quads", "f2", "f2"),
    ("relu_and_dash", "quads", "f8", "f8"),
    ("relu", "quads", "i1", "f8"),
    ("relu_dash", "quads", "i1", "i1"),
    ("relu_backward", "quads", "f4", "f4"),
    ("relu_backward", "flat", "f4", "f4"),
]
"""(operation, kernel, x's dtype, the output's) for the table; relu_backward's grad
has x's dtype."""

PARAMETER_DTYPES = ["f2", "f4", "f8", "i1", "u8"]
"""Output dtypes whose parameter lists are checked for every kernel (the leak's size
differs between them)."""

_PARAMETER_BYTES = {"8": 1, "16": 2, "32": 4, "64": 8}


def dtypes(op: str, in_dtype: str, out_dtype: str) -> tuple:
    """The dtypes ``_numba_cuda.signature`` takes: each input's, then the output's."""
    import numpy as np

    from relukernels._backends import _numba_cuda

    inputs = len(_numba_cuda.KERNEL_OPERATIONS[op].inputs)
    return (np.dtype(in_dtype),) * inputs + (np.dtype(out_dtype),)


def memory_instructions(code: str) -> Counter:
    """Loads and stores of data (not of kernel parameters), by PTX instruction."""
    found = re.findall(r"^\s*((?:ld|st)(?:\.global)?\.(?:v[24]\.)?[a-z]\d+)\s", code, re.MULTILINE)
    return Counter(name for name in found if ".param" not in name)


def vector_problem(kind: str, counts: Counter) -> str | None:
    """What is wrong with a kernel's loads and stores, if anything."""
    vectors = {name for name in counts if re.search(r"\.v[24]\.", name)}
    if kind == "quads":
        missing = [access for access in ("ld.global", "st.global") if not any(v.startswith(access) for v in vectors)]
        return f"no vector {' or '.join(missing)}" if missing else None
    return f"vector accesses {sorted(vectors)}" if vectors else None


def parameter_types(code: str) -> list[tuple[str, int]]:
    """The kind ("float" or "int": PTX's f, or u, s and b) and size in bytes of each
    parameter of the one kernel in ``code``."""
    [parameters] = re.findall(r"\.entry\s+[^\s(]+\s*\((.*?)\)", code, re.DOTALL)
    return [("float" if kind == "f" else "int", _PARAMETER_BYTES[bits])
            for kind, bits in re.findall(r"\.param\s+\.([a-z])(\d+)\s", parameters)]


def packed_types(op: str, kind: str, out_dtype: str) -> list[tuple[str, int]]:
    """The kind and size of what the launcher packs for ``op``'s ``kind`` kernel (a
    float16 leak goes as its bits, an integer)."""
    import numpy as np

    from relukernels._backends import _numba_cuda

    ndim = _numba_cuda.KIND_NDIM[kind]
    dtype = np.dtype(out_dtype)
    array = _numba_cuda.RawArray(0, (3,) * ndim, (dtype.itemsize,) * ndim, dtype)
    count = len(_numba_cuda.KERNEL_OPERATIONS[op].inputs) + _numba_cuda.KERNEL_OPERATIONS[op].nout
    leak = (1 << 20, array) if kind == "leaks" else dtype.type(0.5 if dtype.kind == "f" else 2)
    arguments = _numba_cuda.kernel_arguments(op, kind, leak, [1 << 20] * count, (array,) * count)
    kinds = ["float" if isinstance(argument, (ctypes.c_float, ctypes.c_double)) else "int" for argument in arguments]
    return list(zip(kinds, _numba_cuda.argument_sizes(arguments), strict=True))


def _missing_toolchain() -> str | None:
    """The first of NVVM, NVRTC and nvJitLink (compile, float16 headers, link) that
    cannot be loaded, or None. A CUDA toolkit may ship NVVM without NVRTC."""
    try:
        from cuda.pathfinder import DynamicLibNotFoundError, load_nvidia_dynamic_lib
    except ImportError:
        return "cuda.pathfinder"
    for library in ("nvvm", "nvrtc", "nvJitLink"):
        try:
            load_nvidia_dynamic_lib(library)
        except DynamicLibNotFoundError:
            return library
    return None


def main() -> int:
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)  # the real numba.cuda, compiled for no device
    from numba import cuda

    if not cuda.is_available():  # the one place where this check reaches into Numba
        import numba.cuda.dispatcher

        numba.cuda.dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=CC)
    from relukernels._backends import _numba_cuda

    missing = _missing_toolchain()
    if missing:
        print(f"{missing} is not available: pip install 'numba-cuda[cu13]'")
        return 77
    problems = []
    print("| op | kernel | x → out | loads and stores in the PTX (count of each instruction) |")
    print("| --- | --- | --- | --- |")
    for op, kind, in_dtype, out_dtype in CASES:
        counts = memory_instructions(_numba_cuda.kernel_ptx(op, kind, dtypes(op, in_dtype, out_dtype), CC))
        listed = ", ".join(f"{name} × {count}" for name, count in sorted(counts.items()))
        print(f"| {op} | {kind} | {in_dtype} → {out_dtype} | {listed} |", flush=True)
        problem = vector_problem(kind, counts)
        if problem:
            problems.append(f"{op} {kind} {in_dtype} → {out_dtype}: {problem}")
    checked = linked = 0
    for op, kind in _numba_cuda.KERNELS:
        for dtype in PARAMETER_DTYPES:
            code = _numba_cuda.kernel_ptx(op, kind, dtypes(op, dtype, dtype), CC)
            compiled, packed = parameter_types(code), packed_types(op, kind, dtype)
            if compiled != packed:
                problems.append(f"{op} {kind} {dtype}: the PTX takes parameters {compiled} (kind, bytes), "
                                f"the launcher packs {packed}")
            checked += 1
            if dtype != "f2":
                try:
                    _numba_cuda.link([code], CC)
                except Exception as error:  # noqa: BLE001 - the linker's errors, reported as a failed check
                    problems.append(f"{op} {kind} {dtype}: does not link: {error}")
                linked += 1
    print(f"\nparameters: {checked} kernels checked against the launcher's packing (kinds and sizes); "
          f"{linked} linked to cubins")
    for problem in problems:
        print(f"FAIL {problem}")
    print("all checks pass" if not problems else f"{len(problems)} checks fail")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
