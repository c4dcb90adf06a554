"""The d2l recipes reproduce the book's experiments: their settings, and the trainer they actually build."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from resdense.cli import main
from resdense.data import augment as augment_module
from resdense.data import load_dataset
from resdense.preprocess import Preprocess
from resdense.rundir import load_checkpoint
from resdense.train import RECIPES, TrainConfig, Trainer, get_recipe, schedule, train

from .conftest import TINY, write_learnable_set

BOOK = {
    # d2l 8.6 / 8.7: train_ch6(net, train_iter, test_iter, num_epochs=10, lr, d2l.try_gpu()), batch 256,
    # load_data_fashion_mnist(batch_size, resize=96); init_weights = xavier_uniform_; plain SGD.
    "d2l-resnet": {"model": "d2l_resnet18", "lr": 0.05},
    "d2l-densenet": {"model": "d2l_densenet", "lr": 0.1},
}
COMMON = dict(
    epochs=10,
    batch_size=256,
    optimizer="sgd",
    momentum=0.0,
    weight_decay=0.0,
    schedule="constant",
    warmup_epochs=0.0,
    label_smoothing=0.0,
    resize=96,
    normalize=False,
    augment="none",
    init="xavier",
    tta_flip=False,
    ema=0.0,
    model_options={},
)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    # 256 training images: exactly one of the book's batches; 8 test images
    return write_learnable_set(tmp_path_factory.mktemp("recipes") / "idx", n_train=256, n_test=8)


@pytest.mark.parametrize("name", list(BOOK))
def test_d2l_recipe_settings(name):
    cfg = get_recipe(name)
    assert cfg.recipe == name
    for key, value in {**COMMON, **BOOK[name]}.items():
        assert getattr(cfg, key) == value, key


def test_recipes_are_complete_and_unknown_ones_refused():
    assert {"d2l-resnet", "d2l-densenet", "fast", "best"} <= set(RECIPES)
    for name, cfg in RECIPES.items():
        assert isinstance(cfg, TrainConfig) and cfg.recipe == name
    with pytest.raises(ValueError, match="d2l-resnet"):
        get_recipe("d2l-resnt")


def xavier_bound(w: torch.Tensor) -> float:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
    return math.sqrt(6.0 / (fan_in + fan_out))


@pytest.mark.parametrize("name", list(BOOK))
def test_d2l_trainer_is_built_as_the_book_says(name, small_set, tmp_path):
    cfg = get_recipe(name).with_overrides(device="cpu", out=str(tmp_path / "run"))
    trainer = Trainer(cfg, load_dataset("idx", small_set), tmp_path / "run", progress=False)

    # Xavier-uniform conv and linear weights: inside the bound, with a uniform's std of bound/sqrt(3)
    layers = [m for m in trainer.model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) >= 10
    for m in layers:
        w, bound = m.weight.detach().float(), xavier_bound(m.weight)
        assert w.abs().max() <= bound * (1 + 1e-6), m
        if w.numel() >= 2000:
            assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05), m

    # plain SGD: no momentum, no Nesterov, no weight decay, at the book's learning rate
    opt = trainer.optimizer
    assert type(opt) is torch.optim.SGD
    for group in opt.param_groups:
        assert group["momentum"] == 0 and not group["nesterov"] and group["weight_decay"] == 0
        assert group["lr"] == BOOK[name]["lr"]
    # a constant learning rate over all ten epochs
    assert trainer.steps_per_epoch == 1 and trainer.total_steps == 10
    lrs = {schedule.lr_at(cfg, s, trainer.total_steps, trainer.steps_per_epoch) for s in range(10)}
    assert lrs == {BOOK[name]["lr"]}

    # 96x96 input, no normalisation (x / 255 only), the book's loss
    assert trainer.preprocess == Preprocess(resize=96, mean=(0.0,), std=(1.0,), in_chans=1)
    assert tuple(trainer.train_set.images.shape[1:]) == (1, 96, 96)
    assert tuple(trainer.test_set.images.shape[1:]) == (1, 96, 96)
    x = trainer.preprocess(trainer.train_set.images[:4])
    assert torch.allclose(x, trainer.train_set.images[:4].float() / 255)
    assert trainer.criterion.label_smoothing == 0.0
    assert trainer.ema_model is None and cfg.augment == "none" and not cfg.tta_flip
    assert trainer.spec.model == BOOK[name]["model"]


def test_d2l_training_step_uses_no_augmentation_and_no_momentum(small_set, tmp_path, monkeypatch):
    """One real step with the d2l-resnet recipe's training settings (on a tiny model, to keep it fast)."""

    def no_augment(*args, **kwargs):
        raise AssertionError("augmentation called under a recipe without augmentation")

    monkeypatch.setattr(augment_module, "augment", no_augment)
    seen_lrs = []
    real_step = torch.optim.SGD.step

    def spy_step(self, *args, **kwargs):
        seen_lrs.append([g["lr"] for g in self.param_groups])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy_step)
    cfg = get_recipe("d2l-resnet").with_overrides(
        model="resnet20",
        model_options={"widths": (4, 8, 16)},
        epochs=1,
        batch_size=16,
        train_subset=16,
        device="cpu",
        out=str(tmp_path / "run"),
    )
    result = train(cfg, dataset=load_dataset("idx", small_set), progress=False)
    assert seen_lrs == [[0.05, 0.05]]
    assert result.history[0]["lr"] == 0.05
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    # SGD without momentum keeps no per-parameter state (a momentum buffer would show up here)
    assert all(
        not state or state.get("momentum_buffer") is None for state in ckpt["optimizer"]["state"].values()
    )


