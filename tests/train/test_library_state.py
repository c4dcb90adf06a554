"""train(), evaluate's and compare's figures leave the caller's process as they found it."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from resdense.serve.compare import compare
from resdense.serve.evaluate import evaluate, write_figures
from resdense.train import TrainConfig, train
from resdense.utils import system


@pytest.fixture
def svg_backend():
    """A user's own backend (not Agg, which the old code forced), pyplot in use; restored afterwards."""
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        yield plt
    finally:
        plt.close("all")
        matplotlib.use(before)


def test_train_and_reports_leave_plotting_rng_threads_and_allocator_alone(idx_dir, tmp_path, svg_backend):
    plt = svg_backend
    user_fig = plt.figure()
    rc = {k: repr(v) for k, v in matplotlib.rcParams.items()}
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    expected = torch.rand(5)
    torch.manual_seed(1234)

    cfg = TrainConfig(
        model="resnet20",
        model_options={"widths": [4, 8, 16]},
        dataset="idx",
        data_dir=str(idx_dir),
        epochs=1,
        batch_size=32,
        tta_flip=False,
        device="cpu",
        out=str(tmp_path / "run"),
        seed=7,
    )
    result = train(cfg, progress=False)
    # the run seeded itself (seed 7) and drew its own numbers; the caller's stream goes on where it was
    assert torch.equal(torch.rand(5), expected), "train() changed the caller's random stream"
    scores = evaluate(result.out_dir, data_dir=str(idx_dir))
    from resdense.serve.evaluate import load_test_set

    write_figures(scores, load_test_set(result.out_dir, data_dir=str(idx_dir)), tmp_path / "figs")
    compare([result.out_dir], plot=tmp_path / "compare.png")
    for name in ("run/curves.png", "figs/confusion.png", "figs/mistakes.png", "compare.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name

    assert matplotlib.get_backend() == "svg"
    assert plt.get_fignums() == [user_fig.number] and plt.gcf() is user_fig
    assert [k for k, v in matplotlib.rcParams.items() if repr(v) != rc[k]] == []
    assert torch.get_num_threads() == threads
    assert not system._tuned, "the allocator setting outlived the run"
