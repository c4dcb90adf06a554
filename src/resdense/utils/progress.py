"""Progress bars: tqdm's, as the ecosystem draws them.

On a terminal the bar redraws in place on stderr; when stderr is not a terminal (a log file, a pipe) it is
silent, so logs stay clean. In a Jupyter kernel it is tqdm's notebook widget (when ipywidgets is installed;
otherwise tqdm's text bar, which the notebook also redraws in place).
"""

from __future__ import annotations

import sys
import time

from .notebook import has_widgets, in_notebook


def _bar_class(enabled: bool):
    if enabled and in_notebook():
        if has_widgets():
            from tqdm.notebook import tqdm

            return tqdm, True
        from tqdm.std import tqdm

        return tqdm, True
    from tqdm.std import tqdm

    return tqdm, enabled and sys.stderr.isatty()


class ProgressBar:
    """A tqdm bar for ``total`` steps that disappears when closed (the caller prints a summary line).

    :meth:`due` says when a redraw is worth it, so that callers fetch their figures (a device sync) only
    then, not at every step.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool = True, min_interval: float = 0.2):
        cls, on = _bar_class(enabled)
        self.bar = cls(
            total=total,
            desc=desc,
            disable=not on,
            leave=False,
            unit="step",
            dynamic_ncols=True,
            mininterval=min_interval,
        )
        self.enabled = on
        self.min_interval = min_interval
        self._last = 0.0

    def due(self) -> bool:
        return self.enabled and time.perf_counter() - self._last >= self.min_interval

    def update(self, done: int, postfix: str = "") -> None:
        if not self.enabled:
            return
        self._last = time.perf_counter()
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()
