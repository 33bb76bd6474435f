"""Backends: one module each, all with the interface of :class:`Backend`.

The dispatcher (``relukernels._dispatch``) holds the registry that orders them.
"""

from __future__ import annotations

from typing import Any, Protocol

from .._ops import Operation


class Backend(Protocol):
    """What the dispatcher needs of a backend."""

    name: str

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        """``op`` over ``x``: its results, written into ``outs`` where one is given.

        ``leak`` arrives as the caller gave it: the backend checks it with
        ``relukernels._validate.leak`` (a number comes back a Python number, an array
        as it is, to check with ``_validate.array_leak``). ``outs`` has one entry per
        result, each ``None`` or an unchecked array.
        """

    def backward(self, grad: Any, x: Any, leak: Any, out: Any) -> Any:
        """``relu_backward``: ``grad * relu_dash(x, leak)`` into ``out`` (``None`` or an
        unchecked array). ``grad`` is an array of this backend, still to be checked
        with ``_validate.grad_dtype``; ``leak`` arrives as for ``run``."""
