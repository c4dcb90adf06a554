"""``resdense.serve.features``: the feature maps after each stage are the stages' own outputs, for the book's
networks and the paper families, drawn as one figure."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import resdense
from resdense.errors import UserError
from resdense.serve.features import feature_maps, forward_intermediates, show_features, stage_names

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_books_resnet_stages_are_b1_to_b5_run_one_after_another():
    torch.manual_seed(0)
    net = resdense.create_model("d2l_resnet18").eval()
    x = torch.randn(1, 1, 64, 64)
    maps = feature_maps(net, x)
    assert [m.name for m in maps] == ["0", "1", "2", "3", "4"]
    assert [tuple(m.maps.shape) for m in maps] == [
        (64, 16, 16),
        (64, 16, 16),
        (128, 8, 8),
        (256, 4, 4),
        (512, 2, 2),
    ]
    with torch.no_grad():
        y = x
        for i, m in enumerate(maps):
            y = net[i](y)
            torch.testing.assert_close(m.maps, y[0])


def test_the_books_densenet_shows_its_dense_blocks_and_transitions():
    torch.manual_seed(0)
    net = resdense.create_model("d2l_densenet").eval()
    maps = feature_maps(net, torch.randn(1, 1, 64, 64))
    kinds = [m.kind for m in maps]
    assert kinds == ["Sequential"] + ["DenseBlock", "Sequential"] * 3 + ["DenseBlock"]
    # each dense block adds 4 x 32 channels; each transition halves them
    assert [m.maps.shape[0] for m in maps] == [64, 192, 96, 224, 112, 240, 120, 248]


@pytest.mark.parametrize("name", ["resnet20", "densenet_bc_40", "preact_resnet18"])
def test_a_stage_copy_is_kept_before_in_place_ops(name):
    """The last point's map equals forward_features (before a pre-activation net's final norm), so the
    saved maps are the stages' outputs, not values a later in-place ReLU overwrote."""
    torch.manual_seed(0)
    net = resdense.create_model(name, num_classes=3, in_chans=1).eval()
    x = torch.randn(1, 1, 32, 32)
    maps = feature_maps(net, x)
    assert [m.name for m in maps] == net.feature_stages()
    if name == "preact_resnet18":
        return
    with torch.no_grad():
        want = net.forward_features(x)[0]
    # a DenseNet's last point is its final batch norm and ReLU (timm's norm5): forward_features itself
    torch.testing.assert_close(maps[-1].maps, want)


def test_show_features_draws_one_figure_from_a_file(tmp_path):
    torch.manual_seed(0)
    net = resdense.create_model("resnet20", num_classes=10, in_chans=1)
    img = tmp_path / "garment.png"
    Image.fromarray((torch.rand(40, 30) * 255).to(torch.uint8).numpy()).save(img)
    fitted, maps = show_features(net, img, out=tmp_path / "f.png", channels=4)
    assert fitted.shape == (1, 32, 32)  # resnet20 is fed 32x32 (the file is squashed to it)
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG
    assert [m.name for m in maps] == ["relu", "layer1", "layer2", "layer3"]


def test_an_unreadable_image_is_one_line(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError, match="bad.png"):
        show_features(resdense.create_model("resnet20"), bad)


def test_any_module_shows_its_top_level_children_that_keep_a_layout():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(3, 5, 3, stride=2),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(2),
    )
    maps = feature_maps(net, torch.randn(1, 1, 11, 11))
    assert [(m.name, tuple(m.maps.shape)) for m in maps] == [
        ("0", (3, 9, 9)),
        ("1", (3, 9, 9)),
        ("2", (5, 4, 4)),
    ]
    assert not any(m.stem for m in maps)


def test_the_front_door_has_both_calls():
    from resdense.serve.explain import explain

    assert resdense.show_features is show_features and resdense.explain is explain
    with pytest.raises(AttributeError):
        resdense.no_such_thing  # noqa: B018


@pytest.mark.parametrize(
    "name, stages, channels",
    [
        ("resnet20", ["relu", "layer1", "layer2", "layer3"], [16, 16, 32, 64]),
        # timm's DenseNet points: the stem, each block but the last, the final norm (with its ReLU)
        (
            "densenet_bc_40",
            ["features.conv0", "features.denseblock1", "features.denseblock2", "features.norm4"],
            [24, 96, 120, 132],
        ),
        ("d2l_resnet18", ["0", "1", "2", "3", "4"], [64, 64, 128, 256, 512]),
    ],
)
def test_forward_intermediates_by_family(name: str, stages: list[str], channels: list[int]) -> None:
    torch.manual_seed(0)
    net = resdense.create_model(name, in_chans=1, num_classes=10).eval()
    assert stage_names(net) == stages
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        final, inter = forward_intermediates(net, x)
        assert torch.equal(final, net.forward_features(x))
        assert [t.shape[1] for t in inter] == channels
        (last,) = forward_intermediates(net, x, [-1], intermediates_only=True)
        assert torch.equal(last, inter[-1])
        (by_name,) = forward_intermediates(net, x, [stages[0]], intermediates_only=True)
        assert torch.equal(by_name, inter[0])
    with pytest.raises(UserError, match=f"no such stage; choose from {', '.join(stages)}"):
        forward_intermediates(net, x, ["nope"])
