"""``resdense.serve.inputs``: what an image given in Python may be, for ``resdense.explain`` and
``Predictor.predict_images``. The probe: a float tensor in [0, 1] answered Sandal for the ankle boot (uint8:
Ankle boot 0.925), a batch of two gave one explanation, numpy arrays and PIL images were an AttributeError."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import resdense
from resdense.serve.inputs import ImageInputError, as_images


@pytest.fixture(scope="module")
def shipped():
    from resdense.serve.load import load_predictor

    return load_predictor("fashion-mnist", weights=True)


@pytest.fixture(scope="module")
def boots(real_fashion_mnist):
    return real_fashion_mnist.test.images[:2]  # (2, 1, 28, 28) uint8: an ankle boot and a pullover


def _answers(explanations):
    return [(e.predicted, round(e.probability, 5)) for e in explanations]


def test_every_kind_of_image_gives_the_uint8_answer(shipped, boots):
    x = boots[0]
    want = _answers(resdense.explain(shipped, x, invert="no"))
    assert want[0][0] == "Ankle boot"
    same = [
        x.float() / 255,  # torchvision's ToTensor convention
        (x.double() / 255)[0],  # (H, W)
        x[0].numpy(),  # numpy (H, W)
        x.permute(1, 2, 0).numpy(),  # numpy (H, W, C)
        (x.permute(1, 2, 0).numpy() / 255).astype(np.float32),
        Image.fromarray(x[0].numpy()),  # PIL, grey
        Image.fromarray(x[0].numpy()).convert("RGB"),  # PIL, colour: made grey for the grey model
        x.to(torch.int64),
    ]
    for arg in same:
        assert _answers(resdense.explain(shipped, arg, invert="no")) == want, type(arg)
    logits = shipped.predict_images([x.float() / 255, x[0].numpy(), Image.fromarray(x[0].numpy())])
    ref = shipped.predict_images([x])
    assert torch.allclose(logits, ref.expand_as(logits), atol=1e-6)


def test_a_batch_gives_one_explanation_an_image(shipped, boots):
    one_by_one = [_answers(resdense.explain(shipped, b, invert="no"))[0] for b in boots]
    assert _answers(resdense.explain(shipped, boots, invert="no")) == one_by_one
    assert _answers(resdense.explain(shipped, boots.float() / 255, invert="no")) == one_by_one
    assert len(shipped.predict_images(boots)) == 2


@pytest.mark.parametrize(
    "bad, words",
    [
        (torch.full((1, 28, 28), 200.0), "[0, 1]"),
        (torch.full((1, 28, 28), float("nan")), "NaN"),
        (torch.full((1, 28, 28), 300, dtype=torch.int32), "0..255"),
        (torch.zeros(1, 1, 1, 28, 28), "shape"),
        (np.zeros((28, 28, 9)), "shape"),
        (np.array([["a"]]), "dtype"),
        (torch.zeros(1, 28, 28, dtype=torch.bool), "bool"),
        (42, "int"),
    ],
)
def test_what_is_no_image_is_one_line_naming_it(shipped, bad, words):
    with pytest.raises(ImageInputError) as e:
        resdense.explain(shipped, bad)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, resdense.errors.UserError)


def test_as_images_shapes():
    assert [t.shape for t in as_images(torch.zeros(3, 5, 6, 7, dtype=torch.uint8), 1)] == [(1, 5, 6, 7)] * 3
    assert as_images(np.zeros((4, 5, 3), np.uint8), 3)[0].shape == (1, 3, 4, 5)
    wide = Image.fromarray(np.full((4, 5), 65535, np.uint16))  # 16-bit: white, scaled, as a file is
    assert as_images(wide, 1)[0].unique().tolist() == [255]
    assert as_images(torch.tensor([[0.0, 0.5, 1.0]]), 1)[0].flatten().tolist() == [0, 128, 255]
