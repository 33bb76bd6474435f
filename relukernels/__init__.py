"""Exact ReLU, leaky ReLU and their derivatives on any array type.

>>> import relukernels as rk
>>> rk.relu([-2.0, 0.5], leak=0.1)
array([-0.2,  0.5])
"""

from ._api import leaky_relu, relu, relu_and_dash, relu_backward, relu_dash, relu_leak_gradient
from ._apply import apply_file


def __getattr__(name: str):
    """``relukernels.ufuncs`` on first use: importing it imports Numba."""
    if name == "ufuncs":
        import importlib

        return importlib.import_module(".ufuncs", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "relu", "relu_dash", "relu_and_dash", "relu_backward", "relu_leak_gradient", "leaky_relu", "apply_file", "ufuncs",
    "__version__",
]
__version__ = "0.2.0"
