"""Pretrained weights by source: torchvision names in a temporary TORCH_HOME, files, run folders, shipped
weights, adaptation, and one-line errors for each kind of bad file. Never touches the network."""

from __future__ import annotations

import hashlib
import http.server
import logging
import re
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

import resdense
from resdense.models import hub
from resdense.models import pretrained as P
from resdense.models.pretrained import PretrainedError, adapt_input_conv
from resdense.models.registry import get_model_info

tv_models = pytest.importorskip("torchvision.models")  # the dev extra installs it; CI runs these


def assert_one_line(err: BaseException, *needles: str) -> None:
    text = str(err)
    assert "\n" not in text and text.strip()
    for n in needles:
        assert n in text, (n, text)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME, and torchvision's download URL pointed at a closed local port."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hub, "_TV_URL", "http://127.0.0.1:9/")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_torchvision_file_in_hub_cache_loads_by_name(torch_home: Path) -> None:
    torch.manual_seed(0)
    tv = tv_models.resnet18().eval()
    torch_home.mkdir(parents=True)
    torch.save(tv.state_dict(), torch_home / "resnet18-f37072fd.pth")
    x = torch.randn(2, 3, 64, 64)
    for name in ("IMAGENET1K_V1", "DEFAULT", "ResNet18_Weights.IMAGENET1K_V1"):
        net = resdense.create_model("resnet18", weights=name).eval()
        with torch.no_grad():
            assert torch.equal(net(x), tv(x))
    cfg = net.pretrained_cfg
    assert cfg is net.default_cfg  # timm's contract: the weights' config is how to feed the model
    assert len(cfg.classes) == 1000 and cfg.classes[0] == "tench"
    assert cfg.mean == (0.485, 0.456, 0.406) and cfg.input_size == (3, 224, 224) and cfg.resize == 256
    assert cfg.fit == "shorter" and cfg.preprocess.input_size == 224


def test_offline_error_names_file_url_and_folder(torch_home: Path) -> None:
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet50", weights="IMAGENET1K_V2")
    assert_one_line(
        e.value, "resnet50-11ad3fa6.pth", "http://127.0.0.1:9/resnet50-11ad3fa6.pth", str(torch_home)
    )
    assert not torch_home.exists() or not any(torch_home.iterdir())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_folder(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_checks_the_hash_in_the_file_name(
    torch_home: Path, http_folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url = http_folder
    tv = tv_models.resnet18()
    blob = root / "blob.pth"
    torch.save(tv.state_dict(), blob)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()[:8]
    good = f"resnet18-{digest}.pth"
    blob.rename(root / good)
    monkeypatch.setattr(hub, "_TV_URL", url)
    table = get_model_info("resnet18").weights
    entry = hub.TorchvisionWeights("resnet18", "IMAGENET1K_V1", good, 69.758)
    monkeypatch.setitem(table, "IMAGENET1K_V1", entry)
    monkeypatch.setitem(table, "DEFAULT", entry)
    net = resdense.create_model("resnet18", weights="DEFAULT", progress=False)
    assert (torch_home / good).exists()
    assert torch.equal(net.fc.weight, tv.fc.weight)

    # a file whose bytes do not match the hash in its name is refused and not kept
    bad = "resnet18-00000000.pth"
    (root / good).rename(root / bad)
    entry = hub.TorchvisionWeights("resnet18", "IMAGENET1K_V1", bad, 69.758)
    table["IMAGENET1K_V1"] = table["DEFAULT"] = entry
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet18", weights="DEFAULT", progress=False)
    assert_one_line(e.value, bad, "corrupt")
    assert not (torch_home / bad).exists()


def test_in_chans_adaptation_is_exact_for_grey_images() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3)
    w1 = adapt_input_conv(1, w)
    assert torch.equal(w1, w.sum(1, keepdim=True))
    grey = torch.randn(2, 1, 9, 9)
    # a grey image seen as RGB by the original filters == the grey image through the adapted filters
    torch.testing.assert_close(
        nn.functional.conv2d(grey.expand(-1, 3, -1, -1), w), nn.functional.conv2d(grey, w1)
    )
    w5 = adapt_input_conv(5, w)
    assert w5.shape == (8, 5, 3, 3)
    torch.testing.assert_close(w5[:, :3], w * 3 / 5)
    torch.testing.assert_close(w5[:, 3:], w[:, :2] * 3 / 5)
    w6 = adapt_input_conv(6, w)  # a multiple of 3: a grey image gives exactly the RGB response
    torch.testing.assert_close(
        nn.functional.conv2d(grey.expand(-1, 6, -1, -1), w6),
        nn.functional.conv2d(grey.expand(-1, 3, -1, -1), w),
    )


def test_adaptation_is_said_once_and_classifier_reset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    tv = tv_models.resnet18().eval()
    path = tmp_path / "r18.pth"
    torch.save(tv.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="resdense"):
        net = resdense.create_model("resnet18", weights=path, num_classes=10, in_chans=1).eval()
    said = [r.getMessage() for r in caplog.records if r.name == "resdense"]
    assert len(said) == 1 and "\n" not in said[0]
    assert (
        "3 to 1 input channels" in said[0]
        and "re-initialised for 10 classes" in said[0]
        and "1000" in said[0]
    )
    assert net.fc.out_features == 10 and net.pretrained_cfg.classes == ()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():  # the body is the torchvision body: the features agree
        torch.testing.assert_close(
            net.forward_features(x), torch.nn.Sequential(*list(tv.children())[:-2])(x.expand(-1, 3, -1, -1))
        )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="resdense"):
        resdense.create_model("resnet18", weights=path)  # nothing to adapt: nothing said
    assert not [r for r in caplog.records if r.name == "resdense"]


