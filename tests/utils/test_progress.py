"""Progress bars (tqdm): drawn on a terminal, silent in a log file or pipe."""

from __future__ import annotations

import io
import sys

from resdense.utils.notebook import in_notebook
from resdense.utils.progress import ProgressBar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_bar(monkeypatch, stream, enabled=True) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    bar = ProgressBar(10, "epoch 1/2", enabled=enabled, min_interval=0)
    for i in range(10):
        if bar.due():
            bar.update(i + 1, f"loss {1 / (i + 1):.3f}")
    bar.close()
    return stream.getvalue()


def test_bar_draws_on_a_terminal_and_clears_itself(monkeypatch):
    text = run_bar(monkeypatch, FakeTerminal())
    assert "epoch 1/2" in text and "10/10" in text and "loss 0.100" in text
    assert text.endswith("\r") and text.split("\r")[-2].strip() == ""  # erased when closed (leave=False)


def test_bar_is_silent_in_a_log_file_or_when_disabled(monkeypatch):
    assert run_bar(monkeypatch, io.StringIO()) == ""
    assert run_bar(monkeypatch, FakeTerminal(), enabled=False) == ""


def test_not_a_notebook_here():
    assert not in_notebook()  # pytest is no Jupyter kernel (the notebook test covers the other side)


def test_in_a_notebook_the_bar_is_tqdms_widget_or_text_without_ipywidgets(monkeypatch):
    from resdense.utils import progress

    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(progress, "has_widgets", lambda: True)
    cls, on = progress._bar_class(True)
    assert cls.__module__ == "tqdm.notebook" and on
    monkeypatch.setattr(progress, "has_widgets", lambda: False)
    cls, on = progress._bar_class(True)  # the notebook redraws tqdm's text bar in place: still shown
    assert cls.__module__ == "tqdm.std" and on
    assert progress._bar_class(False)[1] is False
