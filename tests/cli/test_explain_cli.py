"""``resdense explain`` and ``resdense inspect RUN --image``, on the tiny run trained here and the shipped
weights: files written, what they print, the one-line errors."""

from __future__ import annotations

import json

import torch
from PIL import Image

from tests.cli.conftest import cli
from tests.train.conftest import assert_one_line_error, pattern_images

PNG = b"\x89PNG\r\n\x1a\n"


def band_images(tmp_path, n: int = 4) -> list:
    paths = []
    for k, img in enumerate(pattern_images(torch.arange(n) % 4, seed=7)):
        p = tmp_path / f"band{k}.png"
        Image.fromarray(img.numpy()).save(p)
        paths.append(p)
    return paths


def test_explain_a_run(capsys, finished_run, tmp_path):
    run, _ = finished_run
    images = band_images(tmp_path)
    code, out, err = cli(capsys, "explain", run, *images, "--out", tmp_path / "figs", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert (tmp_path / "figs" / "explain.png").read_bytes()[:8] == PNG and d["figure"].endswith("explain.png")
    assert [e["path"] for e in d["images"]] == [str(p) for p in images]
    for e in d["images"]:
        assert (
            e["layer"] == "layer3"
            and e["class"] == e["predicted"]
            and set(e["peak"]) == {"gradcam", "gradcam++"}
        )
    # the prediction is the one `predict` gives
    code, out, _ = cli(capsys, "predict", run, images[0], "--json", "--top", "1")
    assert json.loads(out)[0]["top"][0]["class"] == d["images"][0]["predicted"]


def test_explain_a_named_class_at_a_named_layer(capsys, finished_run, tmp_path):
    run, _ = finished_run
    (image,) = band_images(tmp_path, 1)
    code, out, err = cli(
        capsys,
        "explain",
        run,
        image,
        "--class",
        "2",
        "--layer",
        "layer2.1",
        "--method",
        "gradcam",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    assert f"{image}: predicted " in out and "map of 2 at layer2.1" in out
    assert out.strip().endswith(f"figure: {tmp_path / 'explain.png'}")


def test_explain_errors_are_one_line(capsys, finished_run, tmp_path):
    run, _ = finished_run
    (image,) = band_images(tmp_path, 1)
    code, _, err = cli(capsys, "explain", run, image, "--layer", "layer4")
    assert_one_line_error(code, err, "--layer layer4", "layer3.2", command="explain")
    code, _, err = cli(capsys, "explain", run, image, "--class", "Boot")
    assert_one_line_error(code, err, "'Boot'", "4 classes: 0, 1, 2, 3", command="explain")
    code, _, err = cli(capsys, "explain", run, image, "--layer", "fc")
    assert_one_line_error(code, err, "--layer fc", "not a feature map", command="explain")
    code, _, err = cli(capsys, "explain", run, tmp_path / "missing.png")
    assert_one_line_error(code, err, "missing.png", command="explain")


def test_explain_with_the_shipped_weights_writes_here(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    img = tmp_path / "boot.png"
    Image.fromarray((torch.rand(28, 28) * 120).to(torch.uint8).numpy()).save(img)
    code, out, err = cli(capsys, "explain", "--weights", "fashion-mnist", img)
    assert code == 0, err
    assert (tmp_path / "explain.png").read_bytes()[:8] == PNG and "at layer3" in out


def test_inspect_a_run_with_an_image(capsys, finished_run, tmp_path):
    run, _ = finished_run
    (image,) = band_images(tmp_path, 1)
    out_png = tmp_path / "stages.png"
    code, out, err = cli(capsys, "inspect", run, "--image", image, "--out", out_png, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert out_png.read_bytes()[:8] == PNG
    assert [s["name"] for s in d["stages"]] == ["relu", "layer1", "layer2", "layer3"]
    assert [s["shape"] for s in d["stages"]] == [[4, 28, 28], [4, 28, 28], [8, 14, 14], [16, 7, 7]]


def test_inspect_the_books_resnet_with_an_image(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (image,) = band_images(tmp_path, 1)
    code, out, err = cli(capsys, "inspect", "d2l_resnet18", "--image", image)
    assert code == 0, err
    assert (tmp_path / "features.png").read_bytes()[:8] == PNG
    lines = out.splitlines()
    assert lines[0].startswith("d2l_resnet18 on") and len(lines) == 1 + 5 + 1
    assert "512x3x3" in lines[5]  # b5 at the book's 96 px
    code, _, err = cli(capsys, "inspect", "d2l_resnet18", "--image", image, "--out", tmp_path / "f.jpg")
    assert_one_line_error(code, err, "--out", ".png", command="inspect")
