"""Exact ReLU, leaky ReLU and their derivatives on any array type.

>>> import relukernels as rk
>>> rk.relu([-2.0, 0.5], leak=0.1)
array([-0.2,  0.5])
"""

from ._api import leaky_relu, relu, relu_and_dash, relu_dash
from ._apply import apply_file


__all__ = ["relu", "relu_dash", "relu_and_dash", "leaky_relu", "apply_file", "__version__"]
__version__ = "0.1.0"
