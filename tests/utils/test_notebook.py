"""Outside a Jupyter kernel the notebook helpers stay out of the way (the kernel side: tests/examples)."""

from __future__ import annotations

import sys

from resdense.plots import curves_figure
from resdense.utils.notebook import figure_png, in_notebook, show_figure


def test_outside_a_kernel_nothing_is_shown_and_ipython_is_not_imported():
    rows = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.6}]
    fig = curves_figure(rows, "t", epochs=3)
    assert figure_png(fig).startswith(b"\x89PNG")
    had_ipython = "IPython" in sys.modules
    assert not in_notebook() and show_figure(fig) is False
    assert ("IPython" in sys.modules) == had_ipython
