"""``resdense.serve.predict``: classifying image files; and ``Predictor.predict_images`` for mixed sizes."""

import pytest
import torch
from PIL import Image

import resdense
from resdense.data.fashion_mnist import CLASSES as FASHION_CLASSES
from resdense.data.photo import read_image
from resdense.modelfile import ModelSpec
from resdense.preprocess import Preprocess, center_crop, resize_shorter
from resdense.serve import Predictor
from resdense.serve.predict import Prediction, has_light_background, predict_files

OPTIONS = {"num_classes": 3, "in_chans": 1, "widths": [4, 8, 16]}
CLASSES = ["a", "b", "c"]


def make_predictor(preprocess=None, classes=CLASSES, seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    options = dict(OPTIONS, num_classes=len(classes))
    model = resdense.create_model("resnet20", **options).eval()
    spec = ModelSpec("resnet20", options, preprocess or Preprocess(16, (0.5,), (0.25,), 1), list(classes))
    return Predictor.for_model(model, spec)


@pytest.fixture(scope="module")
def predictor():
    return make_predictor()


def noise(h: int, w: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, channels, h, w), generator=g).to(torch.uint8)


def write_png(path, image: torch.Tensor):
    """Save a uint8 (1, C, H, W) image as a PNG (grey or RGB)."""
    arr = image[0].permute(1, 2, 0).numpy()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
    return path


@pytest.fixture
def files(tmp_path):
    """Three readable images of different sizes and aspect ratios (one RGB), a broken one and a missing one."""
    good = [
        write_png(tmp_path / "wide.png", noise(20, 30, seed=1)),
        write_png(tmp_path / "square.png", noise(16, 16, seed=2)),
        write_png(tmp_path / "tall_rgb.png", noise(40, 24, channels=3, seed=3)),
    ]
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    missing = tmp_path / "missing.png"
    return {"good": good, "broken": broken, "missing": missing}


def probabilities(predictor, images) -> torch.Tensor:
    return predictor.predict_images(images).softmax(1)


# -- predict_files -----------------------------------------------------------------------------------------


def test_same_probabilities_as_predict_images(predictor, files):
    paths = files["good"]
    results = predict_files(predictor, paths, top_k=3)
    expected = probabilities(predictor, [read_image(p, 1) for p in paths])
    assert [r.path for r in results] == [str(p) for p in paths]
    for r, probs in zip(results, expected):
        assert r.error is None and not r.inverted
        assert [c for c, _ in r.top] == [CLASSES[i] for i in probs.argsort(descending=True).tolist()]
        got = {c: p for c, p in r.top}
        for i, c in enumerate(CLASSES):
            assert got[c] == pytest.approx(float(probs[i]), abs=1e-6)
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)


def test_bad_files_get_an_error_entry_and_do_not_stop_the_others(predictor, files):
    wide, square, tall = files["good"]
    paths = [files["broken"], wide, files["missing"], square, tall]
    results = predict_files(predictor, paths, top_k=2)
    assert [r.path for r in results] == [str(p) for p in paths]
    broken, r_wide, missing, r_square, r_tall = results
    for bad, path in ((broken, files["broken"]), (missing, files["missing"])):
        assert bad.error and str(path) in bad.error and bad.top == []
        assert bad.to_json() == {"path": str(path), "error": bad.error}
    # each good result is its own image's, not shifted by the bad ones
    for r, path in ((r_wide, wide), (r_square, square), (r_tall, tall)):
        assert r.error is None and len(r.top) == 2
        probs = probabilities(predictor, [read_image(path, 1)])[0]
        top = probs.topk(2)
        assert [c for c, _ in r.top] == [CLASSES[i] for i in top.indices.tolist()]
        assert [p for _, p in r.top] == pytest.approx(top.values.tolist(), abs=1e-6)


def test_only_bad_files(predictor, files):
    results = predict_files(predictor, [files["broken"], files["missing"]])
    assert len(results) == 2 and all(r.error and r.top == [] for r in results)
    assert predict_files(predictor, []) == []


def test_top_k_is_capped_and_ordered(predictor, files):
    [r] = predict_files(predictor, files["good"][:1], top_k=10)
    assert len(r.top) == 3
    values = [p for _, p in r.top]
    assert values == sorted(values, reverse=True)
    assert {c for c, _ in r.top} == set(CLASSES)
    [one] = predict_files(predictor, files["good"][:1], top_k=1)
    assert one.top == r.top[:1]
    assert one.to_json() == {
        "path": one.path,
        "top": [{"class": one.top[0][0], "probability": one.top[0][1]}],
    }


def test_different_sizes_batch_together_with_the_shorter_side_fit(files):
    p = make_predictor(Preprocess.centre(16, (0.5,), (0.25,), 1))
    results = predict_files(p, files["good"], top_k=3)
    expected = probabilities(p, [read_image(path, 1) for path in files["good"]])
    for r, probs in zip(results, expected):
        got = dict(r.top)
        assert [got[c] for c in CLASSES] == pytest.approx(probs.tolist(), abs=1e-6)