def test_densenet_old_torchvision_keys_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tv = tv_models.densenet121().eval()
    # torchvision's published DenseNet files spell "norm1" as "norm.1" (pre-0.4 names)
    old = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in tv.state_dict().items()
    }
    assert any(".norm.1." in k for k in old)
    torch.save(old, tmp_path / "dn.pth")
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(tmp_path / "dn.safetensors"))
    x = torch.randn(1, 3, 64, 64)
    for f in ("dn.pth", "dn.safetensors"):
        net = resdense.create_model("densenet121", weights=tmp_path / f).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x), tv(x))


def test_timm_key_names(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")  # in the dev extra: CI has it
    torch.manual_seed(0)
    for name in ("resnet18", "densenet121"):
        ref = timm.create_model(name, pretrained=False).eval()
        torch.save(ref.state_dict(), tmp_path / f"{name}.pth")
        net = resdense.create_model(name, weights=tmp_path / f"{name}.pth").eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(net(x), ref(x))


def test_checkpoint_wrappers_and_ddp_prefix(tmp_path: Path) -> None:
    tv = tv_models.resnet18()
    torch.save({"state_dict": {f"module.{k}": v for k, v in tv.state_dict().items()}}, tmp_path / "ck.pt")
    net = resdense.create_model("resnet18", weights=tmp_path / "ck.pt")
    assert torch.equal(net.conv1.weight, tv.conv1.weight)


def test_run_folder_and_model_safetensors(tmp_path: Path) -> None:
    from resdense.modelfile import ModelSpec
    from resdense.modelfile import write_safetensors as save_trained
    from resdense.preprocess import Preprocess

    torch.manual_seed(1)
    src = resdense.create_model("resnet20", num_classes=10, in_chans=1, widths=(8, 16, 32)).eval()
    spec = ModelSpec(
        "resnet20",
        {"num_classes": 10, "in_chans": 1, "widths": [8, 16, 32]},
        Preprocess(28, (0.3,), (0.35,), 1),
        [f"c{i}" for i in range(10)],
    )
    (tmp_path / "run").mkdir()
    save_trained(tmp_path / "run" / "model.safetensors", src, spec)
    x = torch.randn(2, 1, 28, 28)
    for w in (tmp_path / "run", tmp_path / "run" / "model.safetensors"):
        net = resdense.create_model("resnet20", weights=w).eval()  # widths, classes, in_chans from the file
        with torch.no_grad():
            assert torch.equal(net(x), src(x))
        assert net.pretrained_cfg.classes[0] == "c0" and net.pretrained_cfg.mean == (0.3,)
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet32", weights=tmp_path / "run")
    assert_one_line(e.value, "resnet20", "resnet32")


def test_headless_model_drops_the_classifier(tmp_path: Path) -> None:
    torch.save(tv_models.resnet18().state_dict(), tmp_path / "r.pth")
    net = resdense.create_model("resnet18", weights=tmp_path / "r.pth", num_classes=0)
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 512)


def shipped_tags() -> list[str]:
    weights = get_model_info("resnet20").weights.values()
    return [w.tag for w in weights if isinstance(w, hub.ShippedWeights) and w.path.exists()]


def test_shipped_fashion_mnist_weights_load() -> None:
    tags = shipped_tags()
    assert tags == list(P.SHIPPED_ORDER)  # both recipes' models ship with the package
    for tag in tags:
        net = resdense.create_model("resnet20", weights=f"fashion-mnist:{tag}")
        cfg = net.pretrained_cfg
        assert cfg.classes[0] == "T-shirt/top" and len(cfg.classes) == 10
        meta = cfg.meta
        assert meta["recipe"] == tag == meta["config"]["recipe"] and 0.9 < meta["test_accuracy"] < 1
        assert meta["command"].startswith("resdense train --recipe " + tag)
    # plain "fashion-mnist" is the best one installed
    assert resdense.create_model("resnet20", weights="fashion-mnist").pretrained_cfg.meta["recipe"] == tags[0]
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet18", weights="fashion-mnist")
    assert_one_line(e.value, "resnet20", "resnet18")
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet20", weights="fashion-mnist:huge")
    assert_one_line(e.value, "fashion-mnist:huge", "fashion-mnist:fast")


