"""``@numba.cuda.jit`` kernels, compiled from the same formulas as the CPU loops.

Every kernel is a grid-stride loop with 64-bit indices. The flat kernels take 1-d
arrays (contiguous inputs and outputs in one memory order); the strided kernels take
4-d views of any strides, negative included, and unravel the flat index themselves.
``launch`` takes Numba device arrays, real or from the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), which is how the tests run these kernels without a GPU.
Importing this module imports ``numba.cuda``.
"""

from __future__ import annotations

from typing import Any, Callable

from numba import cuda

from .. import _scalar

STRIDED_NDIM = 4
"""Strided arrays are launched as views of this many dimensions."""

THREADS_PER_BLOCK = 256
BLOCKS_PER_SM = 32

_relu = cuda.jit(device=True)(_scalar.relu)
_relu_dash = cuda.jit(device=True)(_scalar.relu_dash)


@cuda.jit(device=True)
def _flat_index(i, shape):
    return i


@cuda.jit(device=True)
def _unravel_4d(i, shape):
    i3 = i % shape[3]
    rest = i // shape[3]
    i2 = rest % shape[2]
    rest = rest // shape[2]
    return rest // shape[1], rest % shape[1], i2, i3


def _kernels(index: Callable[..., Any]) -> dict[str, Any]:
    """The three kernels, each element reached through ``index(i, shape)``."""

    @cuda.jit
    def relu(x, a, y):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            at = index(i, x.shape)
            y[at] = _relu(x[at], a)

    @cuda.jit
    def relu_dash(x, a, y):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            at = index(i, x.shape)
            y[at] = _relu_dash(x[at], a)

    @cuda.jit
    def relu_and_dash(x, a, y, dy):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            at = index(i, x.shape)
            value = x[at]
            y[at] = _relu(value, a)
            dy[at] = _relu_dash(value, a)

    return {"relu": relu, "relu_dash": relu_dash, "relu_and_dash": relu_and_dash}


FLAT_KERNELS = _kernels(_flat_index)
STRIDED_KERNELS = _kernels(_unravel_4d)

_multiprocessors: dict[int, int] = {}


def _blocks(size: int) -> int:
    device = cuda.get_current_device()
    device_id = getattr(device, "id", 0)  # the simulator's device has no id
    sms = _multiprocessors.get(device_id)
    if sms is None:
        sms = _multiprocessors[device_id] = getattr(device, "MULTIPROCESSOR_COUNT", 1)
    return max(1, min(-(-size // THREADS_PER_BLOCK), sms * BLOCKS_PER_SM))


def launch(op: str, x: Any, a: Any, outs: tuple[Any, ...], stream: Any = 0) -> None:
    """Run ``op`` over device array ``x`` into ``outs`` on ``stream``.

    The arrays are 1-d (flat kernels) or ``STRIDED_NDIM``-d (strided kernels), all of
    one shape; ``a`` is the leak as a scalar of the output dtype.
    """
    if x.size == 0:
        return
    kernels = FLAT_KERNELS if x.ndim == 1 else STRIDED_KERNELS
    kernels[op][_blocks(x.size), THREADS_PER_BLOCK, stream](x, a, *outs)
