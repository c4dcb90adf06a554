"""Figures as a reader needs them (issue 23): whole-number epochs, the accuracy on the confusion matrix, and
runs scored only at the end drawn as curves in the comparison."""

import torch

from resdense import plots


def _rows(epochs, scored):
    return [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_acc": 0.5 + 0.05 * e,
            **({"test_acc": 0.6} if e in scored else {}),
        }
        for e in range(1, epochs + 1)
    ]


def _integer_ticks(ax):
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    return ticks and all(float(t).is_integer() for t in ticks)


def test_confusion_title_says_the_accuracy():
    m = torch.tensor([[8, 2], [1, 9]])
    ax = plots.confusion_figure(m, ["a", "b"]).axes[0]
    assert ax.get_title() == "accuracy 0.8500 on 20 images"


def test_compare_draws_a_run_scored_only_at_the_end_as_a_curve():
    fig = plots.compare_figure([("every epoch", _rows(4, {1, 2, 3, 4})), ("progressive", _rows(4, {4}))])
    ax = fig.axes[0]
    lengths = sorted(len(line.get_xdata()) for line in ax.get_lines())
    # the scored-every-epoch run (4 points), the end-scored run's test dot (1) and its train curve (4)
    assert lengths == [1, 4, 4]
    assert _integer_ticks(ax) and ax.get_xlabel() == "epoch"


def test_curves_have_whole_number_epochs():
    ax = plots.curves_figure(_rows(3, {1, 2, 3})).axes[0]
    assert _integer_ticks(ax)


def test_names_that_are_not_utf8_are_drawn_escaped(tmp_path) -> None:
    """A class or file name with bytes that are not UTF-8 (os.fsdecode's surrogates) was a TypeError in the
    font at the save (evaluate, explain, issue 37); it is drawn as its bytes, as the output files write it."""
    import os

    name = os.fsdecode(b"caf\xe9")
    fig = plots.confusion_figure(torch.tensor([[1, 2], [3, 4]]), [name, "b"])
    fig.axes[0].set_title(name)
    path = plots.save_figure(fig, tmp_path / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert fig.axes[0].get_title() == "caf\\xe9"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["caf\\xe9", "b"]


def test_reliability_figure_draws_each_bins_accuracy():
    from resdense.plots import reliability_figure
    from resdense.serve.metrics import classification_metrics

    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.5, 0.0], [4.0, 0.0]])
    m = classification_metrics(logits, torch.tensor([0, 1, 1, 1]), ["a", "b"])
    fig = reliability_figure(m["calibration"]["reliability"], m["ece"])
    top = fig.axes[0]
    full = [b for b in m["calibration"]["reliability"] if b["count"]]
    heights = [p.get_height() for p in top.patches][: len(full)]
    assert heights == [b["accuracy"] for b in full]
    assert f"{m['ece']:.4f}" in top.get_title()
