"""evaluate's mistakes.png: the worst mistakes first, each with its Grad-CAM map, and "no mistakes" said."""

from __future__ import annotations

import pytest
import torch

import resdense
from resdense.data.dataset import ImageSet
from resdense.modelfile import ModelSpec
from resdense.plots import mistakes_figure
from resdense.preprocess import Preprocess
from resdense.serve import Predictor
from resdense.serve.evaluate import EvalResult, evaluate, worst_mistakes, write_figures

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    opts = {"num_classes": 3, "in_chans": 1, "widths": [4, 8, 16]}
    model = resdense.create_model("resnet20", **opts).eval()
    return Predictor.for_model(
        model, ModelSpec("resnet20", opts, Preprocess(16, (0.5,), (0.25,), 1), CLASSES)
    )


def texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_the_worst_mistakes_come_first():
    logits = torch.tensor(
        [[0.0, 5.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 9.0], [1.0, 1.2, 0.0], [0.0, 0.0, 1.0]]
    )
    labels = torch.tensor([0, 0, 1, 0, 2])
    pred = logits.argmax(1)
    result = EvalResult(0.4, {}, torch.zeros(3, 3), pred, CLASSES, 5, logits)
    # wrong: 0 (p(true) tiny), 2 (tinier), 3 (nearly right); 1 and 4 are right
    assert worst_mistakes(result, labels, 10).tolist() == [2, 0, 3]
    assert worst_mistakes(result, labels, 2).tolist() == [2, 0]
    no_logits = EvalResult(0.4, {}, torch.zeros(3, 3), pred, CLASSES, 5)
    assert worst_mistakes(no_logits, labels, 10).tolist() == [0, 2, 3]  # test-set order


def test_mistakes_have_a_heat_map_row(predictor, tmp_path, monkeypatch):
    images = torch.randint(0, 256, (12, 1, 20, 20), generator=torch.Generator().manual_seed(1)).to(
        torch.uint8
    )
    labels = (predictor.predict(images) + 1) % 3  # every one wrong
    test_set = ImageSet(images, labels)
    result = evaluate(tmp_path, test_set=test_set, predictor=predictor)
    drawn = {}
    import resdense.plots as plots

    real = plots.mistakes_figure

    def spy(images, true, pred, classes, cols=8, cams=None, n=None):
        drawn.update(images=images, cams=cams, pred=pred)
        return real(images, true, pred, classes, cols, cams, n)

    monkeypatch.setattr(plots, "mistakes_figure", spy)
    write_figures(result, test_set, tmp_path, max_mistakes=5)
    assert drawn["images"].shape == (5, 1, 16, 16)  # as the network saw them: fitted to its 16 px
    assert drawn["cams"].shape == (5, 16, 16) and float(drawn["cams"].amax()) > 0
    with_maps = real(drawn["images"], [0] * 5, drawn["pred"], CLASSES, cams=drawn["cams"], n=12)
    without = real(drawn["images"], [0] * 5, drawn["pred"], CLASSES, n=12)
    tall, short = (f.axes[0].images[0].get_array().shape for f in (with_maps, without))
    assert tall[1] == short[1] and tall[0] == short[0] + 16 + 1  # a row of maps (and a gap) under the images
    assert "Grad-CAM" in with_maps.axes[0].get_title() and texts(with_maps).count("->") == 5


def test_no_mistakes_is_said_not_drawn_blank(predictor, tmp_path):
    fig = mistakes_figure(torch.empty(0, 1, 16, 16, dtype=torch.uint8), [], [], CLASSES, n=64)
    assert "no mistakes" in texts(fig) and "64" in texts(fig)
    images = torch.randint(0, 256, (4, 1, 20, 20), generator=torch.Generator().manual_seed(2)).to(torch.uint8)
    test_set = ImageSet(images, predictor.predict(images))
    result = evaluate(tmp_path, test_set=test_set, predictor=predictor)
    assert write_figures(result, test_set, tmp_path)[1].read_bytes()[:4] == b"\x89PNG"


def test_an_export_gets_its_mistakes_without_maps(predictor, tmp_path, monkeypatch):
    images = torch.randint(0, 256, (6, 1, 20, 20), generator=torch.Generator().manual_seed(3)).to(torch.uint8)
    test_set = ImageSet(images, (predictor.predict(images) + 1) % 3)
    result = evaluate(tmp_path, test_set=test_set, predictor=predictor)
    runs_only = Predictor(predictor.spec, "torchscript", predictor.model)  # no nn.Module to hook
    import resdense.plots as plots

    seen = {}
    real = plots.mistakes_figure
    monkeypatch.setattr(plots, "mistakes_figure", lambda *a, **k: seen.update(k) or real(*a, **k))
    write_figures(result, test_set, tmp_path, predictor=runs_only)
    assert seen["cams"] is None


def test_most_confused_reads_the_nonzero_cells_in_order() -> None:
    """The class pairs most confused, largest first and row by row among equals, as a loop over every cell
    gave them (that loop took hours at 10,000 classes, issue 37); the diagonal is never a confusion."""
    from types import SimpleNamespace

    from resdense.serve.mistakes import most_confused

    g = torch.Generator().manual_seed(0)
    k = 7
    m = torch.randint(0, 4, (k, k), generator=g) * (torch.rand(k, k, generator=g) < 0.5)
    classes = [f"c{i}" for i in range(k)]
    pairs = [(classes[i], classes[j], int(m[i, j])) for i in range(k) for j in range(k) if i != j and m[i, j]]
    expected = sorted(pairs, key=lambda x: -x[2])
    result = SimpleNamespace(confusion=m, classes=classes)
    assert most_confused(result, top=5) == expected[:5]
    assert most_confused(result, top=100) == expected
    big = torch.zeros(5000, 5000, dtype=torch.long)
    big[4999, 3], big[7, 7], big[1, 2] = 9, 50, 9
    many = SimpleNamespace(confusion=big, classes=[str(i) for i in range(5000)])
    assert most_confused(many) == [("1", "2", 9), ("4999", "3", 9)]
