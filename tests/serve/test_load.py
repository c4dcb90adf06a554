"""``load_predictor``: one interface over run folders, safetensors, ONNX and TorchScript files."""

import shutil

import onnx
import pytest
import torch

from resdense.errors import UserError
from resdense.serve import Predictor, as_predictor, load_predictor, load_source
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


def test_as_predictor_takes_a_predictor_a_model_or_a_source(files):
    """explain and show_features take any of three; the loader turns each into a Predictor."""
    p = load_predictor(files["folder"])
    assert as_predictor(p) is p
    from_model = as_predictor(files["model"])  # fed as its own pretrained_cfg says
    assert from_model.model is files["model"] and from_model.backend == "torch"
    images = uint8_images(3, size=28)
    with torch.no_grad():
        expected = files["model"](from_model.spec.preprocess(images))
    assert torch.allclose(from_model.predict_logits(images), expected, atol=1e-5)
    from_file = as_predictor(files["safetensors"])  # a source: loaded as weights
    assert from_file.spec.classes == files["spec"].classes
    with pytest.raises(UserError, match="Linear: give a resdense model or a Predictor"):
        as_predictor(torch.nn.Linear(2, 2))


def test_load_source_is_the_commands_model_or_weights(files):
    p = load_source(files["folder"], tta="none")
    assert p.backend == "torch" and p.views == "none"
    assert load_source(None, weights=files["safetensors"]).views == load_predictor(files["folder"]).views
    with pytest.raises(UserError, match="give a run folder or model file, or --weights"):
        load_source(None)
    with pytest.raises(UserError, match="--arch goes with --weights"):
        load_source(files["folder"], arch="resnet18")


def test_the_predictors_steps_are_public_and_compose_to_predict_logits(files):
    """fit_images (resize, crop), then predict_fitted (normalise, run with the views): predict_logits; forward
    is the network alone on a normalised batch, whatever the backend."""
    images = uint8_images(4, size=28)
    spec = files["spec"]
    for kind in ("folder", "onnx", "torchscript"):
        p = load_predictor(files[kind])
        fitted = p.fit_images(images)
        assert fitted.dtype == torch.uint8 and fitted.shape[-1] == spec.preprocess.input_size
        assert torch.allclose(p.predict_fitted(fitted), p.predict_logits(images), atol=1e-5)
        with torch.no_grad():
            expected = files["model"](spec.preprocess(images))
        assert torch.allclose(p.forward(spec.preprocess(images)).float(), expected, atol=1e-4)