# --- bad files: each a one-line error ----------------------------------------------------------------


class Evil:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_truncated_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = tv_models.resnet18().state_dict()
    torch.save(sd, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    for name in ("cut.pth", "cut.safetensors"):
        with pytest.raises(PretrainedError) as e:
            resdense.create_model("resnet18", weights=tmp_path / name)
        assert_one_line(e.value, name)


def test_pickle_carrying_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.save({"conv1.weight": torch.zeros(1), "evil": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet18", weights=tmp_path / "evil.pth")
    assert_one_line(e.value, "evil.pth", "weights_only")
    assert "this would run code" not in capsys.readouterr().out


def test_another_architecture_names_at_most_three_keys(tmp_path: Path) -> None:
    torch.save(tv_models.resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet18", weights=tmp_path / "r50.pth")
    assert_one_line(e.value, "r50.pth", "resnet18", "wrong shape", "more")
    named = re.findall(r"layer\d\.\d\.\w+\.\w+", str(e.value))
    assert 1 <= len(named) <= 9  # up to three per kind (wrong shape / missing / unexpected)
    assert len(re.findall(r"wrong shape: ([^;]*)", str(e.value))[0].split(", ")) <= 3


def test_wrong_shapes_and_unknown_names(tmp_path: Path) -> None:
    sd = tv_models.resnet18().state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet18", weights=tmp_path / "odd.pth")
    assert_one_line(e.value, "layer1.0.conv1.weight", "wrong shape")
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet18", weights="IMAGENET1K_V9")
    assert_one_line(e.value, "IMAGENET1K_V9", "IMAGENET1K_V1")
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet20", weights="DEFAULT")
    assert_one_line(e.value, "resnet20", "resnet18")
    (tmp_path / "list.pth").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(PretrainedError) as e:
        resdense.create_model("resnet18", weights=tmp_path / "list.pth")
    assert_one_line(e.value, "list.pth", "state dict")


def test_list_pretrained() -> None:
    names = P.list_pretrained("resnet50")
    assert names == ["resnet50.IMAGENET1K_V1", "resnet50.IMAGENET1K_V2", "resnet50.DEFAULT"]
    assert "fashion-mnist:fast" in P.list_pretrained()
    assert get_model_info("resnet50").weights["DEFAULT"].file == "resnet50-11ad3fa6.pth"
    assert get_model_info("resnet50").weights["DEFAULT"].hash_prefix == "11ad3fa6"


def test_a_model_with_weights_is_fed_by_its_own_default_cfg(real_fashion_mnist) -> None:
    """timm's contract: ``default_cfg`` *is* the loaded weights' config. Fed by hand from it alone (resize
    to its input size, its mean and std, its test-time flip), the shipped model scores what it states."""
    from torch.nn import functional as F

    net = resdense.create_model("resnet20", weights="fashion-mnist").eval()
    cfg = net.default_cfg
    assert cfg is net.pretrained_cfg and cfg.known_input
    fresh = resdense.create_model("resnet20", in_chans=1).default_cfg
    assert cfg.mean != fresh.mean  # the weights' statistics, not the architecture's CIFAR ones
    test = real_fashion_mnist.test.subset(2000)
    x = F.interpolate(test.images.float(), size=cfg.input_size[1:], mode="bilinear", antialias=True)
    mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std).view(1, -1, 1, 1)
    x = (x / 255 - mean) / std
    with torch.no_grad():
        logits = net(x)
        if cfg.tta_flip:
            logits = (logits + net(x.flip(-1))) / 2
    acc = (logits.argmax(1) == test.labels).double().mean().item()
    stated = cfg.meta["test_accuracy"]
    assert abs(acc - stated) < 0.02, (acc, stated)  # 2,000 images: a standard error of about 0.5 points
    assert cfg.num_classes == len(cfg.classes) == 10


def test_the_typed_cfg_follows_channels_classes_and_new_heads() -> None:
    net = resdense.create_model("densenet121", num_classes=10)
    assert net.default_cfg.num_classes == 10 and net.default_cfg.source is None
    net.reset_classifier(4)
    assert net.default_cfg.num_classes == 4
    grey = resdense.create_model("resnet18", in_chans=1)
    assert grey.default_cfg.input_size == (1, 224, 224) and len(grey.default_cfg.mean) == 1
    net = resdense.create_model("resnet20", weights="fashion-mnist", num_classes=3)
    assert net.default_cfg.num_classes == 3 and net.default_cfg.classes == ()  # a new head: names gone
    assert net.default_cfg.mean == resdense.create_model("resnet20", weights="fashion-mnist").default_cfg.mean
