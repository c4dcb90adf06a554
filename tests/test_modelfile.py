"""The model file: ``ModelSpec``, safetensors and TorchScript with the spec, and ``sniff``."""

import json

import pytest
import torch
from safetensors.torch import save_file

import resdense
from resdense.errors import UserError
from resdense.modelfile import (
    DIGEST_KEY,
    SHIPPED_KEY,
    SPEC_KEY,
    ModelFileError,
    ModelSpec,
    check_spec_dict,
    read_safetensors,
    read_torchscript,
    sniff,
    unwrap,
    write_safetensors,
    write_torchscript,
)
from resdense.preprocess import Preprocess

# torch.jit.trace and torch.jit.save announce their deprecation; the archives are still what export writes
JIT = pytest.mark.filterwarnings("ignore::FutureWarning")

OPTIONS = {"num_classes": 3, "in_chans": 1, "widths": [4, 8, 16]}


def make_spec(**kw) -> ModelSpec:
    return ModelSpec("resnet20", dict(OPTIONS), Preprocess(16, (0.5,), (0.25,), 1), ["a", "b", "c"], **kw)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resdense.create_model("resnet20", num_classes=3, in_chans=1, widths=(4, 8, 16)).eval()


def images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(1))


# -- ModelSpec ---------------------------------------------------------------------------------------------


def test_spec_dict_and_json_round_trip():
    for spec in (make_spec(), make_spec(tta_flip=True)):
        d = spec.to_dict()
        assert set(d) == {"model", "options", "preprocess", "classes", "tta_flip"}
        assert d["preprocess"] == spec.preprocess.to_dict()
        assert ModelSpec.from_dict(d) == spec
        text = spec.to_json()
        assert isinstance(text, str) and json.loads(text) == d
        assert ModelSpec.from_json(text, "m.safetensors", "metadata") == spec
        assert ModelSpec.from_json(text.encode(), "m.safetensors", "metadata") == spec


def test_spec_from_dict_defaults_tta_flip_and_copies():
    d = make_spec().to_dict()
    del d["tta_flip"]
    spec = ModelSpec.from_dict(d)
    assert spec.tta_flip is False
    assert spec.options == OPTIONS and spec.options is not d["options"]
    assert spec.classes == ["a", "b", "c"] and spec.classes is not d["classes"]
    shorter = ModelSpec("resnet20", {}, Preprocess.centre(16, (0.5,), (0.25,), 1))
    assert shorter.classes == [] and ModelSpec.from_json(shorter.to_json(), "x", "y") == shorter


@pytest.mark.parametrize(
    "text",
    ["", None, b"", "not json {", "[1, 2]", '{"model": "resnet20"}', '{"model": "r", "options": 3}', "null"],
)
def test_spec_from_bad_json_is_a_one_line_error_naming_the_file(text, tmp_path):
    path = tmp_path / "weights.safetensors"
    with pytest.raises(ModelFileError) as e:
        ModelSpec.from_json(text, path, "metadata")
    assert isinstance(e.value, UserError)
    message = str(e.value)
    assert str(path) in message
    assert "\n" not in message
    assert "metadata" in message


def test_model_file_error_is_a_user_error():
    assert issubclass(ModelFileError, UserError)


def test_unwrap():
    inner = torch.nn.Linear(2, 2)

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = inner

    assert unwrap(inner) is inner
    assert unwrap(Wrapper()) is inner


# -- safetensors -------------------------------------------------------------------------------------------


def test_safetensors_round_trip(model, tmp_path):
    spec = make_spec(tta_flip=True)
    extra = {"accuracy": 0.93, "recipe": {"epochs": 3}, "command": "resdense train"}
    path = write_safetensors(tmp_path / "sub" / "model.safetensors", model, spec, extra=extra)
    assert path == tmp_path / "sub" / "model.safetensors" and path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temporary file left
    f = read_safetensors(path)
    expected = model.state_dict()
    assert set(f.state_dict) == set(expected)
    for k, v in expected.items():
        assert torch.equal(f.state_dict[k], v), k
    assert f.spec == spec
    assert f.extra == extra
    # the weights load back into a fresh model and give the same outputs
    fresh = resdense.create_model("resnet20", num_classes=3, in_chans=1, widths=(4, 8, 16)).eval()
    fresh.load_state_dict(f.state_dict)
    with torch.no_grad():
        torch.testing.assert_close(fresh(images()), model(images()))


def test_safetensors_without_extra(model, tmp_path):
    write_safetensors(tmp_path / "m.safetensors", model, make_spec())
    f = read_safetensors(tmp_path / "m.safetensors")
    assert f.spec == make_spec() and f.extra == {}
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as s:
        meta = s.metadata()
    assert set(meta) == {"format", SPEC_KEY, DIGEST_KEY}  # no shipped extra; the digest (issue 19)
    assert meta["format"] == "pt"  # what safetensors loaders such as transformers' look for (issue 35)
    assert ModelSpec.from_json(meta[SPEC_KEY], "x", "y") == make_spec()


