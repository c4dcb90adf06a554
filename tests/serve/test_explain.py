"""``resdense.serve.explain``: Grad-CAM and Grad-CAM++ against a model whose answer is known, the layer each
family names, in-place layers, and the one-line errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import resdense
from resdense.errors import UserError
from resdense.modelfile import ModelSpec
from resdense.preprocess import Preprocess
from resdense.serve import Predictor
from resdense.serve.explain import class_activation_maps, explain, explain_fitted, resolve_layer

SIDE, PATCH = 32, 12
TL = (slice(2, 2 + PATCH), slice(2, 2 + PATCH))  # the top-left patch: vertical stripes
BR = (slice(SIDE - 2 - PATCH, SIDE - 2), slice(SIDE - 2 - PATCH, SIDE - 2))  # bottom-right: horizontal


class Square(nn.Module):
    def forward(self, x):
        return x * x


class StripeNet(nn.Module):
    """Class 0 ("vertical") is the energy of a horizontal-gradient filter, class 1 ("horizontal") of a
    vertical one, averaged over the image: the evidence for each class lies where its stripes are."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        k = torch.tensor([[-1.0, 0.0, 1.0]] * 3)
        conv.weight.data = torch.stack([k, k.T])[:, None]
        self.stage = nn.Sequential(conv, Square())
        self.fc = nn.Linear(2, 2, bias=False)
        self.fc.weight.data = torch.eye(2)

    def forward(self, x):
        return self.fc(self.stage(x).mean((2, 3)))

    def cam_layer(self) -> str:
        return "stage"


