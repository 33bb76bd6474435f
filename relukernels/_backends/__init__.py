"""Backends: one module each, all with the interface of :class:`Backend`.

The dispatcher (``relukernels._dispatch``) holds the registry that orders them.
"""

from __future__ import annotations

from typing import Any, Protocol


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
