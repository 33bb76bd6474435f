"""Which backend takes an array, decided by what library the array belongs to.

Arrays of a known library are recognised with ``array_api_compat``'s ``is_*_array``
checks, which never import the library; that decision depends on the type alone
and is cached per exact type, so a repeated call costs one dictionary lookup. Only
arrays of no known library are asked for ``__cuda_array_interface__``, whose
presence can depend on the instance, on every call; a container with NumPy's ufunc
protocol whose type has no such attribute is cached like a library's array.
Adding a backend means adding its module and one entry in ``_by_library``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ._after_import import after_import
from ._backends import Backend
from ._backends.cuda import CudaBackend
from ._backends.dask import DaskBackend
from ._backends.generic import GenericBackend
from ._backends.jax import JaxBackend
from ._backends.numpy import NumpyBackend
from ._backends.torch import TorchBackend, register_custom_ops
from ._backends.ufunc_protocol import UfuncProtocolBackend

NUMPY = NumpyBackend()
CUDA = CudaBackend()
GENERIC = GenericBackend()
UFUNC_PROTOCOL = UfuncProtocolBackend()
TORCH = TorchBackend()

_ARRAY_LIKES = (list, tuple, int, float, np.generic)
_by_type: dict[type, Backend] = {np.ndarray: NUMPY, np.memmap: NUMPY}
"""Backends by exact type. ``np.memmap`` is an ndarray for the kernels: NumPy's own
ufuncs return plain arrays for it too."""


def _by_library() -> list[tuple[Callable[[Any], bool], Backend]]:
    import array_api_compat as compat

    return [
        (compat.is_torch_array, TORCH),
        (compat.is_cupy_array, CUDA),
        (compat.is_dask_array, DaskBackend()),
        (compat.is_jax_array, JaxBackend()),  # on any device: a JAX array stays a JAX array
        (compat.is_numpy_array, UFUNC_PROTOCOL),  # ndarray subclasses: matrix, masked arrays
    ]


_libraries: list[tuple[Callable[[Any], bool], Backend]] = []

def _prepare_for_torch() -> None:
    """Tensor types in the lookup and the ``torch.library`` ops registered, as soon as
    torch is imported: a first call under ``torch.compile`` then traces neither the
    lookup nor a registration, whichever of torch and relukernels came first."""
    torch = sys.modules["torch"]
    _by_type.update({torch.Tensor: TORCH, torch.nn.Parameter: TORCH})
    register_custom_ops()


after_import("torch", _prepare_for_torch)


def backend_for(x: Any) -> tuple[Backend, Any]:
    """The backend for ``x``, and ``x`` itself (array-likes become NumPy arrays)."""
    try:
        return _by_type[type(x)], x
    except KeyError:
        pass
    if isinstance(x, _ARRAY_LIKES):
        return NUMPY, np.asarray(x)
    if not _libraries:
        _libraries.extend(_by_library())
    for is_library_array, backend in _libraries:
        if is_library_array(x):
            _by_type[type(x)] = backend
            return backend, x
    if hasattr(x, "__cuda_array_interface__"):
        return CUDA, x
    if getattr(type(x), "__array_ufunc__", None) is not None:
        if not hasattr(type(x), "__cuda_array_interface__"):  # then no instance has one
            _by_type[type(x)] = UFUNC_PROTOCOL
        return UFUNC_PROTOCOL, x
    import array_api_compat

    if array_api_compat.is_array_api_obj(x):
        return GENERIC, x
    if hasattr(x, "__array__"):
        return NUMPY, np.asarray(x)
    raise TypeError(
        f"x must be an array (NumPy, CuPy, PyTorch, JAX, Dask or any array-API array), "
        f"a container with NumPy's ufunc protocol, or an array-like, "
        f"got {type(x).__module__}.{type(x).__name__}"
    )