def stripes_image() -> torch.Tensor:
    img = torch.zeros(1, SIDE, SIDE, dtype=torch.uint8)
    cols = (torch.arange(PATCH) // 2 % 2 * 255).to(torch.uint8)  # stripes two pixels wide
    img[0][TL] = cols[None, :].expand(PATCH, PATCH)
    img[0][BR] = cols[:, None].expand(PATCH, PATCH)
    return img


@pytest.fixture(scope="module")
def stripes():
    spec = ModelSpec("stripes", {}, Preprocess(SIDE, (0.0,), (1.0,), 1), ["vertical", "horizontal"])
    return Predictor.for_model(StripeNet().eval(), spec)


def mass(cam: torch.Tensor, region) -> float:
    return float(cam[region].sum() / cam.sum())


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_each_class_is_found_where_its_stripes_are(stripes, method):
    img = stripes_image()
    (v,) = explain(stripes, img, class_name="vertical")
    (h,) = explain(stripes, img, class_name="horizontal")
    assert v.target == "vertical" and h.target == "horizontal" and v.layer == "stage"
    cv, ch = v.cams[method], h.cams[method]
    assert cv.shape == ch.shape == (SIDE, SIDE) and float(cv.max()) == pytest.approx(1.0)
    assert mass(cv, TL) > 0.8 and mass(cv, BR) < 0.1, (mass(cv, TL), mass(cv, BR))
    assert mass(ch, BR) > 0.8 and mass(ch, TL) < 0.1, (mass(ch, BR), mass(ch, TL))
    (py, px), (qy, qx) = v.peak(method), h.peak(method)
    assert py < 0.5 and px < 0.5 and qy > 0.5 and qx > 0.5


def test_gradcam_of_a_linear_head_is_the_class_channel_itself(stripes):
    """With a mean-pool and the identity as the head, each class's weights are 1 on its own channel and 0 on
    the other: Grad-CAM and Grad-CAM++ are then exactly that channel's map, scaled to a peak of 1."""
    img = stripes_image()[None]
    x = img.float() / 255
    energy = StripeNet().stage(x)[0]
    for k in (0, 1):
        _, _, _, cams = explain_fitted(stripes, img, target=k)
        want = energy[k] / energy[k].max()
        for method in ("gradcam", "gradcam++"):
            torch.testing.assert_close(cams[method][0], want, atol=1e-5, rtol=1e-4)


def test_the_top_class_is_explained_by_default(stripes):
    img = stripes_image()
    img[0][BR] = 0  # only the vertical stripes are left
    (e,) = explain(stripes, img)
    assert e.predicted == e.target == "vertical" and e.probability == e.target_probability


@pytest.mark.parametrize(
    "name, layer",
    [
        ("resnet20", "layer3"),
        ("resnet18", "layer4"),
        ("preact_resnet18", "final_norm"),
        ("densenet_bc_40", "features.denseblock3"),
        ("densenet121", "features.denseblock4"),
        ("d2l_resnet18", "4"),
        ("d2l_densenet", "7"),
        ("plain20", "layer3"),
    ],
)
def test_each_family_names_its_layer(name, layer):
    with torch.device("meta"):
        model = resdense.create_model(name)
    assert model.cam_layer() == layer
    assert resolve_layer(model, None)[0] == layer
    # the last feature point is the layer, or comes right after it: preact's last stage (before its final
    # norm), a DenseNet's final norm after its last block (timm's last point)
    after = {
        "final_norm": "layer4",
        "features.denseblock3": "features.norm4",
        "features.denseblock4": "features.norm5",
    }
    assert model.feature_stages()[-1] == after.get(layer, layer)


def test_in_place_layers_downstream_do_not_change_the_map():
    """``layer3.2.bn1``'s output goes into a ReLU(inplace=True): the map must be that of the batch norm's
    output, the same as in a copy of the model whose ReLUs are not in place."""
    torch.manual_seed(0)
    model = resdense.create_model("resnet20", num_classes=3, in_chans=1, widths=[4, 8, 16]).eval()
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    x = torch.randn(2, 1, 16, 16)
    target = torch.tensor([0, 2])
    for layer in ("layer3.2.bn1", "layer3", "layer2.0.bn2"):
        a = class_activation_maps(model, x, target, resolve_layer(model, layer)[1])[1]
        b = class_activation_maps(plain, x, target, resolve_layer(plain, layer)[1])[1]
        for k in a:
            torch.testing.assert_close(a[k], b[k])
        assert float(a["gradcam"].amax()) > 0


def test_a_wrong_layer_lists_the_candidates_in_one_line():
    model = resdense.create_model("resnet20", num_classes=3)
    with pytest.raises(UserError) as e:
        resolve_layer(model, "layer9")
    msg = str(e.value)
    assert "\n" not in msg and "layer9" in msg and "ResNet" in msg
    assert "layer3, layer3.0" in msg and "relu, layer1" in msg


def test_a_class_the_model_lacks_is_one_line(stripes):
    with pytest.raises(UserError, match="'diagonal'.*2 classes: vertical, horizontal"):
        explain(stripes, stripes_image(), class_name="diagonal")


def test_an_export_cannot_be_explained(stripes):
    onnx_like = Predictor(stripes.spec, "onnxruntime", None)
    with pytest.raises(UserError, match="PyTorch model"):
        explain(onnx_like, stripes_image())


def test_explain_writes_the_figure(stripes, tmp_path):
    out = tmp_path / "figs"
    out.mkdir()
    result = explain(stripes, [stripes_image(), stripes_image()], out=out, methods=["gradcam"])
    assert len(result) == 2 and list(result[0].cams) == ["gradcam"]
    assert (out / "explain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = result[0].to_json()
    assert d["class"] == d["predicted"] and d["layer"] == "stage" and set(d["peak"]) == {"gradcam"}


def test_a_model_in_training_mode_is_explained_in_eval_mode_and_given_back_as_it_was():
    torch.manual_seed(0)
    model = resdense.create_model("resnet20", num_classes=3, in_chans=1, widths=[4, 8, 16])
    model.train()
    stats = model.bn1.running_mean.clone()
    (e,) = explain(model, torch.randint(0, 256, (1, 20, 20), dtype=torch.uint8))
    assert model.training and torch.equal(model.bn1.running_mean, stats)  # no batch statistics were taken
    assert e.layer == "layer3"
