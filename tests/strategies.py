"""Hypothesis strategies: arrays of every dtype, shape and stride the contract names,
and leaks that each dtype accepts."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT_DTYPES = [np.dtype(c) for c in ("f2", "f4", "f8")]
INTEGER_DTYPES = [np.dtype(c) for c in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")]
REAL_DTYPES = FLOAT_DTYPES + INTEGER_DTYPES + [np.dtype(np.longdouble)]


@dataclass(frozen=True)
class Layout:
    """How to see a contiguous base array: C order, Fortran order, with steps
    (negative too) or transposed. ``view`` works for NumPy and CuPy alike."""

    shape: tuple[int, ...]
    steps: tuple[int, ...]
    kind: str
    permutation: tuple[int, ...]

    def view(self, xp: ModuleType, base: Any) -> Any:
        if self.kind == "F":
            return xp.asfortranarray(base[(*(slice(None, n) for n in self.shape), ...)])
        view = base[(*(slice(None, None, s) for s in self.steps), ...)]  # `...` keeps 0-d an array
        if self.kind == "C":
            return xp.ascontiguousarray(view)
        if self.kind == "transposed":
            return view.transpose(self.permutation)
        return view


@st.composite
def based_arrays(draw, dtypes=REAL_DTYPES, max_dims=4, max_side=6, steps=(1, 1, 2, -1, -3)):
    """A contiguous base array of one of ``dtypes`` (NaN, ±inf, ±0 and subnormals
    included) and a ``Layout`` to see it through."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    steps = tuple(draw(st.sampled_from(steps)) for _ in shape)
    base_shape = tuple(n * abs(s) for n, s in zip(shape, steps, strict=True))
    base = draw(hnp.arrays(dtype, base_shape, elements=hnp.from_dtype(dtype)))
    kind = draw(st.sampled_from(["C", "F", "strided", "transposed"]))
    permutation = tuple(draw(st.permutations(range(len(shape)))))
    return base, Layout(shape, steps, kind, permutation)


def strided_arrays(dtypes=REAL_DTYPES, max_dims=4, max_side=6, steps=(1, 1, 2, -1, -3)):
    """NumPy arrays of every layout that ``based_arrays`` makes."""
    return based_arrays(dtypes, max_dims, max_side, steps).map(lambda case: case[1].view(np, case[0]))


def leaks_for(dtype: np.dtype):
    """Leaks valid for ``dtype``: zeros of both types, integers that fit, fractions."""
    zero = st.sampled_from([0, 0.0])
    fractions = st.floats(-100, 100, allow_nan=False).filter(lambda v: not float(v).is_integer())
    if dtype.kind == "f":
        return st.one_of(zero, st.floats(-100, 100), st.integers(-5, 5), st.sampled_from([0.01, 0.1, 0.2]))
    low = 0 if dtype.kind == "u" else -5
    return st.one_of(zero, st.integers(low, 5), fractions)


@st.composite
def broadcast_leaks(draw, shape: tuple[int, ...], dtype: np.dtype):
    """A leak array that broadcasts to ``shape`` without changing it (leading
    dimensions dropped, others kept or set to 1), with values valid for ``dtype``:
    finite floats for a floating ``x``, small integers or floats for an integer one."""
    kept = draw(st.integers(0, len(shape)))
    leak_shape = tuple(n if draw(st.booleans()) else 1 for n in shape[len(shape) - kept :])
    if dtype.kind == "f":
        leak_dtype = draw(st.sampled_from([np.dtype(np.float64), np.dtype(np.float32), dtype]))
        elements = st.floats(-10, 10, width=min(leak_dtype.itemsize * 8, 64))
    else:
        leak_dtype = draw(st.sampled_from([np.dtype(c) for c in ("i8", "i1", "f8", "f4", "f2")]))
        low = 0 if dtype.kind == "u" else -5
        if leak_dtype.kind == "i":
            elements = st.integers(low, 5)
        else:
            elements = st.floats(low * 2, 10, width=leak_dtype.itemsize * 8)
    return draw(hnp.arrays(leak_dtype, leak_shape, elements=elements))
