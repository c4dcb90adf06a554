"""``resdense.serve.evaluate``: scoring, ``evaluate`` on a given test set and predictor, the figures."""

import json

import pytest
import torch

import resdense
from resdense.data.dataset import ImageSet
from resdense.errors import UserError
from resdense.modelfile import ModelSpec
from resdense.preprocess import Preprocess
from resdense.rundir import RunDir
from resdense.serve import Predictor
from resdense.serve.evaluate import EvalResult, evaluate, score, write_figures

OPTIONS = {"num_classes": 3, "in_chans": 1, "widths": [4, 8, 16]}
CLASSES = ["a", "b", "c"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    model = resdense.create_model("resnet20", **OPTIONS).eval()
    spec = ModelSpec("resnet20", dict(OPTIONS), Preprocess(16, (0.5,), (0.25,), 1), list(CLASSES))
    return Predictor.for_model(model, spec)


def uint8_images(n: int, size: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=g).to(torch.uint8)


def one_hot_logits(pred: list[int], k: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), k).float()


# -- score -------------------------------------------------------------------------------------------------


def test_score():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = [0, 1, 1, 2, 0, 2]
    acc, per_class, confusion = score(one_hot_logits(pred), labels, CLASSES)
    assert acc == 4 / 6
    assert per_class == {"a": 1 / 2, "b": 1.0, "c": 2 / 3}
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows true, columns predicted
    assert int(confusion.sum()) == len(labels)


def test_score_all_right_and_all_wrong():
    labels = torch.tensor([2, 1, 0, 1])
    acc, per_class, confusion = score(one_hot_logits(labels.tolist()), labels, CLASSES)
    assert acc == 1.0 and set(per_class.values()) == {1.0}
    assert torch.equal(confusion, torch.diag(torch.tensor([1, 2, 1])))
    acc, per_class, _ = score(one_hot_logits(((labels + 1) % 3).tolist()), labels, CLASSES)
    assert acc == 0.0 and set(per_class.values()) == {0.0}


def test_score_with_a_class_missing_from_the_test_set():
    labels = torch.tensor([0, 0, 1])
    acc, per_class, confusion = score(one_hot_logits([0, 1, 1]), labels, CLASSES)
    assert acc == 2 / 3
    assert per_class["c"] == 0.0  # no examples: no division by zero
    assert confusion.shape == (3, 3) and confusion[2].sum() == 0


# -- evaluate ----------------------------------------------------------------------------------------------


def test_evaluate_with_given_test_set_and_predictor(predictor, tmp_path):
    images = uint8_images(12)
    pred = predictor.predict(images)
    labels = pred.clone()
    labels[:3] = (labels[:3] + 1) % 3  # three mistakes
    result = evaluate(tmp_path, test_set=ImageSet(images, labels), predictor=predictor)
    assert isinstance(result, EvalResult)
    assert result.n == 12 and result.classes == CLASSES
    assert result.accuracy == 9 / 12
    assert torch.equal(result.predictions, pred)
    assert int(result.confusion.sum()) == 12 and int(result.confusion.trace()) == 9
    expected_acc, expected_per_class, expected_confusion = score(
        predictor.predict_logits(images), labels, CLASSES
    )
    assert result.accuracy == expected_acc and result.per_class == expected_per_class
    assert torch.equal(result.confusion, expected_confusion)


def test_evaluate_all_right(predictor, tmp_path):
    images = uint8_images(6, size=16, seed=3)
    result = evaluate(
        tmp_path / "m.safetensors", test_set=ImageSet(images, predictor.predict(images)), predictor=predictor
    )
    assert result.accuracy == 1.0
    assert int(result.confusion.sum()) == int(result.confusion.trace()) == 6  # nothing off the diagonal


def test_evaluate_refuses_a_test_set_with_more_classes(predictor, tmp_path):
    images = uint8_images(4)
    with pytest.raises(UserError, match="3 classes") as e:
        evaluate(
            tmp_path / "model.safetensors",
            test_set=ImageSet(images, torch.tensor([0, 1, 2, 3])),
            predictor=predictor,
        )
    assert "model.safetensors" in str(e.value) and "4" in str(e.value)


