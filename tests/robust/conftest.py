"""Fixtures of the gate tests (issue 19): isolation, the shared tiny run, copies of it, and a full or
read-only folder (a real small tmpfs where this process may mount one, else the write path simulated)."""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
from pathlib import Path

import pytest

# the training tests' own fixtures, one definition: isolation (autouse), the tiny IDX set, the finished run
from tests.train.conftest import finished_run, idx_dir, isolated  # noqa: F401


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:  # noqa: F811  (the fixture imported above)
    """A copy of the shared finished run (3 epochs) that a test may change."""
    dst = tmp_path / "run"
    shutil.copytree(finished_run[0], dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def _umount(folder: Path) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


def _raise(code: int):
    def fail(*args, **kwargs):
        raise OSError(
            code, {errno.ENOSPC: "No space left on device", errno.EROFS: "Read-only file system"}[code]
        )

    return fail


@contextlib.contextmanager
def storage(kind: str, folder: Path, monkeypatch, fill: Path | None = None):
    """``folder`` (a copy of ``fill`` when given) made full (``ENOSPC``) or read-only (``EROFS``): a real
    tmpfs when mountable (root in a privileged container), else every write path of resdense made to fail
    with that error (the atomic writes' temporary file or fsync, the run folder's lock). Yields "tmpfs" or
    "simulated"."""
    import resdense.rundir as rundir
    import resdense.utils.io as io

    real = _mount_tmpfs(folder, "1m")
    try:
        if fill is not None:
            shutil.copytree(fill, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
        if real and kind == "full":
            with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        if real and kind == "read-only":
            real = (
                subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True).returncode
                == 0
            )
        if not real:
            code = errno.ENOSPC if kind == "full" else errno.EROFS
            if kind == "full":
                monkeypatch.setattr(io, "_sync", _raise(code))
            else:
                monkeypatch.setattr(io, "_temp_file", _raise(code))
                monkeypatch.setattr(rundir, "_open_lock", _raise(code))
        yield "tmpfs" if real else "simulated"
    finally:
        _umount(folder)
