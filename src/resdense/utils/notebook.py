"""Jupyter, when there is one: detect a kernel and show figures inline.

Nothing here imports IPython unless the process already runs inside an IPython kernel, so a terminal user
pays nothing. Figures are shown as PNG images rendered by resdense itself (``display(Image(...))``), never
through pyplot: the notebook's own matplotlib backend, current figure and rcParams stay the user's.
"""

from __future__ import annotations

import io
import sys


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab), not a terminal."""
    if "ipykernel" not in sys.modules:  # cheap: a kernel has imported it long before resdense runs
        return False
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell
        from IPython import get_ipython
    except ImportError:
        return False
    # the kernel's shell class (Colab's subclasses it); a terminal IPython is a TerminalInteractiveShell
    return isinstance(get_ipython(), ZMQInteractiveShell)


def has_widgets() -> bool:
    """Whether ipywidgets is installed (tqdm's notebook bar needs it)."""
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def figure_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib Figure rendered to PNG bytes by its own canvas (no pyplot, no backend switch)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def show_figure(fig) -> bool:
    """Display ``fig`` inline when running in a notebook; a no-op elsewhere. Returns whether it showed."""
    if not in_notebook():
        return False
    from IPython.display import Image, display

    display(Image(data=figure_png(fig), format="png"))
    return True


class LiveImage:
    """One output in the notebook that each :meth:`update` redraws in place (a display handle)."""

    def __init__(self) -> None:
        self._handle = None

    def update(self, fig) -> None:
        from IPython.display import Image, display

        image = Image(data=figure_png(fig), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
