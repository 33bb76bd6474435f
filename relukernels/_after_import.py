"""Run a function right after a module is first imported, through ``importlib``'s
public finder and loader protocols, without importing the module ourselves.

relukernels uses it for PyTorch: its ``torch.library`` ops must exist before
``torch.compile`` traces a call to them (Dynamo cannot trace a registration), and
relukernels must not import torch itself (``import relukernels`` stays light).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable
from typing import Any


class _AfterImport(importlib.abc.MetaPathFinder):
    """A finder that asks the finders after it for ``name`` and hands out its spec with
    a loader that runs ``callback`` once the module has executed. Only a lookup
    (``importlib.util.find_spec``, an "is it installed?" check) leaves it in place;
    it removes itself after the import that runs the module."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name or self not in sys.meta_path:
            return None
        later = sys.meta_path[sys.meta_path.index(self) + 1:]
        for finder in later:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _CallAfterExecuting(spec.loader, self)
        return spec

    def module_executed(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        _call_warning_on_error(self.callback, self.name)


class _CallAfterExecuting(importlib.abc.Loader):
    """``loader`` for one import, telling ``finder`` once the module has executed. The
    module sees ``loader`` itself as its ``__loader__``."""

    def __init__(self, loader: Any, finder: _AfterImport) -> None:
        self.loader, self.finder = loader, finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.finder.module_executed()


def _call_warning_on_error(callback: Callable[[], None], name: str) -> None:
    """``callback()``; a failure is a warning: neither the import of ``name`` nor
    relukernels' must fail for it."""
    try:
        callback()
    except Exception as error:  # noqa: BLE001
        warnings.warn(f"relukernels: could not prepare for {name} ({error!r}); "
                      "it will try again on the first call", RuntimeWarning, stacklevel=3)


def after_import(name: str, callback: Callable[[], None]) -> None:
    """``callback()`` now if top-level module ``name`` is imported, else right after
    its first import. Registering the same callback again (a reloaded module)
    replaces the earlier hook."""
    if sys.modules.get(name) is not None:
        _call_warning_on_error(callback, name)
        return
    key = (callback.__module__, callback.__qualname__)
    sys.meta_path[:] = [
        finder for finder in sys.meta_path
        if not (isinstance(finder, _AfterImport) and finder.name == name
                and (finder.callback.__module__, finder.callback.__qualname__) == key)
    ]
    sys.meta_path.insert(0, _AfterImport(name, callback))
