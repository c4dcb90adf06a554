"""``resdense.serve.metrics``: top-5, per-class precision/recall/F1, macro-F1 and the ECE, against figures
worked out by hand on small cases (and scikit-learn's and Guo et al.'s definitions, written out here)."""

import math
from dataclasses import fields

import pytest
import torch

from resdense.serve.metrics import ECE_BINS, Tally, classification_metrics, expected_calibration_error


def one_hot_logits(pred: list[int], k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), k).float() * 10


def confident(p: list[float], pred: list[int]) -> torch.Tensor:
    """Two-class logits whose softmax gives probability p[i] to class pred[i]."""
    rows = [
        [math.log(q), math.log(1 - q)] if c == 0 else [math.log(1 - q), math.log(q)] for q, c in zip(p, pred)
    ]
    return torch.tensor(rows, dtype=torch.float64).float()


def test_precision_recall_f1_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    m = classification_metrics(one_hot_logits([0, 1, 1, 1, 0, 2], 3), labels, ["a", "b", "c"])
    # a: 1 right of 2 predicted, 1 of 2 found; b: 2 of 3 predicted, 2 of 2 found; c: 1 of 1, 1 of 2
    by_hand = {"a": (1 / 2, 1 / 2, 1 / 2), "b": (2 / 3, 1.0, 0.8), "c": (1.0, 1 / 2, 2 / 3)}
    for c, (p, r, f) in by_hand.items():
        assert m["per_class"][c]["precision"] == pytest.approx(p)
        assert m["per_class"][c]["recall"] == pytest.approx(r)
        assert m["per_class"][c]["f1"] == pytest.approx(f)
        assert m["per_class"][c]["support"] == 2
    assert m["macro_f1"] == pytest.approx((1 / 2 + 0.8 + 2 / 3) / 3)
    assert "top5_accuracy" not in m  # 3 classes: top-5 would be 1 whatever the model


def test_macro_f1_over_the_classes_seen_as_scikit_learn():
    # scikit-learn's f1_score(average="macro") without labels=: classes in the labels or the predictions;
    # a class predicted but never present counts (F1 0), one neither present nor predicted does not
    labels = torch.tensor([0, 0, 1, 1])
    m = classification_metrics(one_hot_logits([0, 0, 1, 2], 4), labels, ["a", "b", "c", "d"])
    f1 = {c: v["f1"] for c, v in m["per_class"].items()}
    assert f1 == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 0.0, "d": 0.0})
    assert m["per_class"]["c"]["precision"] == 0.0 and m["per_class"]["c"]["recall"] == 0.0
    assert m["per_class"]["d"]["support"] == 0
    assert m["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)


def test_top5_by_hand():
    # seven classes; the true class ranks 1st, 5th and 6th: two of three within the top five
    logits = torch.tensor([[7.0, 6, 5, 4, 3, 2, 1], [7.0, 6, 5, 4, 3, 2, 1], [7.0, 6, 5, 4, 3, 2, 1]])
    labels = torch.tensor([0, 4, 5])
    m = classification_metrics(logits, labels, list("abcdefg"))
    assert m["top5_accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["a"]["recall"] == 1.0 and m["per_class"]["e"]["recall"] == 0.0


def test_ece_by_hand():
    # confidences .9 (right), .9 (wrong), .7 (right), .58 (wrong): three bins of 1/15
    logits = confident([0.9, 0.9, 0.7, 0.58], [0, 0, 1, 1])
    labels = torch.tensor([0, 1, 1, 0])
    m = classification_metrics(logits, labels, ["x", "y"])
    # bin (13/15, 14/15]: 2 images, accuracy .5, confidence .9; (10/15, 11/15]: 1, 1.0, .7; (8/15, 9/15]: 1, 0, .58
    assert m["ece"] == pytest.approx(2 / 4 * 0.4 + 1 / 4 * 0.3 + 1 / 4 * 0.58, abs=1e-6)
    bins = m["calibration"]["reliability"]
    assert len(bins) == ECE_BINS == m["calibration"]["bins"] == 15
    assert [b["count"] for b in bins] == [0] * 8 + [1, 0, 1, 0, 0, 2, 0]
    assert bins[13]["accuracy"] == 0.5 and bins[13]["confidence"] == pytest.approx(0.9)
    assert bins[0]["accuracy"] is None and bins[0]["lo"] == 0.0 and bins[14]["hi"] == 1.0
    assert expected_calibration_error(logits, labels) == pytest.approx(m["ece"])


def test_ece_perfect_and_overconfident():
    # certain and right: no gap
    assert expected_calibration_error(one_hot_logits([0, 1, 2], 3) * 10, torch.tensor([0, 1, 2])) == 0.0
    # certain and always wrong: the whole confidence is the gap, and it lands in the last bin (lo, 1.0]
    m = classification_metrics(one_hot_logits([1, 2, 0], 3) * 10, torch.tensor([0, 1, 2]), list("abc"))
    assert m["ece"] == pytest.approx(1.0) and m["calibration"]["reliability"][-1]["count"] == 3


def guo_ece(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Guo et al.'s reference loop: bins (lower, upper], |accuracy - confidence| weighted by the bin's share."""
    conf, pred = logits.softmax(1).max(1)
    right = (pred == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.float().mean() * (right[inside].mean() - conf[inside].mean()).abs()
    return float(ece)


def test_ece_matches_the_reference_loop_on_random_logits():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(500, 10, generator=g) * 2
    labels = torch.randint(0, 10, (500,), generator=g)
    assert expected_calibration_error(logits, labels) == pytest.approx(guo_ece(logits, labels), abs=1e-5)


def test_tallies_add_up_as_torchrun_adds_them():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(64, 8, generator=g), torch.randint(0, 8, (64,), generator=g)
    classes = [str(i) for i in range(8)]
    whole = classification_metrics(logits, labels, classes)
    a, b = Tally.empty(8).add(logits[:20], labels[:20]), Tally.empty(8).add(logits[20:], labels[20:])
    # what an all-reduce of two processes gives: each sum added to the other's (reduced() goes field by field)
    theirs = iter([getattr(b, f.name) for f in fields(b)])
    summed = a.reduced(lambda t: t + next(theirs))
    m = summed.metrics(classes)
    assert summed.n == 64
    assert m["ece"] == pytest.approx(whole.pop("ece"))
    assert m["calibration"]["reliability"] == [
        {**row, "confidence": pytest.approx(row["confidence"])}
        for row in whole.pop("calibration")["reliability"]
    ]
    assert {k: v for k, v in m.items() if k not in ("ece", "calibration")} == whole


def test_many_classes_cost_vectors_not_a_matrix():
    k = 50_000
    logits = torch.zeros(4, k)
    logits[torch.arange(4), torch.tensor([0, 1, 2, 49_999])] = 5.0
    m = classification_metrics(logits, torch.tensor([0, 1, 3, 49_999]), [f"c{i}" for i in range(k)])
    t = Tally.empty(k)
    assert all(v.numel() <= k for v in vars(t).values())
    assert m["top5_accuracy"] >= 3 / 4  # class 3 ties with 49,997 others at 0: in the top five or not
    assert m["macro_f1"] == pytest.approx((1 + 1 + 0 + 0 + 1) / 5)  # classes 0, 1, 2, 3, 49999 seen
