"""A user's program, type-checked by mypy in the suite (tests/docs/test_types.py; never run): every export of
the five public namespaces called as the guides call it, so that an editor's completions and the reference's
signatures agree with the code."""

from __future__ import annotations

import resdense
from resdense.models import ModelConfig, create_model, get_model_info, is_model, list_models, model_entries
from resdense.models.d2l import DenseBlock, Residual, conv_block, resnet_block, transition_block
from resdense.serve import as_predictor, evaluate_source, load_model, load_predictor
from resdense.serve.explain import explain
from resdense.serve.features import show_features
from resdense.studies import STUDIES, StudyResult
from resdense.train import RECIPES, TrainConfig, TrainResult, get_recipe, load_config, train, validate


def models() -> None:
    names: list[str] = list_models("resnet*")
    assert is_model(names[0])
    net = create_model("resnet20", num_classes=10, in_chans=1)
    net.reset_classifier(5)
    print(get_model_info("resnet20").family, len(model_entries()), ModelConfig)
    print(resdense.create_model("d2l_resnet18"), resdense.list_models(), resdense.__version__)
    blocks = [Residual(3, 6, use_1x1conv=True, strides=2), DenseBlock(2, 3, 10), conv_block(3, 10)]
    blocks += [transition_block(23, 10), *resnet_block(64, 128, 2)]


def training() -> None:
    cfg: TrainConfig = get_recipe("fast").with_overrides(epochs=1, train_subset=256)
    validate(cfg)
    result: TrainResult = train(cfg)
    print(result.summary["test_accuracy"], sorted(RECIPES))
    print(train(load_config("my.toml", epochs=3)))


def serving() -> None:
    report = evaluate_source("runs/fast")
    print(report.lines(), report.to_json())
    predictor = load_predictor("fashion-mnist")
    print(predictor, load_model("runs/fast"), as_predictor(predictor))
    maps = explain("fashion-mnist", ["shoe.png"], class_name="Sneaker")
    print(maps[0], show_features(create_model("resnet20"), "shoe.png"))


def studies() -> None:
    result: StudyResult = STUDIES["identity"]("runs/identity", quick=True)
    print(result.held, result.verdict)