@pytest.mark.parametrize("name", list(BOOK))
def test_cli_recipe_reaches_train_unchanged(name, monkeypatch, capsys):
    """``resdense train --recipe NAME`` trains with the recipe itself (only --device/--out given)."""
    import resdense.train

    captured = {}
    monkeypatch.setattr(resdense.train, "train", lambda cfg, **kw: captured.setdefault("cfg", cfg))
    assert main(["train", "--recipe", name, "--device", "cpu", "--out", "r"]) == 0
    assert captured["cfg"] == get_recipe(name).with_overrides(device="cpu", out="r")


def test_cli_model_override_drops_the_recipes_model_options(monkeypatch):
    import resdense.train

    captured = {}
    monkeypatch.setattr(resdense.train, "train", lambda cfg, **kw: captured.setdefault("cfg", cfg))
    # `gpu` is a recipe with model options (wider stages); the others have none to drop
    recipe_options = get_recipe("gpu").model_options
    assert recipe_options and get_recipe("gpu").model == "resnet20"
    cpu = ["--device", "cpu", "--epochs", "1", "--train-subset", "512"]
    assert main(["train", "--recipe", "gpu", *cpu, *TINY[:2]]) == 0  # same model: keeps the recipe's widths
    assert captured.pop("cfg").model_options == recipe_options
    assert main(["train", "--recipe", "gpu", *cpu, "--model", "resnet32"]) == 0  # another model: dropped
    cfg = captured.pop("cfg")
    assert cfg.model == "resnet32" and cfg.model_options == {}
    # options given with the new model are the ones used
    assert (
        main(
            ["train", "--recipe", "gpu", *cpu, "--model", "resnet32", "--model-options", '{"drop_rate": 0.1}']
        )
        == 0
    )
    assert captured.pop("cfg").model_options == {"drop_rate": 0.1}
    assert main(["train", "--recipe", "d2l-resnet", "--resize", "none", "--lr", "0.01"]) == 0
    cfg = captured.pop("cfg")
    assert cfg.resize is None and cfg.lr == 0.01 and cfg.model == "d2l_resnet18"


def test_small_learnable_set_is_what_it_says(tmp_path):
    folder = write_learnable_set(tmp_path / "idx", n_train=40, n_test=8)
    ds = load_dataset("idx", folder)
    assert len(ds.train) == 40 and len(ds.test) == 8 and ds.classes == ["0", "1", "2", "3"]
