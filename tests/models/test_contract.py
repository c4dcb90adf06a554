"""The contract every registered model keeps (see ``resdense.models._contract``), checked for every name in
``list_models()``, plus the registry and the family options (``zero_init_residual``, ``drop_rate``)."""

import pytest
import torch
from torch import nn

from resdense.models import ModelConfig, create_model, get_model_info, list_models
from resdense.models.registry import UnknownModelError
from resdense.models.resnet import BasicBlock, Bottleneck, PreActBlock

ALL_MODELS = list_models()
HEAVY = {"resnet152", "resnext101_32x8d", "wide_resnet101_2", "densenet161", "densenet201"}
CIFAR = {
    "resnet9",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "preact_resnet18",
    "densenet_bc_100",
    "densenet_bc_40",
    "densenet_bc_64",
    *list_models("plain[0-9]*"),
}
NUM_CLASSES = 7


def spatial_size(name: str) -> int:
    """A small input the network accepts: 32 for the CIFAR, d2l and heavy models, 64 for the others."""
    if name in CIFAR or name in HEAVY or name.startswith("d2l_"):
        return 32
    return 64


def test_registry_lists_every_family():
    assert len(ALL_MODELS) == len(set(ALL_MODELS)) == 32  # d2l_resnet18_small added
    assert set(list_models(family="d2l")) == {"d2l_resnet18", "d2l_resnet18_small", "d2l_densenet"}
    assert set(list_models(family="densenet")) == {
        "densenet121",
        "densenet161",
        "densenet169",
        "densenet201",
        "densenet_bc_40",
        "densenet_bc_64",
        "densenet_bc_100",
    }
    assert list_models("densenet[0-9]*") == ["densenet121", "densenet161", "densenet169", "densenet201"]
    assert list_models("nothing*") == []
    for name in ALL_MODELS:
        info = get_model_info(name)
        assert info.name == name and info.family in {"d2l", "resnet", "densenet", "plain"} and info.source


# d2l nets default to 1 channel: give them 3, and give the others 1, so that each changes its default
@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_contract(name):
    in_chans = 3 if name.startswith("d2l_") else 1
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, in_chans=in_chans)
    assert isinstance(model.default_cfg, ModelConfig)
    cfg = model.default_cfg
    assert cfg.input_size[0] == in_chans
    assert len(cfg.mean) == len(cfg.std) == in_chans
    size = spatial_size(name)
    x = torch.randn(2, in_chans, size, size)

    # forward and backward in training mode: every parameter gets a finite gradient
    model.train()
    out = model(x)
    assert out.shape == (2, NUM_CLASSES)
    nn.functional.cross_entropy(out, torch.tensor([0, 6])).backward()
    for k, p in model.named_parameters():
        assert p.grad is not None, f"{k} got no gradient"
        assert torch.isfinite(p.grad).all(), k
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert weighted and all(m.weight.grad.abs().sum() > 0 for m in weighted)

    # body + head == forward
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 4 and feats.shape[:2] == (2, model.num_features)
        y = model(x)
        torch.testing.assert_close(model.forward_head(feats), y)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.num_features)
        torch.testing.assert_close(model.get_classifier()(pre), y)

        assert isinstance(model.get_classifier(), nn.Linear)
        assert model.get_classifier().out_features == NUM_CLASSES
        num_features = model.num_features

        model.reset_classifier(5)
        assert model(x).shape == (2, 5)
        assert model.num_features == num_features

        model.reset_classifier(0)
        assert model(x).shape == (2, num_features)
        torch.testing.assert_close(model(x), pre)
        assert model.num_features == num_features


@pytest.mark.parametrize("name", ["d2l_resnet18", "d2l_densenet"])
def test_d2l_defaults(name):
    model = create_model(name)
    assert model.default_cfg.input_size == (1, 96, 96)
    assert model.get_classifier().out_features == 10
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 10)


def test_default_configs():
    assert create_model("resnet18").default_cfg.input_size == (3, 224, 224)
    assert create_model("resnet18").get_classifier().out_features == 1000
    cfg = create_model("resnet18", in_chans=1).default_cfg
    assert cfg.input_size == (1, 224, 224) and len(cfg.mean) == 1
    assert create_model("densenet_bc_100").default_cfg.input_size == (3, 32, 32)


def test_num_classes_zero_gives_a_feature_extractor():
    model = create_model("resnet20", num_classes=0).eval()
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 64)
    with pytest.raises(ValueError):
        create_model("resnet20", num_classes=-1)


