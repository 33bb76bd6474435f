"""The element formulas, and the CPU loops that Numba compiles from them.

Every compiled backend computes these formulas: the loops and ufunc inner loops here
(compiled by ``relukernels._backends.numpy`` and ``relukernels.ufuncs``) and the CUDA
kernels (``relukernels._backends._numba_cuda``). The loops are written here, next to
the formulas, because Numba's disk cache checks only the file of the function it
compiled: an edit to a formula in this file recompiles every cached loop.

``x <= 0`` is written so that no comparison ever sees a NaN: an ordered comparison
with NaN raises the floating-point 'invalid' flag inside SIMD loops, which NumPy
reports as a RuntimeWarning after a ufunc. ``x == 0`` and ``x == x`` are quiet
comparisons, and ``copysign(1.0, x)`` is never NaN. The conditions are combined with
``&`` and ``|``, not ``and`` and ``or``, so that they compile to selects, without
branches.

Each loop template takes the element formulas of one operation and returns a plain
Python function for Numba to compile; what it closes over (the formulas, ``range``
or ``prange``) goes into Numba's cache key, so each operation's loops are cached apart.
Importing this module imports Numba.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from numba import carray, prange, types
from numba.extending import overload, register_jitable


@register_jitable
def relu(x, a):
    """``a * x`` where ``x <= 0``, else ``x``; NaN passes through.

    With ``a == 0`` the product is ``0 * 0``, an exact zero, so ``relu(-inf) == 0``
    where ``0 * -inf`` would be NaN (and raise the 'invalid' flag).
    """
    scaled = a * (x if a != 0 else a)
    return scaled if (x == 0) | ((math.copysign(1.0, x) < 0) & (x == x)) else x


@register_jitable
def relu_dash(x, a):
    """``a`` where ``x <= 0``, else 1 (NaN gives 1, as the tutorial's ``np.where`` does)."""
    return a if (x == 0) | ((math.copysign(1.0, x) < 0) & (x == x)) else 1


@register_jitable
def relu_backward(g, x, a):
    """``g * relu_dash(x, a)`` in one step: ``g * a`` where ``x <= 0``, else ``g``
    (``g * 1`` is ``g``, bit for bit, but for a signalling NaN, which stays signalling:
    the contract asks only that NaN propagates)."""
    return g * a if (x == 0) | ((math.copysign(1.0, x) < 0) & (x == x)) else g


ELEMENTS: dict[str, Callable[..., Any]] = {f.__name__: f for f in (relu, relu_dash, relu_backward)}
"""The element formulas by name, as ``relukernels._ops`` names them."""


def row_leak(leaks, r):
    """The leak of row ``r`` in a rows loop: ``leaks`` itself, a number for every row,
    or ``leaks[r]``, one per row (compiled by the ``overload`` below)."""


@overload(row_leak)
def _row_leak(leaks, r):
    if isinstance(leaks, types.Array):
        return lambda leaks, r: leaks[r]
    return lambda leaks, r: leaks


def rows_loop(elements: tuple[Callable[..., Any], ...], inputs: int, parallel: bool) -> Callable[..., None]:
    """A loop over 1-d contiguous arrays seen as rows of ``width`` elements (the last
    row may be shorter), each row with its leak (``row_leak``): ``loop(x, y, leaks,
    width)`` for one element formula, ``loop(x, y, dy, leaks, width)`` for two (each
    element read once: ``y`` may be ``x``), or ``loop(grad, x, y, leaks, width)`` for
    a formula of two inputs. Over the rows with ``prange`` when ``parallel``, for
    Numba's parallel compiler; each row is a loop from 0 over slices, so that Numba
    needs no negative-index check and LLVM vectorizes it."""
    each = prange if parallel else range
    if inputs == 2:
        (element,) = elements

        def two_inputs(g, x, y, leaks, width):
            n = x.shape[0]
            for r in each((n + width - 1) // width):
                a = row_leak(leaks, r)
                start, stop = r * width, min(n, (r + 1) * width)
                gs, xs, ys = g[start:stop], x[start:stop], y[start:stop]
                for i in range(xs.shape[0]):
                    ys[i] = element(gs[i], xs[i], a)

        return two_inputs
    if len(elements) == 2:
        first, second = elements

        def two_outputs(x, y, dy, leaks, width):
            n = x.shape[0]
            for r in each((n + width - 1) // width):
                a = row_leak(leaks, r)
                start, stop = r * width, min(n, (r + 1) * width)
                xs, ys, dys = x[start:stop], y[start:stop], dy[start:stop]
                for i in range(xs.shape[0]):
                    v = xs[i]
                    ys[i] = first(v, a)
                    dys[i] = second(v, a)

        return two_outputs
    (element,) = elements

    def one_output(x, y, leaks, width):
        n = x.shape[0]
        for r in each((n + width - 1) // width):
            a = row_leak(leaks, r)
            start, stop = r * width, min(n, (r + 1) * width)
            xs, ys = x[start:stop], y[start:stop]
            for i in range(xs.shape[0]):
                ys[i] = element(xs[i], a)

    return one_output


def ufunc_loop(element: Callable[..., Any], inputs: int) -> Callable[..., None]:
    """A NumPy ufunc inner loop ``loop(args, dims, steps, data)`` for an element formula
    of ``inputs`` arrays and the leak, all of one dtype (``args`` typed as pointers to
    it), for ``numba.cfunc``.

    NumPy passes a scalar leak with a step of 0. Numba's own ufunc loop runs its
    generic strided loop whenever a step is not the item size, which does not
    vectorize; here a step-0 leak is read once, so that the loop over contiguous
    ``x`` and output vectorizes (LLVM checks at run time that the element steps are 1).
    Steps are whole elements: NumPy hands inner loops aligned data.
    """
    if inputs == 2:

        def two_inputs(args, dims, steps, data):
            g, x, a, y = args[0], args[1], args[2], args[3]
            size = carray(x, 1).itemsize
            n, sg, sx, sa, sy = dims[0], steps[0] // size, steps[1] // size, steps[2] // size, steps[3] // size
            if sa == 0:
                leak = a[0]
                for i in range(n):
                    y[i * sy] = element(g[i * sg], x[i * sx], leak)
            else:
                for i in range(n):
                    y[i * sy] = element(g[i * sg], x[i * sx], a[i * sa])

        return two_inputs

    def one_input(args, dims, steps, data):
        x, a, y = args[0], args[1], args[2]
        size = carray(x, 1).itemsize
        n, sx, sa, sy = dims[0], steps[0] // size, steps[1] // size, steps[2] // size
        if sa == 0:
            leak = a[0]
            for i in range(n):
                y[i * sy] = element(x[i * sx], leak)
        else:
            for i in range(n):
                y[i * sy] = element(x[i * sx], a[i * sa])

    return one_input


def relu_and_dash(x, a, y, dy):
    """``relu`` and ``relu_dash`` of one element, for ``numba.guvectorize`` with the
    layout ``(),()->(),()`` (two outputs)."""
    y[0] = relu(x, a)
    dy[0] = relu_dash(x, a)


_disk_cache_usable = True
"""False once Numba could not use its disk cache: the process compiles in memory."""


def compiled(decorator: Callable[..., Any], func: Callable[..., Any]) -> Any:
    """``decorator(cache=True)(func)``: compiled, or loaded from Numba's disk cache; in
    memory where no cache directory can be written, from then on for the whole
    process, with one warning.

    Numba looks for the package's ``__pycache__``, then a user-wide cache directory.
    Where neither can be written it raises ``RuntimeError`` ("cannot cache"), or for a
    zipped package ``OSError`` while reading or writing the cache.
    """
    global _disk_cache_usable
    if _disk_cache_usable:
        try:
            return decorator(cache=True)(func)
        except (OSError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and "cannot cache" not in str(error):
                raise
            _disk_cache_usable = False
            warnings.warn(
                f"relukernels: Numba cannot use its on-disk cache ({error}); compiling in memory for this process",
                RuntimeWarning,
                stacklevel=2,
            )
    return decorator(cache=False)(func)