def test_eval_result_to_json(predictor, tmp_path):
    images = uint8_images(5)
    labels = torch.tensor([0, 1, 2, 0, 1])
    result = evaluate(tmp_path, test_set=ImageSet(images, labels), predictor=predictor)
    d = result.to_json()
    # the metrics of serve.metrics, from the same logits (3 classes: no top-5)
    assert set(d) == {
        *("accuracy", "n", "per_class_accuracy", "confusion", "classes"),
        *("macro_f1", "ece", "calibration", "per_class"),
    }
    assert set(d["per_class"]) == set(CLASSES) and d["per_class"]["a"]["support"] == 2
    assert d["n"] == 5 and d["classes"] == CLASSES and d["accuracy"] == result.accuracy
    assert d["confusion"] == result.confusion.tolist()
    assert d["per_class_accuracy"] == result.per_class
    assert json.loads(json.dumps(d)) == d


# -- figures -----------------------------------------------------------------------------------------------


def test_write_figures(predictor, tmp_path):
    images = uint8_images(8)
    labels = (predictor.predict(images) + torch.tensor([0, 1, 0, 2, 0, 0, 1, 0])) % 3
    test_set = ImageSet(images, labels)
    result = evaluate(tmp_path, test_set=test_set, predictor=predictor)
    out = tmp_path / "figures" / "here"
    paths = write_figures(result, test_set, out, max_mistakes=2)
    assert paths == [out / RunDir.CONFUSION, out / RunDir.RELIABILITY, out / RunDir.MISTAKES]
    for p in paths:
        assert p.read_bytes()[:8] == PNG
    names = [RunDir.CONFUSION, RunDir.MISTAKES, RunDir.RELIABILITY]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)


def test_write_figures_without_mistakes(predictor, tmp_path):
    images = uint8_images(4)
    test_set = ImageSet(images, predictor.predict(images))
    result = evaluate(tmp_path, test_set=test_set, predictor=predictor)
    paths = write_figures(result, test_set, tmp_path)
    assert all(p.read_bytes()[:8] == PNG for p in paths)


def test_write_figures_skips_the_confusion_figure_of_many_classes(predictor, tmp_path, caplog):
    """10,000 one-image classes ended in a MemoryError drawing the confusion figure (issue 37): above
    CONFUSION_FIGURE_MAX_CLASSES it is skipped, with the reason said; the mistakes figure is still drawn."""
    from resdense.serve.evaluate import CONFUSION_FIGURE_MAX_CLASSES

    k = CONFUSION_FIGURE_MAX_CLASSES + 1
    images = uint8_images(4)
    labels = torch.tensor([0, 1, 2, 3])
    preds = torch.tensor([1, 1, 0, 5])
    result = EvalResult(
        0.25, {}, torch.zeros(k, k, dtype=torch.long), preds, [f"c{i}" for i in range(k)], 4, None, predictor
    )
    with caplog.at_level("WARNING", logger="resdense"):
        paths = write_figures(result, ImageSet(images, labels), tmp_path, max_mistakes=2)
    assert paths == [tmp_path / RunDir.MISTAKES] and not (tmp_path / RunDir.CONFUSION).exists()
    assert f"{RunDir.CONFUSION} not drawn: {k:,} classes" in caplog.text


def test_the_accuracy_is_said_before_any_figure_is_drawn(tmp_path_factory, monkeypatch, capsys):
    """Issue 37: with many classes the figures take long or are skipped with a warning; the accuracy comes
    first (``on_scored``, which ``resdense evaluate`` prints), then the figures."""
    from resdense.cli import main
    from resdense.serve import evaluate as ev
    from tests.train.conftest import shared_finished_run

    run, _ = shared_finished_run(tmp_path_factory)
    order = []
    drawn = ev.write_figures
    monkeypatch.setattr(ev, "write_figures", lambda *a, **k: (order.append("figures"), drawn(*a, **k))[1])
    report = ev.evaluate_source(
        run, out=tmp_path_factory.mktemp("figs"), on_scored=lambda r: order.append(r.headline())
    )
    assert order == [report.headline(), "figures"]
    capsys.readouterr()
    monkeypatch.setattr(ev, "write_figures", lambda *a, **k: print("FIGURES") or [])
    assert main(["evaluate", str(run), "--out", str(tmp_path_factory.mktemp("figs2"))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == report.headline() and out[1] == "FIGURES" and out.count(report.headline()) == 1
