"""Atomic writes: a file is either its old self or complete, never half-written (write temp, fsync, rename).

A write the folder cannot take (a full disk, a read-only file system, no permission) becomes one
:class:`~resdense.errors.StorageError` naming the folder; the temporary file is removed and the old file kept.
And a file's size as people read it (:func:`human_size`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import StorageError

# the errors that say "this folder cannot take the file", whichever call met them
STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG}


def file_mode(folder: bool = False) -> int:
    """The permissions a new file (0666) or folder (0777) gets under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def storage_error(folder: str | os.PathLike, e: OSError, what: str = "") -> StorageError:
    """``e`` as one line naming ``folder`` (and ``what`` was being written)."""
    writing = f"cannot write {what}" if what else "cannot write here"
    return StorageError(f"{folder}: {writing} ({e.strerror or e}); what was there is kept")


STALE_SECONDS = 3600  # a temporary file untouched this long belongs to no live writer


def temp_files(folder: Path, name: str) -> list[Path]:
    """The temporary files :func:`atomic_path` makes beside ``folder / name`` (left behind by a killed process)."""
    return sorted(folder.glob(f".{name}.*.tmp"))


def remove_temp_files(folder: Path, name: str, older_than: float = STALE_SECONDS) -> None:
    """Remove the temporary files a killed writer of ``folder / name`` left, if untouched for ``older_than``
    seconds (0: all of them, for a caller that knows no one else writes there)."""
    import time

    now = time.time()
    for t in temp_files(folder, name):
        with contextlib.suppress(OSError):
            if now - t.stat().st_mtime >= older_than:
                t.unlink()


def _temp_file(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _sync(tmp: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it is renamed over ``path``, else removed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_temp_files(path.parent, path.name)  # what a killed writer of this file left long ago
        tmp = _temp_file(path)
        yield tmp
        # mkstemp makes the file private (0600), and some writers replace it with one of their own: a result
        # file gets the usual permissions under the umask, whoever wrote it
        os.chmod(tmp, file_mode())
        _sync(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in STORAGE_ERRNOS:
            raise storage_error(path.parent, e, path.name) from None
        raise
    finally:
        if tmp is not None and tmp.exists():
            with contextlib.suppress(OSError):
                tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """``data`` written atomically by Python itself: a C++ writer meeting a full disk may abort the process
    (torch.jit.save did), Python raises an OSError that becomes one line."""
    atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def human_size(n: int) -> str:
    """A byte count as people read a file's size: ``"512 B"``, ``"43.2 MB"`` (powers of 1024)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
