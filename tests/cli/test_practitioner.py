"""What a new user tries with a small folder of their own photos: the README's fine-tune command works
(the batch capped to the data, said), the input size is the weights' own (said), lopsided classes are
counted (and --balance takes them), evaluate names its mistakes, predict takes a whole folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.train.conftest import QUIET

from .conftest import cli


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """An unbalanced folder of grey 40x40 images: 15 of "boot", 5 of "bag" (split 80/20 by resdense)."""
    g = torch.Generator().manual_seed(0)
    root = tmp_path / "my-shoes"
    for cls, n in (("boot", 15), ("bag", 5)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            arr = torch.randint(0, 120, (40, 40), generator=g, dtype=torch.uint8)
            if cls == "boot":
                arr[20:] += 120  # a bright lower half
            Image.fromarray(arr.numpy()).save(root / cls / f"{i}.png")
    return root


def test_readme_finetune_command_on_a_small_folder(photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    # the README's command, as written there (the default recipe's batch of 128 > the 16 training images)
    code, stdout, err = cli(
        capsys,
        "train",
        "--weights",
        "fashion-mnist",
        "--dataset",
        "folder",
        "--data-dir",
        photos,
        "--freeze",
        "backbone",
        "--epochs",
        "1",
        "--out",
        out,
        *QUIET,
    )
    assert code == 0, err
    assert "input size 28x28: the weights' own (fashion-mnist:" in stdout
    assert "--batch-size 128 capped to 16: the training set has 16 images" in stdout
    assert "training images per class: bag 4, boot 12 (unbalanced, 3.0x; --balance sampler evens" in stdout
    assert json.loads((out / "config.json").read_text())["batch_size"] == 16  # what the run really did

    code, stdout, err = cli(capsys, "evaluate", out, "--json")
    assert code == 0, err
    res = json.loads(stdout)
    rows = list(csv.DictReader((out / "mistakes.csv").open()))
    assert len(rows) == len(res["mistakes"]) == round(res["n"] * (1 - res["accuracy"]))
    for m, row in zip(res["mistakes"], rows):
        assert Path(m["file"]).parent.parent == photos and Path(m["file"]).parent.name == m["true"]
        assert row["file"] == m["file"] and m["true"] != m["predicted"]
    assert [m["p_true"] for m in res["mistakes"]] == sorted(m["p_true"] for m in res["mistakes"])
    assert str(out / "mistakes.csv") in res["figures"]

    code, stdout, err = cli(
        capsys, "predict", out, photos, "--out", tmp_path / "preds.csv", "--batch-size", "3"
    )
    assert code == 0, err
    preds = list(csv.DictReader((tmp_path / "preds.csv").open()))
    assert len(preds) == 20 and {p["class"] for p in preds} <= {"bag", "boot"}
    assert len(stdout.strip().splitlines()) == 20 and "20 predictions" in err
    code, _, err = cli(capsys, "predict", out, photos, "--out", tmp_path / "preds.txt")
    assert code == 2 and "expected a .csv or .json" in err

    code, stdout, err = cli(
        capsys,
        "train",
        "--weights",
        "fashion-mnist",
        "--dataset",
        "folder",
        "--data-dir",
        photos,
        "--epochs",
        "1",
        "--out",
        tmp_path / "bal",
        "--balance",
        "sampler",
        "--resize",
        "32",
        *QUIET,
    )
    assert code == 0, err
    assert "balanced by --balance sampler" in stdout and "input size" not in stdout  # --resize said it


def test_no_mistakes_is_drawn_not_blank() -> None:
    from resdense.plots import mistakes_figure

    fig = mistakes_figure(torch.zeros(0, 1, 28, 28, dtype=torch.uint8), [], [], ["a", "b"])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no mistakes" in t for t in texts)
