"""The tutorial's figure: ReLU and leaky ReLU side by side with their derivatives."""

from __future__ import annotations

import numpy as np

import relukernels as rk


def tutorial_figure(path: str, leak: float = 0.1) -> None:
    """Draw ReLU and leaky ReLU (left) and their derivatives (right) to ``path``.

    Both curves are computed with relukernels; for x > 0 they coincide, as the
    tutorial's note says, so the leaky curve is dashed over the plain one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.linspace(-5, 5, 1001)
    figure, (values, derivatives) = plt.subplots(1, 2, figsize=(10, 4))
    for axes, function, title in ((values, rk.relu, "y = relu(x)"), (derivatives, rk.relu_dash, "dy/dx")):
        axes.plot(x, function(x), linewidth=3, label="ReLU")
        axes.plot(x, function(x, leak), "--", linewidth=2, label=f"leaky ReLU, leak = {leak}")
        axes.axhline(0, color="grey", linewidth=0.5)
        axes.axvline(0, color="grey", linewidth=0.5)
        axes.set_title(title)
        axes.set_xlabel("x")
        axes.grid(alpha=0.3)
        axes.legend()
    derivatives.set_ylim(-0.2, 1.2)
    figure.suptitle("ReLU and leaky ReLU, and their derivatives (overlapping for x > 0)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
