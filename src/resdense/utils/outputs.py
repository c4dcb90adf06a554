"""What a command writes, checked before it works and written one way (issue 37).

- :func:`check_output`: every ``--out``/``--plot`` checked before any work: a file or a folder as the
  command writes, its parent an existing folder, not empty, the extension one the command writes, and an
  existing file kept unless ``force``.
- :func:`escape_name` / :func:`unescape_name`: a file or class name as text, one way in every format (CSV,
  a text list, JSON): bytes that are not UTF-8 (``os.fsdecode``'s surrogate escapes) become ``\\xNN``, a
  newline ``\\n``, a carriage return ``\\r`` and the backslash itself ``\\\\``, so any name is one line of
  valid UTF-8 and reads back as it was.
- :func:`csv_cell` / :func:`csv_text`: a name as a spreadsheet-safe CSV cell (OWASP's rule: a cell starting
  with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'`` so that no spreadsheet
  runs it as a formula); :func:`read_csv_cell` undoes it.
- :func:`write_together`: files that belong together (``embed``'s ``.npy`` and ``.txt``) written both or
  neither.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import UserError
from .io import atomic_path

__all__ = [
    "check_output",
    "csv_cell",
    "csv_text",
    "escape_name",
    "read_csv_cell",
    "unescape_name",
    "write_together",
]


def check_output(
    path: str | os.PathLike,
    *,
    option: str = "--out",
    kind: str = "file",
    suffixes: Sequence[str] = (),
    force: bool = False,
    overwrite_ok: bool = False,
) -> Path:
    """``path`` as a place the command can write, checked before any work (a one-line :class:`UserError`
    otherwise). ``kind``: ``"file"`` (its parent must be an existing folder, it must not be a folder, its
    extension one of ``suffixes`` where given, and an existing file is kept unless ``force`` or
    ``overwrite_ok``, for a default name a command always rewrites) or ``"folder"`` (made if missing; an
    existing file there is refused)."""
    text = os.fspath(path)
    if not str(text).strip():
        raise UserError(f"{option}: empty; give a {kind} name")
    p = Path(text)
    shown = escape_name(str(p))
    if kind == "folder":
        if p.exists() and not p.is_dir():
            raise UserError(f"{option} {shown}: a file, not a folder")
        parent = next((a for a in p.parents if a.exists()), Path("."))
        if not parent.is_dir():
            raise UserError(f"{option} {shown}: {escape_name(str(parent))} is a file, not a folder")
        return p
    if text.endswith(("/", os.sep)) or p.is_dir():
        raise UserError(f"{option} {shown}: a folder; give a file name" + _ending(suffixes))
    if suffixes and p.suffix.lower() not in {s.lower() for s in suffixes}:
        raise UserError(f"{option} {shown}: expected a " + " or ".join(suffixes) + " file name")
    parent = p.parent
    if not parent.exists():
        raise UserError(f"{option} {shown}: the folder {escape_name(str(parent))} does not exist")
    if not parent.is_dir():
        raise UserError(f"{option} {shown}: {escape_name(str(parent))} is a file, not a folder")
    if p.exists() and not (force or overwrite_ok):
        raise UserError(f"{option} {shown}: exists; use --force to overwrite it")
    return p


def _ending(suffixes: Sequence[str]) -> str:
    return f" (a name ending in {' or '.join(suffixes)})" if suffixes else ""


# -- names as text ---------------------------------------------------------------------------------------

# what must not be written as it is: the escape character itself, control characters and what any reader
# may take for a line break (Python's splitlines breaks at \v, \f, \x1c-\x1e, \x85, \u2028, \u2029 too), and
# surrogates (os.fsdecode's stand-ins for bytes that are not UTF-8: no UTF-8 writer takes them)
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_ESCAPE = re.compile(r"\\(\\|n|r|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _escape(m: re.Match) -> str:
    c = m.group()
    if c in _SHORT:
        return _SHORT[c]
    # os.fsdecode maps an undecodable byte b to U+DC00+b (surrogateescape): written as the byte it was
    return f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}"


def escape_name(name: str | os.PathLike) -> str:
    """``name`` as one line of valid UTF-8 text that :func:`unescape_name` reads back exactly."""
    text = name if isinstance(name, str) else os.fsdecode(name)
    return _UNSAFE.sub(_escape, text)


def _unescape(m: re.Match) -> str:
    code = m.group(1)
    if code in ("\\", "n", "r"):
        return {"\\": "\\", "n": "\n", "r": "\r"}[code]
    value = int(code[1:], 16)
    return chr(0xDC00 + value) if code[0] == "x" else chr(value)


def unescape_name(text: str) -> str:
    """The name :func:`escape_name` wrote as ``text`` (undecodable bytes back as ``os.fsdecode`` has them)."""
    return _ESCAPE.sub(_unescape, text)


# OWASP "CSV injection": a cell starting with one of these is a formula to Excel, LibreOffice, Sheets
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """A text cell made spreadsheet-safe: ``'`` before a formula start (also before ``'`` that precedes one,
    so that :func:`read_csv_cell` can tell the two apart)."""
    return "'" + text if text.lstrip("'").startswith(FORMULA_STARTS) else text


def csv_cell(name: str | os.PathLike) -> str:
    """A file or class name as a CSV cell: escaped (:func:`escape_name`), then spreadsheet-safe."""
    return csv_text(escape_name(name))


def read_csv_cell(cell: str) -> str:
    """The name a :func:`csv_cell` holds."""
    if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_STARTS):
        cell = cell[1:]
    return unescape_name(cell)


# -- files that belong together ------------------------------------------------------------------------


def write_together(writes: Sequence[tuple[Path, Callable[[Path], None]]]) -> list[Path]:
    """Each ``(path, write)``: ``write(tmp)`` fills a temporary file beside ``path``; only when all are
    written are they renamed into place, so a failure leaves none of the new files (what was there is kept,
    unless a rename itself fails half-way, which then removes the ones already renamed)."""
    with contextlib.ExitStack() as stack:
        # atomic_path renames on a clean exit and removes its file on an error; the stack unwinds every one
        # with the same exception, so an error in any write removes all the temporary files
        for path, write in writes:
            write(stack.enter_context(atomic_path(path)))
    return [p for p, _ in writes]
