"""What a model's configuration may say, from the Hub (timm's ``config.json``) and from a model file's spec:
the probe's cases as one-line errors naming the field, a config that contradicts its weights refused,
``create_model``'s arguments named, and property tests (Hypothesis) that random wrong types and values give a
:class:`UserError`, never another exception, and that whatever a Hub config is accepted as is a spec a model
file could hold."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import resdense
from resdense.cli import main
from resdense.errors import UserError
from resdense.modelfile import ModelSpec, check_spec_dict
from resdense.models import hf_hub
from resdense.models.pretrained import PretrainedError

from .test_hf_hub import cached_repo, hub_cache, timm_config  # noqa: F401 (hub_cache: the fixture)

PROPS = settings(max_examples=60, deadline=None, derandomize=True)
PLAIN = {
    "architecture": "resnet18",
    "num_classes": 10,
    "pretrained_cfg": {
        "input_size": [3, 64, 64],
        "crop_pct": 0.9,
        "interpolation": "bilinear",
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
        "crop_mode": "center",
    },
}


@pytest.mark.parametrize(
    "top, field, value",
    [
        (True, "architecture", ["resnet18"]),
        (False, "crop_pct", 0),
        (False, "crop_pct", math.nan),
        (False, "std", [0, 0, 0]),
        (False, "input_size", [3, 0, 0]),
        (False, "mean", [0.5, "x", 0.3]),
        (False, "test_crop_pct", math.inf),
        (False, "interpolation", ["bicubic"]),
        (False, "crop_mode", 3),
        (True, "num_classes", 2.5),
        (True, "label_names", {"a": "cat"}),
        (True, "pretrained_cfg", [1, 2]),
    ],
)
def test_hub_config_fields_are_one_line_errors_naming_them(top, field, value):
    """The probe: a list architecture, crop_pct 0 or NaN, std 0, input_size [3,0,0] were tracebacks (or, for
    crop_pct 0, silently the default)."""
    config = copy.deepcopy(PLAIN)
    (config if top else config["pretrained_cfg"])[field] = value
    with pytest.raises(PretrainedError) as e:
        hf_hub.timm_cfg(config, "hf-hub:org/bad")
    msg = str(e.value)
    assert "\n" not in msg and "hf-hub:org/bad" in msg and field in msg and "unreadable pretrained_cfg" in msg


def test_a_config_contradicting_its_weights_is_refused(hub_cache: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    """The probe: a Hub config saying 1,000 classes beside 10-class weights re-initialised the classifier and
    predicted from it. Now refused, one line naming num_classes; fine-tuning a new head still works."""
    torch.manual_seed(0)
    src = resdense.create_model("resnet18", num_classes=10)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    cached_repo(
        hub_cache,
        "org/liar",
        {"model.safetensors": tmp_path / "w.safetensors", "config.json": timm_config("resnet18", 1000)},
    )
    with pytest.raises(PretrainedError, match=r"num_classes 1000 in its config, but its classifier has 10"):
        resdense.create_model("resnet18", weights="hf-hub:org/liar")
    (tmp_path / "x.png").write_bytes(b"")  # predict refuses before reading any image
    assert main(["predict", "--weights", "hf-hub:org/liar", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "num_classes 1000" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    tuned = resdense.create_model("resnet18", weights="hf-hub:org/liar", num_classes=4)  # a new head: asked
    assert tuned.fc.out_features == 4


@pytest.mark.parametrize(
    "args, word",
    [
        ((None,), "name"),
        (("resnet18",), None),
        ((["resnet18"],), "name"),
    ],
)
def test_create_model_names_a_bad_name(args, word):
    if word is None:
        assert resdense.create_model(*args) is not None
        return
    with pytest.raises(UserError, match=word):
        resdense.create_model(*args)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": -1}, "num_classes"),
        ({"in_chans": "3"}, "in_chans"),
    ],
)
def test_create_model_names_a_bad_argument(kwargs, word):
    with pytest.raises(UserError) as e:
        resdense.create_model("resnet18", **kwargs)
    assert word in str(e.value) and "\n" not in str(e.value)


# -- property tests ------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
# values near the valid ones, where the bounds are: small sizes, zero, negative, NaN, wrong lengths
NEAR = st.one_of(
    st.lists(st.integers(-2, 5000), min_size=0, max_size=4),
    st.lists(st.floats(-1, 2) | st.just(math.nan), min_size=1, max_size=4),
    st.sampled_from([0, -1, 0.0, 1.5, math.nan, math.inf, "bicubic", "squash", "center", True]),
)
HUB_FIELDS = [
    "architecture",
    "num_classes",
    "label_names",
    "pretrained_cfg",
    *[f"pretrained_cfg.{k}" for k in ("input_size", "mean", "std", "crop_pct", "test_crop_pct")],
    *[f"pretrained_cfg.{k}" for k in ("interpolation", "crop_mode", "test_input_size", "num_classes")],
]


@PROPS
@given(
    changes=st.lists(st.tuples(st.sampled_from(HUB_FIELDS), st.one_of(JSON, NEAR)), min_size=1, max_size=3)
)
def test_malformed_hub_configs_are_user_errors(changes):
    """Random wrong types and values in timm's config.json: a PretrainedError (one line), never another
    exception; and a config that is accepted gives a spec that a model file's reader accepts too."""
    config = copy.deepcopy(PLAIN)
    for field, value in changes:
        where, _, key = field.rpartition(".")
        target = config if not where else config.get("pretrained_cfg")
        if isinstance(target, dict):
            target[key or where] = value
    try:
        cfg = hf_hub.timm_cfg(config, "hf-hub:org/random")
    except PretrainedError as e:
        assert "\n" not in str(e)
        return
    spec = cfg.spec(cfg.model)
    check_spec_dict(json.loads(spec.to_json()))


SPEC = {
    "model": "resnet18",
    "options": {"num_classes": 2, "in_chans": 3},
    "preprocess": {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2], "in_chans": 3},
    "classes": ["a", "b"],
}
SPEC_FIELDS = [
    "model",
    "options",
    "classes",
    "preprocess",
    "tta_flip",
    *[f"options.{k}" for k in ("num_classes", "in_chans")],
    *[
        f"preprocess.{k}"
        for k in ("size", "resize", "crop", "mean", "std", "in_chans", "fit", "interpolation")
    ],
]


@PROPS
@given(
    changes=st.lists(st.tuples(st.sampled_from(SPEC_FIELDS), st.one_of(JSON, NEAR)), min_size=1, max_size=3)
)
def test_malformed_model_file_specs_are_user_errors(changes):
    """Random wrong types and values in a model file's spec: a one-line UserError, never another exception."""
    d = copy.deepcopy(SPEC)
    for field, value in changes:
        where, _, key = field.rpartition(".")
        target = d if not where else d.get(where)
        if isinstance(target, dict):
            target[key] = value
    try:
        spec = ModelSpec.from_json(json.dumps(d), "m.safetensors", "metadata")
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(spec.preprocess.in_chans, int)
