"""Systems without some of what Linux has: no ``os.posix_fallocate`` (macOS, Windows),
no ``os.register_at_fork`` (Windows). The missing function is deleted from ``os``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

import relukernels as rk
from relukernels._apply import apply_file


def _python(code: str, cwd: os.PathLike | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_apply_without_posix_fallocate(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "posix_fallocate")
    x = np.linspace(-3, 3, 5000, dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    report = apply_file(tmp_path / "x.npy", (tmp_path / "y.npy", tmp_path / "dy.npy"), leak=0.25, op="both",
                        device="cpu", batch_bytes=4096)
    assert report.elements == x.size
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), rk.relu(x, 0.25), strict=True)
    np.testing.assert_array_equal(np.load(tmp_path / "dy.npy"), rk.relu_dash(x, 0.25), strict=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dy.npy", "x.npy", "y.npy"]


CLI_WITHOUT_POSIX_FALLOCATE = """
    import os, resource, signal, sys
    del os.posix_fallocate
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    from relukernels.cli import main
    sys.exit(main(["apply", "big.npy", "y.npy"]))
"""


def test_a_full_disk_is_still_reported_at_the_start_without_posix_fallocate(tmp_path):
    """Without posix_fallocate the file is extended, not allocated: a file-size limit
    (here RLIMIT_FSIZE, as a full disk would) still fails before any batch, in one line."""
    np.save(tmp_path / "big.npy", np.zeros(100_000))
    done = _python(CLI_WITHOUT_POSIX_FALLOCATE, cwd=tmp_path)
    assert done.returncode == 2 and "no room" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npy"]


def test_import_and_run_without_register_at_fork():
    """Windows has no fork, nor ``os.register_at_fork``; an array large enough for
    Numba's threads included."""
    done = _python("""
        import os
        del os.register_at_fork
        import numpy as np
        import relukernels as rk
        x = np.linspace(-1, 1, 1 << 17)
        assert np.array_equal(rk.relu(x, 0.5), np.where(x > 0, x, 0.5 * x))
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
