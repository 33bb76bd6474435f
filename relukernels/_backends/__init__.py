"""Backends: one module each, all with the interface of :class:`Backend`.

Backends that do all three operations in one ``run`` (NumPy, CUDA, PyTorch) inherit
the three methods from :class:`RunBackend`. The dispatcher (``relukernels._dispatch``) holds the registry that orders them.
"""

from __future__ import annotations

from typing import Any, Protocol

from .. import _validate


class Backend(Protocol):
    """What the dispatcher needs of a backend.

    ``leak`` arrives already checked by ``relukernels._validate.leak``; ``out`` is
    ``None``, an array, or for ``relu_and_dash`` a pair of arrays, still unchecked.
    """

    name: str

    def accepts(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend; must not import its framework."""

    def relu(self, x: Any, leak: int | float, out: Any) -> Any: ...

    def relu_dash(self, x: Any, leak: int | float, out: Any) -> Any: ...

    def relu_and_dash(self, x: Any, leak: int | float, out: Any) -> tuple[Any, Any]: ...


class RunBackend:
    """A backend whose three operations are one ``run``: the operation's name, ``x``,
    the leak, the outputs (each ``None`` or an array) and their names for errors."""

    def run(self, op: str, x: Any, leak: int | float, outs: tuple, names: tuple) -> list:
        raise NotImplementedError

    def relu(self, x: Any, leak: int | float, out: Any) -> Any:
        return self.run("relu", x, leak, (out,), ("out",))[0]

    def relu_dash(self, x: Any, leak: int | float, out: Any) -> Any:
        return self.run("relu_dash", x, leak, (out,), ("out",))[0]

    def relu_and_dash(self, x: Any, leak: int | float, out: Any) -> tuple[Any, Any]:
        pair = _validate.out_pair(out) or (None, None)
        y, dy = self.run("relu_and_dash", x, leak, pair, ("out[0]", "out[1]"))
        return y, dy
