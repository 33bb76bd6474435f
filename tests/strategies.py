"""Hypothesis strategies: arrays of every dtype, shape and stride the contract names,
and leaks that each dtype accepts."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT_DTYPES = [np.dtype(c) for c in ("f2", "f4", "f8")]
INTEGER_DTYPES = [np.dtype(c) for c in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")]
REAL_DTYPES = FLOAT_DTYPES + INTEGER_DTYPES + [np.dtype(np.longdouble)]


@st.composite
def strided_arrays(draw, dtypes=REAL_DTYPES, max_dims=4, max_side=6):
    """An array of one of ``dtypes`` (NaN, ±inf, ±0 and subnormals included) seen
    through a random layout: C order, Fortran order, steps (negative too), transposed."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    steps = [draw(st.sampled_from([1, 1, 2, -1, -3])) for _ in shape]
    base_shape = tuple(n * abs(s) for n, s in zip(shape, steps))
    base = draw(hnp.arrays(dtype, base_shape, elements=hnp.from_dtype(dtype)))
    layout = draw(st.sampled_from(["C", "F", "strided", "transposed"]))
    if layout == "F":
        return np.asfortranarray(base[(*(slice(None, n) for n in shape), ...)])
    view = base[(*(slice(None, None, s) for s in steps), ...)]  # `...` keeps 0-d an array
    if layout == "C":
        return np.ascontiguousarray(view)
    if layout == "transposed":
        return view.transpose(draw(st.permutations(range(view.ndim))))
    return view


def leaks_for(dtype: np.dtype):
    """Leaks valid for ``dtype``: zeros of both types, integers that fit, fractions."""
    zero = st.sampled_from([0, 0.0])
    fractions = st.floats(-100, 100, allow_nan=False).filter(lambda v: not float(v).is_integer())
    if dtype.kind == "f":
        return st.one_of(zero, st.floats(-100, 100), st.integers(-5, 5), st.sampled_from([0.01, 0.1, 0.2]))
    low = 0 if dtype.kind == "u" else -5
    return st.one_of(zero, st.integers(low, 5), fractions)
