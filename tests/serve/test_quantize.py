"""``resdense export --format onnx --int8``: onnxruntime's static quantization (QDQ, uint8 activations,
per-channel int8 weights) calibrated on the run's training images, and the export's own check."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from resdense.cli import main
from resdense.data import load_dataset
from resdense.rundir import RunDir
from resdense.serve import load_predictor
from resdense.serve.evaluate import evaluate, load_test_set
from resdense.serve.export import META_KEY
from resdense.serve.quantize import calibration_images
from tests.train.conftest import isolation, shared_finished_run


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    with isolation(tmp_path, monkeypatch):
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_finished_run(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def int8_export(run, tmp_path_factory):
    """The int8 file of the shared tiny run and what the export printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            ["export", str(run), "--format", "onnx", "--int8", "--calibration", "96", "--out", str(out)]
        )
    assert code == 0, buf.getvalue()
    return out, buf.getvalue()


def test_the_graph_is_qdq_u8s8_with_per_channel_weights(int8_export):
    path, _ = int8_export
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 5 and ops.count("DequantizeLinear") > 10 and "Conv" in ops
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    act_zero, weight_scales = [], []
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":  # activations, quantized at run time: uint8
            act_zero.append(init[n.input[2]].dtype)
        if (
            n.op_type == "DequantizeLinear"
            and init.get(n.input[0]) is not None
            and init[n.input[0]].ndim == 4
        ):
            assert init[n.input[0]].dtype == np.int8  # conv weights stored as int8
            weight_scales.append(init[n.input[1]].size)
    assert act_zero and set(act_zero) == {np.dtype(np.uint8)}
    assert weight_scales and min(weight_scales) > 1  # one scale per output channel
    meta = {p.key: p.value for p in model.metadata_props}
    assert '"resnet20"' in meta[META_KEY]  # the spec travels, like any exported file


def test_the_export_reports_int8_against_fp32_on_the_runs_test_set(run, int8_export):
    path, printed = int8_export
    lines = printed.strip().splitlines()
    assert lines[0].startswith(f"wrote {path}") and "96 training images" in lines[0]
    m = re.search(
        r"test accuracy int8 ([\d.]+) vs fp32 ([\d.]+) \(([-+][\d.]+) points\) on 64 test images", lines[1]
    )
    assert m, lines[1]
    int8_acc, fp32_acc = float(m.group(1)), float(m.group(2))
    predictor = load_predictor(path)  # resdense's other commands read the file
    assert predictor.backend == "onnxruntime"
    assert evaluate(
        path, test_set=load_test_set(run, preprocess=predictor.spec.preprocess), predictor=predictor
    ).accuracy == pytest.approx(int8_acc, abs=1e-4)
    fp32 = evaluate(run).accuracy
    assert fp32 == pytest.approx(fp32_acc, abs=1e-4)
    assert abs(int8_acc - fp32_acc) <= 0.1  # a 17k-parameter net on 64 images: a few images at most
    assert re.search(
        r"int8 speed: [\d,]+ vs [\d,]+ images/s at batch 64 on this CPU \([\d.]+x fp32", lines[2]
    )


def test_int8_and_fp32_agree_on_most_images(run, int8_export):
    path, _ = int8_export
    test = load_test_set(run)
    fp32 = load_predictor(run).predict_logits(test.images)
    int8 = load_predictor(path).predict_logits(test.images)
    assert (fp32.argmax(1) == int8.argmax(1)).float().mean() >= 0.9
    assert not torch.equal(fp32, int8)  # quantized for real


def test_calibration_comes_from_the_runs_training_split(run):
    spec = load_predictor(run).spec
    cal = calibration_images(run, spec.preprocess, 40)
    assert cal.shape == (40, 1, 28, 28) and cal.dtype == torch.uint8
    cfg = RunDir(run).read_config()
    train = load_dataset(cfg["dataset"], cfg["data_dir"]).train.images
    rows = {bytes(x.numpy().tobytes()) for x in train}
    assert all(bytes(x.numpy().tobytes()) in rows for x in cal)  # every one a training image
    assert torch.equal(cal, calibration_images(run, spec.preprocess, 40))  # seeded


def test_int8_default_name_and_bad_options(run, tmp_path, capsys):
    assert main(["export", str(run), "--format", "torchscript", "--int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "resdense export: error: --int8 applies to --format onnx only"
    assert main(["export", str(run), "--format", "onnx", "--int8", "--calibration", "0"]) == 2
    assert "--calibration must be at least 1" in capsys.readouterr().err
    assert not (RunDir(run).path / "model.int8.onnx").exists()
    from resdense.cli.export import default_out

    assert default_out(run, "onnx", int8=True) == RunDir(run).path / "model.int8.onnx"
    assert default_out(tmp_path / "w.safetensors", "onnx", int8=True) == tmp_path / "w.int8.onnx"


def test_serve_a_run_and_its_int8_file(run, int8_export):
    """``resdense serve RUN`` and ``resdense serve MODEL_FILE``: the run's card, the int8 file on onnxruntime."""
    import httpx

    from resdense.serve.http import create_app

    from .live import live_server, png_bytes

    image = png_bytes(load_test_set(run).images[0, 0].numpy())
    summary = RunDir(run).read_summary()
    for source, backend in [(run, "torch"), (int8_export[0], "onnxruntime")]:
        predictor = load_predictor(source)
        with live_server(create_app(predictor, source=source)) as (url, _), httpx.Client(base_url=url) as c:
            card = c.get("/model").json()
            assert card["backend"] == backend and card["model"] == "resnet20"
            r = c.post("/predict", content=image, headers={"Content-Type": "image/png"})
            assert r.status_code == 200 and len(r.json()["predictions"][0]["top"]) == 3
    from resdense.serve.card import model_card

    trained = model_card(load_predictor(run), run)["trained"]
    assert trained["test_accuracy"] == summary["test_accuracy"] and trained["dataset"] == "idx"
