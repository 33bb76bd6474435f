"""Run a function right after a module is first imported, through ``importlib``'s
public finder protocol, without importing the module ourselves.

relukernels uses it for PyTorch: its ``torch.library`` ops must exist before
``torch.compile`` traces a call to them (Dynamo cannot trace a registration), and
relukernels must not import torch itself (``import relukernels`` stays light).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from typing import Any, Callable


class _AfterImport(importlib.abc.MetaPathFinder):
    """A finder that lets the others find ``name``, then wraps its loader so that
    ``callback`` runs once the module has executed; it removes itself on first use."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:  # another thread got here first
            return None
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute, callback = spec.loader.exec_module, self.callback

        def execute_then_call(module: Any) -> None:
            execute(module)
            try:
                callback()
            except Exception as error:  # noqa: BLE001 - the import itself must not fail
                warnings.warn(f"relukernels: could not prepare for {fullname} ({error!r}); "
                              "it will try again on the first call", RuntimeWarning, stacklevel=2)

        spec.loader.exec_module = execute_then_call  # type: ignore[method-assign]
        return spec


def after_import(name: str, callback: Callable[[], None]) -> None:
    """``callback()`` now if top-level module ``name`` is imported, else right after
    its first import."""
    if name in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _AfterImport(name, callback))
