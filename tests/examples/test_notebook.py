"""The example notebook, executed top to bottom in a real Jupyter kernel (nbclient), at a small size.

The kernel is this test's own Python (a kernelspec written to a temporary JUPYTER_PATH), so a fresh clone's
.venv is what runs it, whatever kernels the machine has installed.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import resdense

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "resnet_densenet.ipynb"
EPOCHS = 2
SMALL = f"EPOCHS = {EPOCHS}\nTRAIN_SUBSET = 128\nTEST_SUBSET = 128\nRESIZE = 32\nBATCH_SIZE = 32\n"
KERNEL = "resdense-test"
WIDGET = "application/vnd.jupyter.widget-view+json"

# cells the test adds around the notebook's own: the user's plotting state before and after training
BEFORE = (
    "import matplotlib\n"
    "_backend = matplotlib.get_backend()\n"
    "_rc = {k: repr(v) for k, v in matplotlib.rcParams.items()}\n"
    "print('backend before', _backend)"
)
AFTER = (
    "assert matplotlib.get_backend() == _backend, (matplotlib.get_backend(), _backend)\n"
    "_changed = [k for k, v in matplotlib.rcParams.items() if repr(v) != _rc[k]]\n"
    "assert not _changed, _changed\n"
    "print('backend after', matplotlib.get_backend())"
)
USER_PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"


class RecordingClient(NotebookClient):
    """Counts, per cell, the display messages the kernel sent (the outputs keep only the final state)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.messages: dict[int, list[dict]] = {}

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] in ("display_data", "update_display_data"):
            self.messages.setdefault(cell_index, []).append(msg)
        return super().process_message(msg, cell, cell_index)


def write_kernelspec(root: Path) -> None:
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    src = str(Path(resdense.__file__).resolve().parents[1])  # the resdense under test, installed or not
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "resdense test",
                "language": "python",
                "env": {"PYTHONPATH": path, "OMP_NUM_THREADS": "2"},
            }
        )
    )


def tagged(nb, tag: str) -> int:
    hits = [i for i, c in enumerate(nb.cells) if tag in c.get("metadata", {}).get("tags", [])]
    assert len(hits) == 1, f"one cell tagged {tag!r} expected"
    return hits[0]


@pytest.fixture(scope="module")
def executed(real_fashion_mnist_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notebook")
    write_kernelspec(tmp / "jupyter")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = tagged(nb, "parameters")
    nb.cells[params].source = SMALL + f"DATA_DIR = {real_fashion_mnist_dir!r}\n"
    train = tagged(nb, "train")
    nb.cells.insert(train + 1, nbformat.v4.new_code_cell(USER_PLOT))
    nb.cells.insert(train + 1, nbformat.v4.new_code_cell(AFTER))
    nb.cells.insert(train, nbformat.v4.new_code_cell(BEFORE))
    train += 1
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(tmp / "jupyter")
    try:
        client = RecordingClient(
            nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(tmp)}}
        )
        client.execute()  # raises CellExecutionError, with the cell's traceback, on any error
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH")
        else:
            os.environ["JUPYTER_PATH"] = old
    return nb, client, train, tmp


def images(cell) -> list[dict]:
    return [o for o in cell.outputs if "image/png" in o.get("data", {})]


def test_notebook_runs_and_writes_both_runs(executed):
    nb, _, _, tmp = executed
    for run in ("d2l-resnet", "d2l-densenet"):
        assert (tmp / "runs" / run / "model.safetensors").exists()
        assert len((tmp / "runs" / run / "metrics.csv").read_text().splitlines()) == 1 + EPOCHS
    assert (tmp / "runs" / "compare.png").exists()
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def test_training_cell_shows_a_widget_and_one_live_figure_updated_in_place(executed):
    nb, client, train, _ = executed
    cell = nb.cells[train]
    assert any(WIDGET in o.get("data", {}) for o in cell.outputs), "no progress widget"
    figures = images(cell)
    assert len(figures) == 1, f"{len(figures)} figure outputs, expected one updated in place"
    sent = [m for m in client.messages[train] if "image/png" in m["content"]["data"]]
    kinds = [m["msg_type"] for m in sent]
    assert kinds == ["display_data"] + ["update_display_data"] * (EPOCHS - 1), kinds
    # the output holds the last epoch's figure, not the first one's
    first, last = (base64.b64decode(m["content"]["data"]["image/png"]) for m in (sent[0], sent[-1]))
    assert first != last
    assert base64.b64decode(figures[0]["data"]["image/png"]) == last
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert f"epoch {EPOCHS}/{EPOCHS}:" in text and "done: test accuracy" in text


def test_users_plots_still_work_after_training(executed):
    nb, _, train, _ = executed
    after, user_plot = nb.cells[train + 1], nb.cells[train + 2]
    assert "backend after" in "".join(o.get("text", "") for o in after.outputs)
    assert len(images(user_plot)) == 1, "plt.show() displayed nothing after train()"


def test_compare_and_evaluate_show_their_figures_inline(executed):
    nb, *_ = executed
    compare_cell = next(c for c in nb.cells if "compare([" in c.source)
    evaluate_cell = next(c for c in nb.cells if "write_figures(" in c.source)
    assert len(images(compare_cell)) == 1
    assert len(images(evaluate_cell)) == 3  # the confusion matrix, the reliability diagram and the mistakes


def test_the_blocks_feature_maps_and_the_explanation_are_shown_inline(executed):
    nb, *_ = executed
    features = [c for c in nb.cells if "show_features(" in c.source]
    explained = next(c for c in nb.cells if "resdense.explain(" in c.source)
    assert len(features) == 2 and all(
        len(images(c)) == 1 for c in features
    )  # the ResNet's and the DenseNet's
    assert len(images(explained)) == 1
    text = "".join(o.get("text", "") for o in explained.outputs if o.output_type == "stream")
    assert "predicted" in text and "at layer 4" in text  # b5, the model family's own choice
