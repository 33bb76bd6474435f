"""asv suite: relukernels against the tutorial's formula, NumPy and its peers.

Parameterised over backend x operation x size x dtype; ``relu_backward`` is
``grad * relu_dash(x)``, against the seed's ``grad * np.where(...)`` and PyTorch's
``leaky_relu_backward`` (which differs from the contract only at NaN). Each case is timed allocating
its result and writing into a preallocated ``out`` (``time_*_out``; in-place calls with
``out=x`` run the same kernels over the same bytes, and repeating them would drive a
leaky ReLU's negative inputs into subnormals). ``track_*`` reports throughput, the copy
limit and the ratio to it, measured side by side in the same process (interleaved
rounds, medians), so the dashboard shows the
distance to the hardware limit. On the CPU the limit is the fastest of ``np.copyto``
and a compiled copy loop, in one thread and in one per core
(``relukernels._bench.copy_limit_cases``); on a GPU it is a device-to-device copy.
``track_call_peak_bytes`` is the growth of the process's peak resident memory during
one allocating call: setup, imports and compilation come before the peak is reset.

Backends this machine lacks are skipped without starting a process
(``skip_for_params``), and nothing here touches CUDA at import: a GPU backend needs its
library installed and an NVIDIA device node, and is imported in ``setup``. Run GPU
benchmarks with ``launch_method: spawn`` (asv's forkserver breaks CUDA).
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import itertools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from asv_runner.benchmarks.mark import skip_for_params

LEAK = 0.1
OPS = ["relu", "relu_dash", "relu_and_dash", "relu_backward"]
SIZES = [1_000, 100_000, 10_000_000]
DTYPES = ["float32", "float64"]

_HAS_GPU = os.path.exists("/dev/nvidiactl")
_HAS = {name: importlib.util.find_spec(name) is not None for name in ("torch", "cupy")}
AVAILABLE = {
    "seed np.where": True,
    "numpy maximum": True,
    "rk numpy": True,
    "torch cpu": _HAS["torch"],
    "rk cupy": _HAS["cupy"] and _HAS_GPU,
    "cupy formula": _HAS["cupy"] and _HAS_GPU,
    "torch cuda": _HAS["torch"] and _HAS_GPU,
}
BACKENDS = list(AVAILABLE)
ON_GPU = {"rk cupy", "cupy formula", "torch cuda"}
ONLY_RELU = {"numpy maximum"}  # np.maximum(x, leak * x) has no derivative form
ON_HOST = [backend for backend in BACKENDS if backend not in ON_GPU]


def _skipped(*rest: list) -> list[tuple]:
    """Every parameter tuple whose backend is missing here or cannot do the operation."""
    return [
        (backend, op, *others)
        for backend, op, *others in itertools.product(BACKENDS, OPS, *rest)
        if not AVAILABLE[backend] or (backend in ONLY_RELU and op != "relu")
    ]


class _Arrays:
    """Input and output arrays of one backend (``grad`` for ``relu_backward``), and the
    call for each operation."""

    def __init__(self, backend: str, size: int, dtype: str) -> None:
        host, host_grad = np.random.default_rng(0).standard_normal((2, size)).astype(dtype)
        self.backend, self.nbytes, self.sync = backend, host.nbytes, (lambda: None)
        if backend in ("rk cupy", "cupy formula"):
            import cupy

            self.x, self.grad = cupy.asarray(host), cupy.asarray(host_grad)
            self.y, self.dy = cupy.empty_like(self.x), cupy.empty_like(self.x)
            self.sync = cupy.cuda.get_current_stream().synchronize
            self.device_copy = lambda: self.y.data.copy_from_device_async(self.x.data, self.nbytes)
        elif backend in ("torch cpu", "torch cuda"):
            import torch

            device = "cuda" if backend == "torch cuda" else "cpu"
            self.x, self.grad = torch.from_numpy(host).to(device), torch.from_numpy(host_grad).to(device)
            self.y, self.dy = torch.empty_like(self.x), torch.empty_like(self.x)
            if backend == "torch cuda":
                self.sync = torch.cuda.synchronize
                self.device_copy = lambda: self.y.copy_(self.x)
        else:
            self.x, self.grad = host, host_grad
            self.y, self.dy = np.empty_like(host), np.empty_like(host)

    def copies(self) -> list[Callable[[], Any]]:
        """The candidates for the copy limit of ``x`` into ``y``: a device-to-device
        copy on a GPU; on the CPU ``relukernels._bench.copy_limit_cases``."""
        if self.backend in ON_GPU:
            return [self.device_copy]
        from relukernels._bench import copy_limit_cases

        host = [a.numpy() if hasattr(a, "numpy") else a for a in (self.x, self.y)]
        return [case.run for case in copy_limit_cases(*host)]

    def call(self, op: str, out: bool) -> Callable[[], Any]:
        """A function that runs ``op`` once (into ``y``/``dy`` when ``out``) and waits."""
        x, grad, y, dy, sync = self.x, self.grad, self.y, self.dy, self.sync
        if self.backend in ("rk numpy", "rk cupy"):
            import relukernels as rk

            target = {"relu_and_dash": (y, dy)}.get(op, y) if out else None
            if op == "relu_backward":
                return lambda: (rk.relu_backward(grad, x, LEAK, out=target), sync())
            function = getattr(rk, op)
            return lambda: (function(x, LEAK, out=target), sync())
        if self.backend == "numpy maximum":
            return lambda: np.maximum(x, LEAK * x, out=y if out else None)
        if self.backend in ("seed np.where", "cupy formula"):
            xp = np if self.backend == "seed np.where" else __import__("cupy")
            formulas = {
                "relu": lambda: xp.where(x <= 0, LEAK * x, x),
                "relu_dash": lambda: xp.where(x <= 0, LEAK, 1),
                "relu_and_dash": lambda: (xp.where(x <= 0, LEAK * x, x), xp.where(x <= 0, LEAK, 1)),
                "relu_backward": lambda: grad * xp.where(x <= 0, LEAK, 1),
            }
            return lambda: (formulas[op](), sync())
        import torch
        import torch.nn.functional as F

        one, leak = torch.ones((), dtype=x.dtype, device=x.device), torch.full((), LEAK, dtype=x.dtype, device=x.device)
        formulas = {
            "relu": lambda: torch._C._nn.leaky_relu(x, LEAK, out=y) if out else F.leaky_relu(x, LEAK),
            "relu_dash": lambda: torch.where(x <= 0, leak, one, out=y) if out else torch.where(x <= 0, leak, one),
            "relu_and_dash": lambda: (
                torch._C._nn.leaky_relu(x, LEAK, out=y) if out else F.leaky_relu(x, LEAK),
                torch.where(x <= 0, leak, one, out=dy) if out else torch.where(x <= 0, leak, one),
            ),
            "relu_backward": lambda: (
                torch.ops.aten.leaky_relu_backward.grad_input(grad, x, LEAK, False, grad_input=y)
                if out else torch.ops.aten.leaky_relu_backward(grad, x, LEAK, False)
            ),
        }
        return lambda: (formulas[op](), sync())

    def bytes_moved(self, op: str) -> int:
        """Bytes read plus written by one call of ``op``."""
        return self.nbytes * (3 if op in ("relu_and_dash", "relu_backward") else 2)


class Activation:
    """Time per call: allocating, and into a preallocated ``out``."""

    params = (BACKENDS, OPS, SIZES, DTYPES)
    param_names = ["backend", "op", "size", "dtype"]
    timeout = 300
    repeat = (3, 5, 2.0)  # at least 3 samples, at most 5 or 2 s: the suite stays minutes long
    warmup_time = 0.1

    def setup(self, backend: str, op: str, size: int, dtype: str) -> None:
        self.arrays = _Arrays(backend, size, dtype)
        self.allocating, self.into_out = self.arrays.call(op, False), self.arrays.call(op, True)
        self.allocating()
        self.into_out()

    @skip_for_params(_skipped(SIZES, DTYPES))
    def time_call(self, backend: str, op: str, size: int, dtype: str) -> None:
        self.allocating()

    @skip_for_params(_skipped(SIZES, DTYPES))
    def time_call_out(self, backend: str, op: str, size: int, dtype: str) -> None:
        self.into_out()


class Throughput:
    """GB/s (bytes read + written), the copy limit on the same memory and the ratio of
    the two, per backend."""

    params = (BACKENDS, OPS, [10_000_000])
    param_names = ["backend", "op", "size"]
    timeout = 300

    def setup(self, backend: str, op: str, size: int) -> None:
        from relukernels._bench import Case, measure

        self.arrays = _Arrays(backend, size, "float32")
        sync = self.arrays.sync
        operation = Case("operation", self.arrays.call(op, True), self.arrays.bytes_moved(op))
        copies = [Case(f"copy {number}", lambda copy=copy: (copy(), sync()), 2 * self.arrays.nbytes)
                  for number, copy in enumerate(self.arrays.copies())]
        measure([operation, *copies], rounds=15)  # interleaved: a busy moment slows all alike
        self.op_time = float(np.median(operation.times))
        self.copy_time = min(float(np.median(copy.times)) for copy in copies)

    @skip_for_params(_skipped([10_000_000]))
    def track_gb_per_s(self, backend: str, op: str, size: int) -> float:
        return self.arrays.bytes_moved(op) / self.op_time / 1e9

    track_gb_per_s.unit = "GB/s"

    @skip_for_params(_skipped([10_000_000]))
    def track_copy_limit_gb_per_s(self, backend: str, op: str, size: int) -> float:
        return 2 * self.arrays.nbytes / self.copy_time / 1e9

    track_copy_limit_gb_per_s.unit = "GB/s"

    @skip_for_params(_skipped([10_000_000]))
    def track_ratio_to_copy(self, backend: str, op: str, size: int) -> float:
        copy_rate = 2 * self.arrays.nbytes / self.copy_time
        return self.arrays.bytes_moved(op) / self.op_time / copy_rate

    track_ratio_to_copy.unit = "fraction of the copy limit"


class Memory:
    """Peak host memory of one allocating call (the seed's temporaries show), on the
    backends whose arrays live in host memory."""

    params = (ON_HOST, OPS)
    param_names = ["backend", "op"]

    def setup(self, backend: str, op: str) -> None:
        self.arrays = _Arrays(backend, 10_000_000, "float32")
        self.run = self.arrays.call(op, False)
        self.run()  # imports, compilation, thread pools: before the measurement

    @skip_for_params([(b, o) for b, o in _skipped() if b in ON_HOST])
    def track_call_peak_bytes(self, backend: str, op: str) -> int:
        return call_peak_bytes(self.run)

    track_call_peak_bytes.unit = "bytes"


def call_peak_bytes(function: Callable[[], Any]) -> int:
    """How far one call of ``function`` raises the process's peak resident memory
    above what it holds before the call (Linux: the peak is reset through
    ``/proc/self/clear_refs``, freed heap memory returned first with ``malloc_trim``)."""
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # peak RSS := current RSS
    before = _status_bytes("VmRSS")
    function()
    return _status_bytes("VmHWM") - before


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024
