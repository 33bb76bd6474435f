"""Every example in README.md and docs/ is a test (Sybil): Python blocks run as doctests,
each ``console`` block's ``$`` commands run in a fresh folder, their output compared
where the block shows it. Blocks that need a library missing here are skipped by the
documents' own ``skip`` comments, which read the ``HAS_*`` names set below."""

from __future__ import annotations

import doctest
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from sybil import Sybil
from sybil.evaluators.doctest import NUMBER
from sybil.parsers import markdown, myst

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | NUMBER


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _has_gpu() -> bool:
    if not _installed("cupy") or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    import cupy

    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001  (no driver, no device)
        return False


def _setup(namespace: dict[str, Any]) -> None:
    namespace.update({f"HAS_{name.upper()}": _installed(name) for name in ("torch", "jax", "dask", "pandas")})
    namespace["HAS_DISTRIBUTED"] = _installed("distributed")
    namespace["HAS_GPU"] = _has_gpu()
    namespace["_folder"] = tempfile.mkdtemp(prefix="relukernels-docs-")
    namespace["_cwd"] = os.getcwd()
    os.chdir(namespace["_folder"])


def _teardown(namespace: dict[str, Any]) -> None:
    os.chdir(namespace["_cwd"])
    shutil.rmtree(namespace["_folder"], ignore_errors=True)


def _command(line: str) -> list[str]:
    """A ``$`` line as a command of this interpreter: ``python`` is this Python, and
    ``relukernels`` the package's command run by it."""
    words = shlex.split(line)
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    if words[0] == "relukernels":
        return [sys.executable, "-m", "relukernels", *words[1:]]
    return words


def run_console(example: Any) -> str | None:
    """Run a ``console`` block's commands; each must exit 0 (non-zero where the block
    shows an ``error:`` line) and print what the block shows, if it shows anything."""
    checker = doctest.OutputChecker()
    commands: list[tuple[str, list[str]]] = []
    for line in example.parsed.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
    for line, shown in commands:
        done = subprocess.run(_command(line), capture_output=True, text=True, timeout=600)
        printed = done.stdout + done.stderr
        expected = "\n".join(shown).strip()
        fails = any("error:" in text for text in shown)
        if (done.returncode != 0) != fails:
            return f"$ {line}\nexit status {done.returncode}\n{printed}"
        if expected and not checker.check_output(expected + "\n", printed, FLAGS):
            return f"$ {line}\nexpected:\n{expected}\ngot:\n{printed}"
    return None


def _parsers(kind: Any) -> list[Any]:
    return [
        kind.PythonCodeBlockParser(doctest_optionflags=FLAGS),
        kind.CodeBlockParser(language="console", evaluator=run_console),
        kind.SkipParser(),
    ]


pytest_collect_file = (
    Sybil(parsers=_parsers(markdown), patterns=["README.md"], setup=_setup, teardown=_teardown)
    + Sybil(parsers=_parsers(myst), patterns=["docs/*.md", "docs/guide/*.md"], setup=_setup, teardown=_teardown)
).pytest()
