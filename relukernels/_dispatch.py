"""Which backend takes an array: an exact-type cache first, the registry on a miss.

The registry is ordered; the first backend whose ``accepts`` is true wins and is
remembered for that exact type, so a repeated call costs one dictionary lookup.
Adding a backend means adding its module and one entry here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backends import Backend
from ._backends.cuda import CudaBackend
from ._backends.dask import DaskBackend
from ._backends.generic import GenericBackend
from ._backends.numpy import NumpyBackend
from ._backends.torch import TorchBackend

REGISTRY: tuple[Backend, ...] = (NumpyBackend(), TorchBackend(), CudaBackend(), DaskBackend(), GenericBackend())

_NUMPY = REGISTRY[0]
_ARRAY_LIKES = (list, tuple, int, float, np.generic)
_by_type: dict[type, Backend] = {np.ndarray: _NUMPY}


def backend_for(x: Any) -> tuple[Backend, Any]:
    """The backend for ``x``, and ``x`` itself (array-likes become NumPy arrays)."""
    try:
        return _by_type[type(x)], x
    except KeyError:
        pass
    if isinstance(x, _ARRAY_LIKES):
        return _NUMPY, np.asarray(x)
    for backend in REGISTRY:
        if backend.accepts(x):
            _by_type[type(x)] = backend
            return backend, x
    if hasattr(x, "__array__"):
        return _NUMPY, np.asarray(x)
    raise TypeError(
        f"x must be an array (NumPy, CuPy, PyTorch, JAX, Dask or any array-API array) "
        f"or an array-like, got {type(x).__module__}.{type(x).__name__}"
    )
