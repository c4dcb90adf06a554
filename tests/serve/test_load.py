"""``load_predictor``: one interface over run folders, safetensors, ONNX and TorchScript files."""

import shutil

import onnx
import pytest
import torch

from resdense.errors import UserError
from resdense.serve import Predictor, load_predictor
from resdense.serve.export import META_KEY, export_onnx, export_torchscript

from . import CLASSES, make_trained, uint8_images


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A resnet20 run folder with the model in all four forms."""
    run = tmp_path_factory.mktemp("run")
    model, spec, _ = make_trained(run, "resnet20")
    export_onnx(model, spec, run / "model.onnx")
    export_torchscript(model, spec, run / "model.pt", fuse=True)
    return {
        "folder": run,
        "safetensors": run / "model.safetensors",
        "onnx": run / "model.onnx",
        "torchscript": run / "model.pt",
        "model": model,
        "spec": spec,
    }


BACKEND = {"folder": "torch", "safetensors": "torch", "onnx": "onnxruntime", "torchscript": "torchscript"}


def test_every_format_gives_the_same_logits(files):
    images = uint8_images(5, size=28)  # Fashion-MNIST-sized; the spec resizes to 32
    model, spec = files["model"], files["spec"]
    with torch.no_grad():
        expected = model(spec.preprocess(images))
    for kind, backend in BACKEND.items():
        p = load_predictor(files[kind], batch_size=2)  # 3 batches: 2 + 2 + 1
        assert p.backend == backend, kind
        assert p.spec == spec and p.classes == CLASSES
        assert (p.model is not None) == (backend == "torch")
        logits = p.predict_logits(images)
        assert logits.dtype == torch.float32 and logits.shape == (5, 10)
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4, msg=kind)
        assert torch.equal(p.predict(images), logits.argmax(1))


def test_rgb_images_for_a_grey_model_and_empty_batches(files):
    p = load_predictor(files["onnx"])
    rgb = uint8_images(2, size=28, channels=3)
    assert p.predict_logits(rgb).shape == (2, 10)
    assert p.predict_logits(rgb[:0]).shape[0] == 0


def test_files_are_recognised_by_content_when_the_suffix_is_unusual(files, tmp_path):
    shutil.copy(files["onnx"], tmp_path / "model.bin")
    shutil.copy(files["torchscript"], tmp_path / "model.zip")
    shutil.copy(files["safetensors"], tmp_path / "weights")
    assert load_predictor(tmp_path / "model.bin").backend == "onnxruntime"
    assert load_predictor(tmp_path / "model.zip").backend == "torchscript"
    assert load_predictor(tmp_path / "weights").backend == "torch"


def test_unreadable_files_are_one_line_user_errors(files, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    garbage_onnx = tmp_path / "broken.onnx"
    garbage_onnx.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    state_dict = tmp_path / "state.pt"
    torch.save(files["model"].state_dict(), state_dict)
    bare_onnx = tmp_path / "bare.onnx"
    proto = onnx.load(str(files["onnx"]))
    kept = [(e.key, e.value) for e in proto.metadata_props if e.key != META_KEY]
    del proto.metadata_props[:]
    for k, v in kept:
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(bare_onnx))
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    for path in (notes, garbage_onnx, state_dict, bare_onnx, empty_folder, tmp_path / "missing.onnx"):
        with pytest.raises(UserError) as e:
            load_predictor(path)
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg, msg


def test_bad_image_tensors(files):
    p = load_predictor(files["folder"])
    with pytest.raises(ValueError, match="uint8"):
        p.predict_logits(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="N, C, H, W"):
        p.predict_logits(torch.zeros(1, 28, 28, dtype=torch.uint8))
    with pytest.raises(UserError):
        p.predict_logits(torch.zeros(1, 4, 28, 28, dtype=torch.uint8))
    assert isinstance(p, Predictor) and "resnet20" in repr(p)
