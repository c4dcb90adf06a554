"""Download one file over HTTP(S) with urllib: a progress line on stderr, a temp file renamed into place.

Shared by the data sets (Fashion-MNIST) and the pretrained weights (torchvision's files, whose names carry
the first hex digits of their SHA-256, checked here while the bytes arrive).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from .io import atomic_path

_CHUNK = 1 << 16


def format_progress(desc: str, done: int, total: int | None) -> str:
    """``desc 12.3/26.4 MB`` (or ``desc 12.3 MB`` when the server did not say how big)."""
    if total:
        return f"{desc} {done / 1e6:.1f}/{total / 1e6:.1f} MB"
    return f"{desc} {done / 1e6:.1f} MB"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def download(
    url: str,
    dest_path: str | os.PathLike,
    *,
    progress: bool = True,
    desc: str | None = None,
    timeout: float = 60.0,
    hash_prefix: str | None = None,
) -> Path:
    """Fetch ``url`` into ``dest_path``; it appears only when complete. Failures are one-line DataErrors.

    With ``progress`` the line ``desc done/total MB`` is redrawn on stderr when that is a terminal;
    elsewhere (logs, CI) a single line says what is being fetched. ``hash_prefix``: the hex digits the
    file's SHA-256 must start with (torchvision's convention); a mismatch keeps nothing and says so.
    """
    dest = Path(dest_path)
    desc = desc or dest.name
    stream = sys.stderr
    live = progress and stream.isatty()
    if progress and not live:
        print(f"{desc}: downloading {url}", file=stream, flush=True)
    done, total, drawn = 0, None, False
    sha = hashlib.sha256() if hash_prefix else None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            last = 0.0
            with open(tmp, "wb") as f:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    if sha is not None:
                        sha.update(chunk)
                    done += len(chunk)
                    if live and time.monotonic() - last >= 0.1:
                        last, drawn = time.monotonic(), True
                        stream.write("\r" + format_progress(desc, done, total) + "\x1b[K")
                        stream.flush()
            if total is not None and done != total:
                # Raised inside the with-block so that atomic_path throws the partial file away.
                raise DataError(f"cannot download {url}: connection closed after {done} of {total} bytes")
            if sha is not None and not sha.hexdigest().startswith(hash_prefix.lower()):
                raise DataError(
                    f"{url}: downloaded file is corrupt (SHA-256 {sha.hexdigest()[:12]}..., expected "
                    f"{hash_prefix}...); nothing was kept, try again"
                )
    except urllib.error.HTTPError as e:
        raise DataError(f"cannot download {url}: HTTP {e.code} {_one_line(e.reason)}") from None
    except urllib.error.URLError as e:
        raise DataError(f"cannot download {url}: {_one_line(e.reason)}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise DataError(f"cannot download {url}: {_one_line(e) or type(e).__name__}") from None
    finally:
        if drawn:
            # Leave the final figures on screen and start the next message on a fresh line.
            stream.write("\r" + format_progress(desc, done, total) + "\x1b[K\n")
            stream.flush()
    return dest