def test_safetensors_without_resdense_metadata_has_no_spec(model, tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    f = read_safetensors(path)
    assert f.spec is None and f.extra == {}
    assert set(f.state_dict) == set(model.state_dict())
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.ones(2)}, str(other), metadata={"format": "pt"})
    assert read_safetensors(other).spec is None


def test_safetensors_with_broken_metadata(tmp_path):
    bad_spec = tmp_path / "bad_spec.safetensors"
    save_file({"w": torch.ones(2)}, str(bad_spec), metadata={SPEC_KEY: "{broken"})
    with pytest.raises(ModelFileError, match="bad_spec.safetensors"):
        read_safetensors(bad_spec)
    bad_extra = tmp_path / "bad_extra.safetensors"
    save_file(
        {"w": torch.ones(2)}, str(bad_extra), metadata={SPEC_KEY: make_spec().to_json(), SHIPPED_KEY: "{"}
    )
    with pytest.raises(ModelFileError, match=SHIPPED_KEY):
        read_safetensors(bad_extra)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a model at all", b"\x00" * 64])
def test_unreadable_safetensors_is_a_one_line_error(content, tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as e:
        read_safetensors(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_safetensors_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="missing.safetensors"):
        read_safetensors(tmp_path / "missing.safetensors")


# -- TorchScript -------------------------------------------------------------------------------------------


@JIT
def test_torchscript_round_trip(model, tmp_path):
    traced = torch.jit.trace(model, images(1))
    spec = make_spec()
    path = write_torchscript(tmp_path / "model.pt", traced, spec)
    assert path == tmp_path / "model.pt"
    module, read_spec = read_torchscript(path)
    assert read_spec == spec
    assert not module.training
    with torch.no_grad():
        torch.testing.assert_close(module(images(3)), model(images(3)))


@JIT
def test_torchscript_without_spec(model, tmp_path):
    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.trace(model, images(1)), str(path))
    module, spec = read_torchscript(path)
    assert spec is None
    assert module(images(1)).shape == (1, 3)


def test_unreadable_torchscript_is_a_model_file_error(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a TorchScript archive")
    with pytest.raises(ModelFileError) as e:
        read_torchscript(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


# -- sniff -------------------------------------------------------------------------------------------------


@JIT
def test_sniff_tells_files_by_their_bytes(model, tmp_path):
    st = write_safetensors(tmp_path / "x.bin", model, make_spec())
    assert sniff(st) == "safetensors"
    assert sniff(str(st)) == "safetensors"

    ts = write_torchscript(tmp_path / "scripted.bin", torch.jit.trace(model, images(1)), make_spec())
    assert sniff(ts) == "torchscript"
    assert sniff(write_torchscript(tmp_path / "m.pt", torch.jit.trace(model, images(1)), make_spec())) == (
        "torchscript"
    )

    state = tmp_path / "state.pth"
    torch.save(model.state_dict(), state)
    assert sniff(state) == "torch"
    # a torch.save zip under an ONNX name is still a torch file: the bytes settle it
    disguised = tmp_path / "state.onnx"
    torch.save({"epoch": 1}, disguised)
    assert sniff(disguised) == "torch"

    onnx_file = tmp_path / "x.onnx"
    onnx_file.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x032.0")
    assert sniff(onnx_file) == "onnx"

    notes = tmp_path / "notes.txt"
    notes.write_text("some notes about the run\n")
    assert sniff(notes) == "unknown"

    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert sniff(empty) == "unknown"


def test_sniff_of_a_folder_or_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(ModelFileError, match="folder") as e:
        sniff(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(ModelFileError, match="nothing.safetensors"):
        sniff(tmp_path / "nothing.safetensors")


def test_spec_preprocessing_keeps_its_interpolation_and_old_specs_read_bilinear(model, tmp_path):
    from dataclasses import replace

    bicubic = make_spec(tta_flip=False)
    bicubic.preprocess = replace(Preprocess.centre(16, (0.5,), (0.25,), 1), interpolation="bicubic")
    d = bicubic.to_dict()
    assert d["preprocess"]["interpolation"] == "bicubic" and d["preprocess"]["fit"] == "shorter"
    path = write_safetensors(tmp_path / "m.safetensors", model, bicubic)
    assert read_safetensors(path).spec == bicubic
    # a spec written before the key existed (no interpolation, no fit): a bilinear squash, as it always was
    old = make_spec().to_dict()
    assert "interpolation" not in old["preprocess"] and "fit" not in old["preprocess"]
    pre = ModelSpec.from_dict(old).preprocess
    assert pre.interpolation == "bilinear" and pre.fit == "squash"


@pytest.mark.parametrize(
    ("key", "value"), [("interpolation", "lanczos"), ("interpolation", [3]), ("fit", "border")]
)
def test_spec_with_an_unknown_interpolation_or_fit_is_a_one_line_error(key, value):
    d = make_spec().to_dict()
    d["preprocess"][key] = value
    with pytest.raises(ValueError, match=f"preprocess.{key} must be one of"):
        check_spec_dict(d)
    with pytest.raises(ModelFileError) as e:
        ModelSpec.from_json(json.dumps(d), "m.safetensors", "metadata")
    assert "\n" not in str(e.value) and "m.safetensors" in str(e.value) and key in str(e.value)
