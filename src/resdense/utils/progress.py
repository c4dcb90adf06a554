"""A one-line progress bar on stderr: redrawn in place on a terminal, silent elsewhere (logs stay clean)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(
        self, total: int, desc: str = "", enabled: bool = True, stream=None, min_interval: float = 0.2
    ):
        self.total = total
        self.desc = desc
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.min_interval = min_interval
        self.start = time.perf_counter()
        self._last = 0.0

    def due(self) -> bool:
        """Whether a redraw is due; callers fetch their figures (a device sync) only then."""
        return self.enabled and time.perf_counter() - self._last >= self.min_interval

    def update(self, done: int, postfix: str = "") -> None:
        if not self.enabled:
            return
        self._last = time.perf_counter()
        frac = done / max(self.total, 1)
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        elapsed = self._last - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        self.stream.write(f"\r{self.desc} [{bar}] {done}/{self.total} {postfix} eta {eta:4.0f}s\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