# --- zero_init_residual ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d", "resnet20", "preact_resnet18"])
def test_zero_init_residual(name):
    model = create_model(name, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck, PreActBlock))]
    assert blocks
    for b in blocks:
        if isinstance(b, BasicBlock):
            last = b.bn2.weight
        elif isinstance(b, Bottleneck):
            last = b.bn3.weight
        else:  # pre-activation: the residual branch ends with a conv
            last = b.conv2.weight
        assert not last.any(), "the last layer of the residual branch must start at zero"
    # the other batch norms keep their unit weights, and without the option nothing is zero
    others = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert any(w.all() for w in others)
    plain = create_model(name)
    assert all(w.all() for w in (m.weight for m in plain.modules() if isinstance(m, nn.BatchNorm2d)))


def test_zero_init_block_starts_as_the_identity():
    model = create_model("resnet18", zero_init_residual=True).eval()
    block = model.layer1[0]  # no downsampling: the output is relu(x + 0)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


# --- drop_rate ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["densenet_bc_100", "densenet121"])
def test_densenet_drop_rate(name):
    torch.manual_seed(0)
    plain = create_model(name, num_classes=NUM_CLASSES)
    dropped = create_model(name, num_classes=NUM_CLASSES, drop_rate=0.5)
    dropped.load_state_dict(plain.state_dict(), strict=True)
    assert all(layer.drop_rate == 0.5 for layer in dropped.modules() if hasattr(layer, "memory_efficient"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # eval: dropout is off, the networks agree
        plain.eval()
        dropped.eval()
        torch.testing.assert_close(dropped(x), plain(x))
        # training: each pass drops different features
        dropped.train()
        torch.manual_seed(1)
        a = dropped(x)
        torch.manual_seed(2)
        b = dropped(x)
        assert not torch.allclose(a, b)
        torch.manual_seed(1)
        torch.testing.assert_close(dropped(x), a)


def test_resnet_drop_rate_before_the_classifier():
    torch.manual_seed(0)
    model = create_model("resnet20", drop_rate=0.5).train()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    torch.manual_seed(1)
    a = model.forward_head(feats, pre_logits=True)
    assert (a == 0).any()
    model.eval()
    assert not (model.forward_head(feats, pre_logits=True) == 0).all()


# --- names and options ----------------------------------------------------------------------------------


def test_unknown_model_names_close_matches():
    with pytest.raises(UnknownModelError, match="resnet18") as e:
        create_model("resnt18")
    assert "resnt18" in str(e.value)
    assert isinstance(e.value, KeyError)
    with pytest.raises(UnknownModelError, match="densenet121"):
        create_model("densenet12")
    with pytest.raises(UnknownModelError, match="nope"):
        create_model("nope")
    with pytest.raises(UnknownModelError):
        get_model_info("nope")


def test_unknown_option_names_the_model():
    with pytest.raises(TypeError, match="d2l_resnet18"):
        create_model("d2l_resnet18", zero_init_residual=True)
    with pytest.raises(TypeError, match="resnet18"):
        create_model("resnet18", no_such_option=1)


def test_resnet9_is_pages_short_wide_residual_net():
    from resdense.models.resnet9 import Residual, ResNet9
    from resdense.models.summary import count_macs

    model = create_model("resnet9", num_classes=10, in_chans=1)
    assert isinstance(model, ResNet9) and get_model_info("resnet9").source.startswith("Page 2018")
    assert sum(isinstance(m, Residual) for m in model.modules()) == 2  # after the first and third stage
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 8  # prep, 3 stages, 2 residual pairs
    # 28x28 in: 28 -> 14 -> 7 -> 3, Page's widths
    assert model.forward_features(torch.randn(1, 1, 28, 28)).shape == (1, 512, 3, 3)
    small = create_model("resnet9", num_classes=10, in_chans=1, widths=(32, 64, 128, 256), act="gelu")
    resnet20 = create_model("resnet20", num_classes=10, in_chans=1)
    ratio = count_macs(small, (1, 28, 28)) / count_macs(resnet20, (1, 28, 28))
    assert 2.1 < ratio < 2.3  # as its docstring says
    # a residual block adds its input: zero its body's last batch norm and it is the identity
    block = model.layer1[2]
    nn.init.zeros_(block.body[1][1].weight)
    nn.init.zeros_(block.body[1][1].bias)
    x = torch.randn(2, 128, 5, 5)
    torch.testing.assert_close(block.eval()(x), x)
    with pytest.raises(ValueError, match="widths"):
        create_model("resnet9", widths=(8, 16))


# -- pretrained_cfg is a read-only mapping with timm's keys ------------------------------------------------


TIMM_KEYS = [
    "input_size",
    "interpolation",
    "crop_pct",
    "crop_mode",
    "mean",
    "std",
    "num_classes",
    "first_conv",
    "classifier",
    "label_names",
]


def test_pretrained_cfg_is_a_mapping_as_timm_reads_it():
    from collections.abc import Mapping

    model = create_model("resnet20", weights="fashion-mnist")
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg and isinstance(cfg, Mapping)
    assert list(cfg)[: len(TIMM_KEYS)] == TIMM_KEYS  # timm's keys first, in timm's order
    assert "mean" in cfg and "crop_mode" in cfg and "test_input_size" not in cfg and 0 not in cfg
    with pytest.raises(KeyError):
        cfg[0]
    with pytest.raises(KeyError):
        cfg["no such key"]
    d = dict(cfg)
    assert d == {**cfg} == cfg.copy() == dict(cfg.items()) and list(d) == list(cfg.keys()) == list(cfg)
    assert list(cfg.values()) == [cfg[k] for k in cfg] and len(cfg) == len(d)
    assert d["input_size"] == (1, 28, 28) and d["mean"] == cfg.mean and d["num_classes"] == 10
    assert d["crop_mode"] == "squash" and d["interpolation"] == "bilinear" and d["crop_pct"] == 1.0
    assert d["label_names"] == cfg.classes and len(d["label_names"]) == 10
    # resdense's own facts and the source's, by key as before
    assert d["source"] == "fashion-mnist:best" and d["model"] == "resnet20" and d["tta_flip"] is cfg.tta_flip
    assert cfg["recipe"] == cfg.meta["recipe"] and "recipe" in d and cfg.get("recipe") == cfg.meta["recipe"]
    assert cfg.get("missing", 3) == 3 and cfg.get("missing") is None


def test_pretrained_cfg_copy_is_a_plain_dict_and_the_cfg_stays_frozen():
    import dataclasses

    cfg = create_model("resnet18").pretrained_cfg
    copy = cfg.copy()
    assert type(copy) is dict
    copy["mean"] = (0.0, 0.0, 0.0)  # a timm user's edit touches the copy only
    copy["meta"]["note"] = "edited"
    assert cfg["mean"] != copy["mean"] and "note" not in cfg.meta and "note" not in cfg
    with pytest.raises(TypeError):
        cfg["mean"] = (0.0, 0.0, 0.0)
    with pytest.raises(TypeError):
        del cfg["mean"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mean = (0.0, 0.0, 0.0)
    assert not hasattr(cfg, "__setitem__") and not hasattr(cfg, "update") and not hasattr(cfg, "pop")


def test_test_input_size_is_a_key_only_where_known():
    import dataclasses

    cfg = create_model("resnet18").pretrained_cfg
    assert "test_input_size" not in cfg and cfg.test_input_size is None and cfg.get("test_input_size") is None
    later = dataclasses.replace(
        cfg, resize=256, fit="shorter", test_input_size=(3, 288, 288), test_resize=288
    )
    assert later["test_input_size"] == (3, 288, 288) and later["test_crop_pct"] == 1.0
    assert later["input_size"] == (3, 224, 224) and later["crop_pct"] == 0.875  # training's view stays
    assert (
        later.preprocess.input_size == 288 and later.preprocess.resize == 288
    )  # serving's view: the test size
    assert later.spec("resnet18").preprocess == later.preprocess
    # a model fed one channel keeps its test size, in one channel
    assert later.for_channels(1)["test_input_size"] == (1, 288, 288)


def test_first_conv_and_classifier_are_declared_fields():
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    for name in ("first_conv", "classifier"):
        assert fields[name].default is None and fields[name].type == "str | None"
    cfg = dataclasses.replace(create_model("resnet18").pretrained_cfg, first_conv="conv1", classifier="fc")
    assert cfg["first_conv"] == "conv1" and cfg["classifier"] == "fc"


def test_to_dict_and_mapping_agree():
    cfg = create_model("resnet20", weights="fashion-mnist").pretrained_cfg
    d = cfg.to_dict()
    for key in (
        "input_size",
        "mean",
        "crop_pct",
        "crop_mode",
        "interpolation",
        "resize",
        "fit",
        "source",
        "meta",
    ):
        assert d[key] == cfg[key] or (isinstance(cfg[key], tuple) and tuple(d[key]) == cfg[key]), key