def test_invert_yes_inverts(predictor, files):
    paths = files["good"]
    results = predict_files(predictor, paths, invert="yes")
    expected = probabilities(predictor, [255 - read_image(path, 1) for path in paths])
    plain = probabilities(predictor, [read_image(path, 1) for path in paths])
    assert not torch.allclose(expected, plain)
    for r, probs in zip(results, expected):
        assert r.inverted and r.to_json()["inverted"] is True
        got = dict(r.top)
        assert [got[c] for c in CLASSES] == pytest.approx(probs.tolist(), abs=1e-6)
    for r in predict_files(predictor, paths, invert="no"):
        assert not r.inverted and "inverted" not in r.to_json()


def test_invert_auto(tmp_path):
    light = torch.full((1, 1, 24, 24), 240, dtype=torch.uint8)
    light[..., 8:16, 8:16] = 10
    dark = 255 - light
    paths = [write_png(tmp_path / "light.png", light), write_png(tmp_path / "dark.png", dark)]
    fashion = make_predictor(classes=FASHION_CLASSES)
    r_light, r_dark = predict_files(fashion, paths, invert="auto")
    assert r_light.inverted and not r_dark.inverted
    # inverted, the light image is the dark one
    assert [c for c, _ in r_light.top] == [c for c, _ in r_dark.top]
    assert [p for _, p in r_light.top] == pytest.approx([p for _, p in r_dark.top], abs=1e-6)
    # a model not trained on Fashion-MNIST is never inverted automatically
    other = make_predictor()
    assert [r.inverted for r in predict_files(other, paths, invert="auto")] == [False, False]


def test_invert_must_be_auto_yes_or_no(predictor, files):
    with pytest.raises(ValueError, match="invert"):
        predict_files(predictor, files["good"], invert="maybe")


def test_has_light_background():
    light = torch.full((1, 1, 32, 32), 250, dtype=torch.uint8)
    light[..., 4:28, 4:28] = 0  # a dark garment on white, filling most of the frame
    assert has_light_background(light)
    dark = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
    dark[..., 4:28, 4:28] = 255
    assert not has_light_background(dark)
    rgb = torch.full((1, 3, 10, 40), 200, dtype=torch.uint8)
    assert has_light_background(rgb)
    assert not has_light_background(torch.full((1, 3, 10, 40), 100, dtype=torch.uint8))
    assert not has_light_background(torch.full((1, 1, 3, 3), 127, dtype=torch.uint8))  # tiny: whole image


def test_prediction_to_json():
    ok = Prediction("x.png", [("a", 0.75), ("b", 0.25)])
    assert ok.to_json() == {
        "path": "x.png",
        "top": [{"class": "a", "probability": 0.75}, {"class": "b", "probability": 0.25}],
    }
    assert Prediction("y.png", [], error="y.png: no such file").to_json() == {
        "path": "y.png",
        "error": "y.png: no such file",
    }


# -- Predictor.predict_images ------------------------------------------------------------------------------


def test_predict_images_fits_each_image_on_its_own():
    p = make_predictor(Preprocess(18, (0.5,), (0.25,), 1, crop=16, fit="shorter"))
    wide, tall = noise(20, 30, seed=4), noise(36, 24, seed=5)
    together = p.predict_images([wide, tall[0]])  # (1, C, H, W) and (C, H, W) alike
    alone = torch.cat([p.predict_logits(wide), p.predict_logits(tall)])
    assert together.shape == (2, 3) and together.dtype == torch.float32
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    # in batches of one the same again
    torch.testing.assert_close(p.predict_images([wide, tall], batch_size=1), alone, atol=1e-5, rtol=1e-5)
    assert p.predict_images([]).shape == (0, 3)
    # and each is fed with its aspect kept: shorter side to 18, then the centre 16 x 16
    with torch.no_grad():
        direct = [
            p.model((center_crop(resize_shorter(x, 18), 16).float() / 255 - 0.5) / 0.25) for x in (wide, tall)
        ]
    torch.testing.assert_close(together, torch.cat(direct), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("interpolation", ["bicubic", "nearest"])
def test_files_are_fed_with_the_spec_interpolation(files, interpolation):
    """A model whose weights were fed bicubic (timm's) is served bicubic: predict's input is the bicubic
    resize of the file, which differs from the bilinear one."""
    from dataclasses import replace

    from resdense.preprocess import normalize, resize

    bilinear = make_predictor(Preprocess(12, (0.5,), (0.25,), 1))
    p = make_predictor(replace(bilinear.spec.preprocess, interpolation=interpolation))
    path = files["good"][0]
    image = read_image(path, 1)
    fed = normalize(resize(image, 12, interpolation), (0.5,), (0.25,))
    got = dict(predict_files(p, [path], top_k=len(CLASSES))[0].top)
    expected = p.predict_fitted(resize(image, 12, interpolation)).softmax(1)[0]
    assert [got[c] for c in CLASSES] == pytest.approx(expected.tolist(), abs=1e-6)
    assert not torch.equal(fed, normalize(resize(image, 12), (0.5,), (0.25,)))
