"""``hf-hub:ORG/NAME`` weights, offline, from a cache laid out as huggingface_hub lays it out
(``models--ORG--NAME/snapshots/REV/...`` and ``refs/main``): timm's ResNets and DenseNets with their
config.json, a resdense model file, and one-line errors. Never touches the network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import huggingface_hub  # the hub extra; the dev extra installs it (CI has it): no skip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import resdense
from resdense.cli import main
from resdense.models import hf_hub
from resdense.models.pretrained import PretrainedError, load_pretrained

REV = "0123456789abcdef0123456789abcdef01234567"


def cached_repo(cache: Path, repo: str, files: dict[str, bytes | Path]) -> Path:
    """``repo`` as huggingface_hub's cache holds it after a download of ``files`` at revision REV."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / REV
    snap.mkdir(parents=True)
    for name, content in files.items():
        (snap / name).write_bytes(content if isinstance(content, bytes) else Path(content).read_bytes())
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REV)
    return snap


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def timm_config(arch: str, n: int, labels: list[str] | None = None) -> bytes:
    cfg = {
        "architecture": arch,
        "num_classes": n,
        "pretrained_cfg": {
            "tag": "test",
            "input_size": [3, 160, 160],
            "crop_pct": 0.95,
            "interpolation": "bicubic",
            "mean": [0.5, 0.4, 0.3],
            "std": [0.2, 0.25, 0.3],
            "num_classes": n,
        },
    }
    if labels:
        cfg["label_names"] = labels
    return json.dumps(cfg).encode()


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_timm_repo_loads_with_its_config(arch: str, hub_cache: Path, tmp_path: Path) -> None:
    import timm  # the dev extra installs it

    torch.manual_seed(0)
    ref = timm.create_model(arch, pretrained=False, num_classes=3).eval()
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors"))
    cached_repo(
        hub_cache,
        f"timm/{arch}.test",
        {
            "model.safetensors": tmp_path / "w.safetensors",
            "config.json": timm_config(arch, 3, ["cat", "dog", "owl"]),
        },
    )
    net = resdense.create_model(arch, weights=f"hf-hub:timm/{arch}.test").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x))
    cfg = net.default_cfg
    assert (
        cfg.classes == ("cat", "dog", "owl") and cfg.mean == (0.5, 0.4, 0.3) and cfg.std == (0.2, 0.25, 0.3)
    )
    assert cfg.input_size == (3, 160, 160) and cfg.resize == 168 and cfg.fit == "shorter"  # floor(160/0.95)
    assert (
        cfg.source == f"hf-hub:timm/{arch}.test"
        and cfg.model == arch
        and cfg["hf_repo"] == f"timm/{arch}.test"
    )


