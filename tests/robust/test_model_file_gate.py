"""Issue 19, cases 5, 7 and 10 (NaN weights, flipped bits): the model-file reader checks the metadata (schema,
known model, options, bounds before anything is allocated, classes against the head), the tensors (names and
shapes against the model the spec builds, finite values) and the digest the writer recorded."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from resdense.errors import UserError
from resdense.modelfile import DIGEST_KEY, SPEC_KEY
from resdense.rundir import RunDir
from resdense.serve.load import load_predictor
from tests.cli.conftest import cli
from tests.train.conftest import assert_one_line_error


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return load_file(str(path)), dict(f.metadata())


def _rewrite(path, *, spec=None, raw=None, state=None, keep_digest=False):
    """The model file at ``path`` with its spec, its raw spec text or its tensors changed (digest dropped
    unless ``keep_digest``: the checks behind the digest are what is tested)."""
    old_state, meta = _read(path)
    if raw is not None or spec is not None:
        meta[SPEC_KEY] = raw if raw is not None else json.dumps(spec)
    if not keep_digest:
        meta.pop(DIGEST_KEY, None)
    save_file(state if state is not None else old_state, str(path), metadata=meta)


@pytest.fixture
def model_file(finished_run, tmp_path):
    dst = tmp_path / "model.safetensors"
    shutil.copy(finished_run[0] / RunDir.WEIGHTS, dst)
    return dst


@pytest.fixture
def spec(model_file):
    return json.loads(_read(model_file)[1][SPEC_KEY])


def _with(spec, change):
    s = json.loads(json.dumps(spec))
    change(s)
    return s


SPECS = {
    "not JSON": (None, "{nope", "unreadable resdense spec"),
    "a list": (None, "[1, 2]", "expected a JSON object"),
    "no model": (lambda s: s.pop("model"), None, "missing model"),
    "unknown model": (lambda s: s.update(model="resnet9999"), None, "unknown model 'resnet9999'"),
    "unknown option": (lambda s: s["options"].update(frobnicate=3), None, "frobnicate"),
    "option of the wrong type": (
        lambda s: s["options"].update(drop_rate="x"),
        None,
        "drop_rate must be float",
    ),
    "classes shorter than the head": (
        lambda s: s.update(classes=s["classes"][:2]),
        None,
        "2 class names for a head of 4",
    ),
    "num_classes 6e7": (
        lambda s: s["options"].update(num_classes=60_000_000),
        None,
        "num_classes must be an integer in",
    ),
    "size 1e6": (lambda s: s["preprocess"].update(size=10**6), None, "preprocess.size must be"),
    "std zero": (lambda s: s["preprocess"].update(std=[0.0]), None, "std must be positive"),
    "in_chans the tensors lack": (
        lambda s: s["options"].update(in_chans=3),
        None,
        "wrong shape: conv1.weight",
    ),
}


@pytest.mark.parametrize("case", list(SPECS))
def test_case5_metadata_is_checked(case, model_file, spec):
    change, raw, fragment = SPECS[case]
    _rewrite(model_file, spec=_with(spec, change) if change else None, raw=raw)
    with pytest.raises(UserError) as e:
        load_predictor(model_file)
    assert fragment in str(e.value) and str(model_file) in str(e.value) and "\n" not in str(e.value)


def test_case5_tensors_are_checked_against_the_spec(model_file, spec):
    state, _ = _read(model_file)
    _rewrite(model_file, state={k: v for k, v in state.items() if k != "fc.weight"})
    with pytest.raises(UserError, match="missing: fc.weight"):
        load_predictor(model_file)
    _rewrite(model_file, state={**state, "extra.weight": torch.zeros(2)})
    with pytest.raises(UserError, match="unexpected: extra.weight"):
        load_predictor(model_file)


def test_case10_nan_weights_are_refused(model_file, tmp_path, capsys):
    state, _ = _read(model_file)
    state["fc.weight"][0, 0] = float("nan")
    _rewrite(model_file, state=state)
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    code, out, err = cli(capsys, "predict", model_file, tmp_path / "x.png")
    assert_one_line_error(code, err, "non-finite values", "fc.weight", command="predict")
    assert "nan" not in out


def test_case10_flipped_bits_fail_the_digest_and_old_files_still_load(model_file):
    good = load_predictor(model_file)
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    data = bytearray(model_file.read_bytes())
    n = int.from_bytes(data[:8], "little")
    start = 8 + n + json.loads(data[8 : 8 + n])["fc.weight"]["data_offsets"][0]
    bit = (
        start + 3
    )  # the top byte of the classifier's first float32: one flipped bit, a very different weight
    data[bit] ^= 0x20
    model_file.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupt .*digest"):
        load_predictor(model_file)
    model_file.write_bytes(bytes(data))
    _rewrite(model_file, keep_digest=False)  # a file from before the digest: it loads, unchecked
    old = load_predictor(model_file)
    assert not torch.equal(old.predict_logits(x), good.predict_logits(x))
    data[bit] ^= 0x20
    model_file.write_bytes(bytes(data))
    _rewrite(model_file, keep_digest=False)
    torch.testing.assert_close(load_predictor(model_file).predict_logits(x), good.predict_logits(x))


class _Code:
    pass


def test_case7_garbage_pth_files_are_one_line(tmp_path, capsys):
    text, noise, code_file = tmp_path / "text.pth", tmp_path / "noise.pth", tmp_path / "code.pth"
    text.write_text("hello\n")
    noise.write_bytes(bytes(range(256)) * 3)
    torch.save({"x": _Code()}, code_file)
    for path, fragment in (
        (text, "not a readable PyTorch file"),
        (noise, "not a readable PyTorch file"),
        (code_file, "holds Python objects or code"),
    ):
        for argv in (
            ["predict", "--weights", path, "--arch", "resnet20", path],
            ["evaluate", path],
            ["export", path, "--format", "onnx"],
            ["train", "--weights", path, "--epochs", "1"],
        ):
            code, _, err = cli(capsys, *argv)
            assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
        with pytest.raises(UserError, match=fragment):
            load_predictor(path, arch="resnet20")
    assert pickle  # (the code file is a pickle of a class: refused by weights_only, never run)
