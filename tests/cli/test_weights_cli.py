"""``--weights`` on the commands: the shipped Fashion-MNIST models with no training, torchvision weights from
a temporary TORCH_HOME, fine-tuning from a run, predict --invert, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from resdense.models import pretrained as P

from .conftest import cli


def shipped_meta(tag: str) -> dict:
    from safetensors import safe_open

    with safe_open(str(P.shipped_path(tag)), framework="pt") as f:
        return json.loads(f.metadata()["resdense_pretrained"])


SHIPPED_TAGS = list(P.SHIPPED_ORDER)  # every model the package declares must ship (a missing file fails)


@pytest.mark.parametrize("tag", SHIPPED_TAGS)
def test_shipped_weights_evaluate_to_their_stated_accuracy(capsys, real_fashion_mnist_dir, tag):
    meta = shipped_meta(tag)
    assert meta["recipe"] == tag and meta["config"]["recipe"] == tag and "resdense train" in meta["command"]
    code, out, err = cli(
        capsys,
        "evaluate",
        "--weights",
        f"fashion-mnist:{tag}",
        "--data-dir",
        real_fashion_mnist_dir,
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 10_000
    assert result["accuracy"] == meta["test_accuracy"]
    assert result["figures"] == []  # nothing written into the installed package


def save_png(img: torch.Tensor, path: Path) -> Path:
    Image.fromarray(img.squeeze(0).numpy()).resize((112, 112)).save(path)
    return path


@pytest.fixture(scope="module")
def test_images(real_fashion_mnist_dir) -> tuple[torch.Tensor, torch.Tensor]:
    from resdense.data.fashion_mnist import load_fashion_mnist

    test = load_fashion_mnist(real_fashion_mnist_dir, download=False, progress=False).test
    return test.images[:40], test.labels[:40]


def test_predict_with_shipped_weights_and_invert(capsys, tmp_path, test_images):
    from resdense.data.fashion_mnist import CLASSES

    images, labels = test_images
    i = next(j for j in range(40) if int(labels[j]) == 7)  # a sneaker
    plain = save_png(images[i], tmp_path / "sneaker.png")
    photo = save_png(255 - images[i], tmp_path / "sneaker-on-white.png")  # dark on light, as a photo

    code, out, err = cli(capsys, "predict", "--weights", "fashion-mnist", plain, photo, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert [r["top"][0]["class"] for r in got] == [CLASSES[7], CLASSES[7]]
    assert "inverted" not in got[0] and got[1]["inverted"] is True
    assert err.count("inverted") == 1 and "sneaker-on-white.png: light background" in err

    code, out, err = cli(
        capsys, "predict", "--weights", "fashion-mnist:fast", photo, "--invert", "no", "--json"
    )
    assert code == 0 and "inverted" not in err and "inverted" not in json.loads(out)[0]
    code, out, err = cli(
        capsys, "predict", "--weights", "fashion-mnist:fast", plain, "--invert", "yes", "--json"
    )
    assert code == 0 and json.loads(out)[0]["inverted"] is True


def test_inspect_and_export_shipped_weights(capsys, tmp_path):
    code, out, err = cli(
        capsys, "inspect", "resnet20", "--weights", "fashion-mnist:fast", "--input-size", "1", "28", "28"
    )
    assert code == 0, err
    assert "weights: fashion-mnist:fast" in out and "10 classes (T-shirt/top" in out and "recipe fast" in out
    dest = tmp_path / "fm.pt"
    code, out, err = cli(
        capsys, "export", "--weights", "fashion-mnist:fast", "--format", "torchscript", "--out", dest
    )
    assert code == 0, err
    assert dest.exists() and "self-check" in out
    # the export reads back as weights too
    import resdense

    net = resdense.create_model("resnet20", weights=dest)
    ref = resdense.create_model("resnet20", weights="fashion-mnist:fast")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))


def test_torchvision_weights_predict_imagenet_classes(capsys, tmp_path, monkeypatch):
    tv_models = pytest.importorskip("torchvision.models")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    folder = tmp_path / "th" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(tv_models.resnet18().state_dict(), folder / "resnet18-f37072fd.pth")
    img = tmp_path / "x.png"
    Image.fromarray((torch.rand(300, 200, 3) * 255).byte().numpy()).save(img)
    code, out, err = cli(capsys, "predict", "--weights", "IMAGENET1K_V1", "--arch", "resnet18", img, "--json")
    assert code == 0, err
    top = json.loads(out)[0]["top"]
    classes = set(P.imagenet_classes())
    assert len(top) == 3 and all(t["class"] in classes for t in top)


def test_train_from_shipped_weights_freezes_the_backbone(capsys, idx_dir, tmp_path):
    """A 4-class set from the 10-class shipped model: new head said, body frozen, stats untouched."""
    out = tmp_path / "ft"
    code, stdout, err = cli(
        capsys,
        "train",
        "--weights",
        "fashion-mnist:fast",
        "--freeze",
        "backbone",
        "--head-lr-mult",
        "10",
        "--dataset",
        "idx",
        "--data-dir",
        idx_dir,
        "--out",
        out,
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-subset",
        "64",
        "--device",
        "cpu",
        "--no-progress",
        "--no-tta-flip",
    )
    assert code == 0, err
    assert "classifier re-initialised for 4 classes (the weights have 10)" in err
    assert "--freeze backbone: 260 of" in stdout
    from safetensors.torch import load_file

    new, old = load_file(str(out / "model.safetensors")), load_file(str(P.shipped_path("fast")))
    assert {k for k in new if not torch.equal(new[k], old[k])} == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["evaluate", "--weights", "nope.pth"], ["nope.pth", "no such file"]),
        (["predict", "--weights", "fashion-mnist:huge", "x.png"], ["fashion-mnist:huge"]),
        (["predict", "--weights", "IMAGENET1K_V1", "x.png"], ["--arch"]),
        (
            ["train", "--weights", "fashion-mnist", "--model", "resnet32", "--epochs", "1"],
            ["resnet20", "resnet32"],
        ),
        (["inspect", "resnet18", "--weights", "IMAGENET1K_V9"], ["IMAGENET1K_V9"]),
    ],
)
def test_bad_weights_are_one_line_errors(capsys, tmp_path, argv, needles):
    code, out, err = cli(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), lines[0]


def test_finetune_recipe_on_an_image_folder(capsys, tmp_path, monkeypatch):
    """d2l 14.2's recipe end to end on a tiny folder: ImageNet weights (a stand-in file under torchvision's
    name), new 2-class head, random-resized crops of 224 in training, centre 224 of 256 for evaluation."""
    tv_models = pytest.importorskip("torchvision.models")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    folder = tmp_path / "th" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(tv_models.resnet18().state_dict(), folder / "resnet18-f37072fd.pth")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 8), ("test", 4)):
        for k, cls in enumerate(("hotdog", "not-hotdog")):
            (tmp_path / "photos" / split / cls).mkdir(parents=True)
            for i in range(n):
                img = (torch.rand(40 + 8 * i, 60, 3, generator=g) * 120 + 100 * k).byte().numpy()
                Image.fromarray(img).save(tmp_path / "photos" / split / cls / f"{i}.jpg")
    out = tmp_path / "ft"
    code, stdout, err = cli(
        capsys,
        "train",
        "--recipe",
        "finetune",
        "--data-dir",
        tmp_path / "photos",
        "--out",
        out,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert code == 0, err
    assert "classifier re-initialised for 2 classes (the weights have 1000)" in err
    assert "normalising with the weights' mean (0.485, 0.456, 0.406)" in stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["weights"] == "IMAGENET1K_V1" and cfg["head_lr_mult"] == 10.0 and cfg["augment"] == "rrc-flip"
    assert cfg["preprocess"] == {
        "size": 256,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "in_chans": 3,
        "crop": 224,
        "fit": "shorter",
    }
    code, stdout, err = cli(capsys, "evaluate", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["accuracy"] == json.loads((out / "summary.json").read_text())["test_accuracy"]