def test_pytorch_model_bin_and_imagenet_names(hub_cache: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = resdense.create_model("resnet18")
    torch.save(src.state_dict(), tmp_path / "w.bin")
    cached_repo(
        hub_cache,
        "org/r18",
        {"pytorch_model.bin": tmp_path / "w.bin", "config.json": timm_config("resnet18", 1000)},
    )
    pre = load_pretrained("hf-hub:org/r18")
    assert pre.model == "resnet18" and pre.cfg.classes[0] == "tench"  # ImageNet's names for 1,000 classes
    assert torch.equal(pre.state_dict["conv1.weight"], src.conv1.weight)


def test_resdense_model_file_in_a_repo(hub_cache: Path, tmp_path: Path, capsys) -> None:
    from resdense.modelfile import ModelSpec, write_safetensors
    from resdense.preprocess import Preprocess

    torch.manual_seed(1)
    src = resdense.create_model("resnet20", num_classes=4, in_chans=1, widths=(8, 16, 32)).eval()
    spec = ModelSpec(
        "resnet20",
        {"num_classes": 4, "in_chans": 1, "widths": [8, 16, 32]},
        Preprocess(28, (0.3,), (0.35,), 1),
        ["a", "b", "c", "d"],
    )
    write_safetensors(tmp_path / "model.safetensors", src, spec)
    cached_repo(hub_cache, "me/shoes", {"model.safetensors": tmp_path / "model.safetensors"})
    net = resdense.create_model("resnet20", weights="hf-hub:me/shoes").eval()  # widths from the file
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x), src(x))
    assert net.default_cfg.classes == ("a", "b", "c", "d") and net.default_cfg.source == "hf-hub:me/shoes"
    # the command line (the environment is read when the weights are, not when huggingface_hub is imported)
    Image.fromarray((torch.rand(28, 28) * 255).byte().numpy()).save(tmp_path / "x.png")
    assert main(["predict", "--weights", "hf-hub:me/shoes", str(tmp_path / "x.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] in "abcd"


def test_missing_file_offline_is_one_line_naming_repo_and_cache(
    hub_cache: Path, tmp_path: Path, capsys
) -> None:
    cached_repo(hub_cache, "org/only-config", {"config.json": timm_config("resnet18", 10)})
    for src in ("hf-hub:org/only-config", "hf-hub:org/never-fetched"):
        with pytest.raises(PretrainedError) as e:
            load_pretrained(src)
        text = str(e.value)
        assert "\n" not in text and src in text and str(hub_cache) in text and "HF_HUB_OFFLINE" in text
    code = main(["predict", "--weights", "hf-hub:org/never-fetched", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "hf-hub:org/never-fetched" in err and str(hub_cache) in err


def test_names_that_are_not_repos(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("hf-hub:", "hf-hub:resnet50", "hf-hub:a/b/c", "hf-hub:org/name@"):
        with pytest.raises(PretrainedError, match="not a Hugging Face Hub repository"):
            load_pretrained(bad)
    # online, a repository the Hub does not have (its own exception, raised here without a network)
    from huggingface_hub.errors import RepositoryNotFoundError

    def not_found(*a, **k):
        from unittest.mock import MagicMock

        raise RepositoryNotFoundError("404 Client Error. Repository Not Found", response=MagicMock())

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_found)
    with pytest.raises(PretrainedError) as e:
        load_pretrained("hf-hub:nobody/nothing")
    assert "\n" not in str(e.value) and "no such model repository" in str(e.value)


def test_timm_architecture_without_counterpart(hub_cache: Path, tmp_path: Path) -> None:
    save_file({"x": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    cached_repo(
        hub_cache,
        "timm/vit",
        {
            "model.safetensors": tmp_path / "w.safetensors",
            "config.json": timm_config("vit_base_patch16_224", 1000),
        },
    )
    with pytest.raises(PretrainedError, match="vit_base_patch16_224"):
        load_pretrained("hf-hub:timm/vit")
    assert hf_hub.hf_source("hf-hub:timm/resnet50.a1_in1k@main") == ("timm/resnet50.a1_in1k", "main")


def timm_config_with(arch: str, n: int, **pretrained) -> bytes:
    cfg = json.loads(timm_config(arch, n))
    cfg["pretrained_cfg"].update(pretrained)
    return json.dumps(cfg).encode()


def test_timm_interpolation_crop_mode_and_test_size(hub_cache: Path, tmp_path: Path, capsys) -> None:
    """timm's Hub config says bicubic, a crop_pct and a larger test size: the cfg carries them, training's view
    stays at input_size, and the weights are evaluated and served at the test size (timm's
    resolve_model_data_config(model, use_test_size=True))."""
    import timm.data

    torch.manual_seed(0)
    src = resdense.create_model("resnet18", num_classes=3)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    config = timm_config_with(
        "resnet18", 3, test_input_size=[3, 192, 192], test_crop_pct=1.0, crop_mode="center"
    )
    cached_repo(
        hub_cache, "timm/r18.test", {"model.safetensors": tmp_path / "w.safetensors", "config.json": config}
    )
    net = resdense.create_model("resnet18", weights="hf-hub:timm/r18.test")
    cfg = net.pretrained_cfg
    assert cfg["interpolation"] == "bicubic" and cfg["crop_mode"] == "center" and cfg.fit == "shorter"
    # crop_pct is held as the side it resizes to (timm: floor(160 / 0.95) = 168) and read back as one that
    # gives that side again under timm's floor
    assert (
        cfg["input_size"] == (3, 160, 160) and cfg.resize == 168 and math.floor(160 / cfg["crop_pct"]) == 168
    )
    assert cfg["test_input_size"] == (3, 192, 192) and cfg["test_crop_pct"] == 1.0 and cfg.test_resize == 192
    assert "interpolation" not in cfg.meta and "crop_pct" not in cfg.meta  # fields now, not loose facts
    served = cfg.preprocess
    assert (served.resize, served.crop, served.fit, served.interpolation) == (192, 192, "shorter", "bicubic")
    assert cfg.spec("resnet18").preprocess == served
    data = timm.data.resolve_model_data_config(net, use_test_size=True)
    assert (
        data["input_size"] == (3, 192, 192) and data["crop_pct"] == 1.0 and data["interpolation"] == "bicubic"
    )
    assert timm.data.resolve_model_data_config(net)["input_size"] == (3, 160, 160)
    # predict feeds the test size: the model sees 192 x 192
    from resdense.serve.load import load_model

    Image.fromarray((torch.rand(120, 200, 3) * 255).byte().numpy()).save(tmp_path / "x.png")
    _, spec = load_model("hf-hub:timm/r18.test")
    assert spec.preprocess == served
    assert main(["predict", "--weights", "hf-hub:timm/r18.test", str(tmp_path / "x.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] in {"0", "1", "2"}


def test_timm_config_defaults_and_refusals() -> None:
    plain = {"architecture": "resnet18", "num_classes": 10, "pretrained_cfg": {"input_size": [3, 224, 224]}}
    cfg = hf_hub.timm_cfg(plain, "hf-hub:org/plain")
    # what timm assumes when the config says nothing: bicubic, centre crop of 0.875, no test size
    assert cfg["interpolation"] == "bicubic" and cfg["crop_mode"] == "center" and cfg["crop_pct"] == 0.875
    assert cfg.resize == 256 and "test_input_size" not in cfg
    squash = {
        **plain,
        "pretrained_cfg": {
            "input_size": [3, 224, 224],
            "crop_mode": "squash",
            "crop_pct": 1.0,
            "interpolation": "bilinear",
        },
    }
    cfg = hf_hub.timm_cfg(squash, "hf-hub:org/squash")
    assert cfg.fit == "squash" and cfg.preprocess.interpolation == "bilinear" and cfg["crop_pct"] == 1.0
    for bad, word in (
        ({"crop_mode": "border"}, "border"),
        ({"interpolation": "lanczos"}, "lanczos"),
        ({"test_input_size": [224, 224]}, "test_input_size"),
        ({"test_input_size": "288"}, "test_input_size"),
        ({"crop_pct": -0.5}, "crop_pct"),
    ):
        config = {**plain, "pretrained_cfg": {**plain["pretrained_cfg"], **bad}}
        with pytest.raises(PretrainedError) as e:
            hf_hub.timm_cfg(config, "hf-hub:org/bad")
        assert "\n" not in str(e.value) and word in str(e.value) and "hf-hub:org/bad" in str(e.value)
