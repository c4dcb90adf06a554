"""Every training setting declared once, on its field (train/config.py, train/settings.py): the checks, the
command line's options and the settings files all come from the declaration, so adding a setting is one
edit."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields, replace

import pytest

from resdense.cli.train import NOT_OPTIONS, add_setting_options, overrides_from
from resdense.errors import UserError
from resdense.train import TrainConfig
from resdense.train.config import RECORD_KEYS, read_settings_file, validate
from resdense.train.recipes import RECIPES, get_recipe, load_config, resolve_settings
from resdense.train.settings import check_field, declaration, default_of, kinds, option, setting


def other_value(cls, name: str):
    """A value for setting ``name`` that differs from its default and that its declaration accepts."""
    f = next(f for f in fields(cls) if f.name == name)
    s, allowed, default = declaration(f), kinds(cls, name), default_of(f)
    if allowed == (bool,):
        return not default
    if dict in allowed:
        return {"drop_rate": 0.1}
    if s.choices:
        return next(c for c in reversed(s.choices) if c != default)
    if str in allowed:
        return f"some-{name}"
    base = default if isinstance(default, (int, float)) and not isinstance(default, bool) else 0
    for bound in (s.ge, s.gt, s.le, s.lt):
        for v in (base + 1, base / 2, (bound or 0) + 1, (bound or 0) / 2 + 0.25, 0.5, 32):
            v = int(v) if int in allowed else float(v)
            try:
                check_field(cls, name, v)
            except UserError:
                continue
            if v != default:
                return v
    raise AssertionError(f"no other value found for {name}")


def argv_for(values: dict) -> list[str]:
    """Command-line options that give ``values``."""
    argv = []
    for name, v in values.items():
        if isinstance(v, bool):
            argv.append(option(name) if v else "--no-" + option(name)[2:])
        else:
            argv += [option(name), json.dumps(v) if isinstance(v, dict) else str(v)]
    return argv


def parser_for(cls) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_setting_options(p, cls)
    for name in ("recipe", "config", "resume"):
        p.add_argument("--" + name)
    return p


def every_other(cls) -> dict:
    return {f.name: other_value(cls, f.name) for f in fields(cls) if f.name not in NOT_OPTIONS}


# -- the declarations ---------------------------------------------------------------------------------------


def test_every_field_is_declared_with_help_and_its_default_passes_its_own_checks():
    for f in fields(TrainConfig):
        s = declaration(f)
        assert s.help, f"{f.name} has no help"
        # a help that restates its default by hand goes stale when the default changes
        assert "(default" not in s.help and "default " not in s.help, f.name
        check_field(TrainConfig, f.name, default_of(f))
    for recipe in RECIPES.values():
        validate(recipe, here=False)  # every recipe passes the checks (the gpu one needs a GPU to run)


def test_choices_are_asked_from_their_owners():
    from resdense.data import DATASETS
    from resdense.data.augment import AUGMENTATIONS
    from resdense.data.stream import IN_MEMORY
    from resdense.train.balance import BALANCE
    from resdense.utils.amp import AMP_MODES

    owners = {
        "dataset": DATASETS,
        "augment": AUGMENTATIONS,
        "in_memory": IN_MEMORY,
        "balance": BALANCE,
        "amp": AMP_MODES,
    }
    by_name = {f.name: declaration(f) for f in fields(TrainConfig)}
    for name, choices in owners.items():
        assert by_name[name].choices is choices, name
    with pytest.raises(UserError, match="--init: expected one of default, xavier, got 'he'"):
        validate(TrainConfig(init="he"))  # once only the command line knew --init's choices


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "--epochs must be >= 1, got 0"),
        ("lr", 0.0, "--lr must be positive, got 0"),
        ("momentum", 1.0, "--momentum must be in [0, 1), got 1"),
        ("resize", 7, "--resize must be between 8 and 4096 pixels, got 7"),
        ("progressive_from", 4, "--progressive-from must be 0 (off) or between 8 and 4096 pixels, got 4"),
        ("progressive_until", 0.0, "--progressive-until must be in (0, 1], got 0"),
        ("lookahead", -1, "--lookahead must be >= 0 steps, got -1"),
        ("workers", -1, "--workers must be >= 0, got -1"),
        ("optimizer", "lion", "--optimizer: expected one of sgd, nesterov, adamw, got 'lion'"),
        ("dataset", "cifar", "--dataset: expected one of fashion-mnist, cifar10, idx, folder, got 'cifar'"),
        ("epochs", 2.0, "--epochs: expected int, got 2.0"),
        ("ema", float("nan"), "--ema must be a finite number"),
    ],
)
def test_per_field_checks_come_from_the_declaration(field, value, message):
    with pytest.raises(UserError) as e:
        validate(TrainConfig(**{field: value}))
    assert message in str(e.value)


def test_the_bounds_accept_what_they_say():
    validate(TrainConfig(progressive_from=0, device="cpu"))  # off
    validate(TrainConfig(progressive_from=8, resize=8, dataset="Fashion_MNIST", amp=True, device="cpu"))


# -- adding a setting is one edit -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WithNewSetting(TrainConfig):
    """A setting added as a new field would be: nothing else is edited."""

    stochastic_depth: float = setting(
        0.0, "drop whole residual branches with this probability (10% at most)", ge=0, lt=1
    )
    warmup_images: int = setting(0, "ramp the batch up over this many images", ge=0, unit="images")


def test_a_new_field_reaches_the_parser_validation_and_the_settings_file(tmp_path):
    p = parser_for(WithNewSetting)
    action = next(a for a in p._actions if a.dest == "stochastic_depth")
    assert action.option_strings == ["--stochastic-depth"] and "residual branches" in action.help
    assert action.type is float and "(default: 0.0)" in action.help
    assert "(10% at most) (default: 0.0)" in " ".join(p.format_help().split())
    warm = next(a for a in p._actions if a.dest == "warmup_images")
    assert warm.type is int and warm.metavar == "N"
    args = p.parse_args(["--stochastic-depth", "0.2", "--warmup-images", "512"])
    assert overrides_from(args, WithNewSetting) == {"stochastic_depth": 0.2, "warmup_images": 512}
    with pytest.raises(argparse.ArgumentError, match="invalid int value"):
        p.parse_args(["--warmup-images", "many"])
    # validate(): its bounds, its type
    with pytest.raises(UserError, match=r"--stochastic-depth must be in \[0, 1\), got 1.5"):
        validate(WithNewSetting(stochastic_depth=1.5))
    with pytest.raises(UserError, match="--warmup-images must be >= 0 images"):
        validate(WithNewSetting(warmup_images=-1))
    # the settings file: what the resolved settings print is read back to equal settings
    cfg = resolve_settings("fast", None, overrides_from(args, WithNewSetting), cls=WithNewSetting)
    assert isinstance(cfg, WithNewSetting) and cfg.stochastic_depth == 0.2 and cfg.epochs == 12
    path = tmp_path / "s.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert resolve_settings(None, path, cls=WithNewSetting) == cfg
    path.write_text(json.dumps({"stochastic_depth": 2}))
    with pytest.raises(UserError, match=f"--config {path}: stochastic_depth must be in"):
        read_settings_file(path, WithNewSetting)


def test_every_setting_round_trips_through_the_options_and_a_file(tmp_path):
    """Each field given a value other than its default: the options carry every one, and the printed
    settings read back from a file are the same settings."""
    values = every_other(TrainConfig)
    got = overrides_from(parser_for(TrainConfig).parse_args(argv_for(values)))
    assert got == values
    cfg = resolve_settings("fast", None, got)
    path = tmp_path / "all.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert resolve_settings(None, path) == cfg


def test_none_on_the_command_line_and_in_files():
    p = parser_for(TrainConfig)
    got = overrides_from(p.parse_args(["--resize", "none", "--crop", "None", "--bn-momentum", "none"]))
    assert got == {"resize": None, "crop": None, "bn_momentum": None}
    assert overrides_from(p.parse_args(["--resize", "native"])) == {"resize": None}  # as before
    assert overrides_from(p.parse_args(["--resize", "0"])) == {"resize": None}
    assert resolve_settings("finetune", None, got).resize is None  # the recipe's 256 replaced


# -- settings files -------------------------------------------------------------------------------------------


def test_precedence_recipe_then_file_then_options(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('recipe = "d2l-resnet"\nepochs = 3\nlr = 0.02\nresize = "none"\n')
    cfg = resolve_settings(None, path, {"lr": 0.5})
    base = get_recipe("d2l-resnet")
    assert (cfg.recipe, cfg.model, cfg.init, cfg.epochs, cfg.lr, cfg.resize) == (
        "d2l-resnet",
        base.model,
        "xavier",
        3,
        0.5,
        None,
    )
    # --recipe on the command line wins over the file's recipe key; the file still overrides the recipe
    cfg = resolve_settings("best", path)
    assert (cfg.recipe, cfg.epochs, cfg.augment) == ("best", 3, "flip-crop")
    assert load_config(path, epochs=1) == resolve_settings(None, path, {"epochs": 1})


def test_the_model_rules_hold_in_files(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"recipe": "gpu", "model": "resnet32"}))
    assert resolve_settings(None, path).model_options == {}  # another model: the recipe's widths dropped
    path.write_text(json.dumps({"recipe": "gpu", "model": "resnet20"}))
    assert resolve_settings(None, path).model_options == get_recipe("gpu").model_options
    cfg = resolve_settings(None, path, {"model": "resnet32"})  # the command line's model: same rule
    assert cfg.model == "resnet32" and cfg.model_options == {}


def test_yaml_toml_and_json_give_the_same_settings(tmp_path):
    pytest.importorskip("yaml")
    (tmp_path / "a.yaml").write_text("epochs: 3\nmodel_options:\n  widths: [4, 8, 16]\nresize: null\n")
    (tmp_path / "a.yml").write_text("epochs: 3\nmodel_options: {widths: [4, 8, 16]}\n")
    (tmp_path / "a.toml").write_text("epochs = 3\n[model_options]\nwidths = [4, 8, 16]\n")
    (tmp_path / "a.conf").write_text(
        '{"epochs": 3, "model_options": {"widths": [4, 8, 16]}}'
    )  # JSON by content
    got = [load_config(tmp_path / n) for n in ("a.yaml", "a.yml", "a.toml", "a.conf")]
    assert all(g == got[0] for g in got) and got[0].epochs == 3


def test_yaml_yes_and_no_are_words_not_booleans(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "a.yaml"
    path.write_text("in_memory: no\namp: yes\ntta_flip: false\n")
    cfg = load_config(path)
    assert (cfg.in_memory, cfg.amp, cfg.tta_flip) == ("no", "yes", False)


def test_yaml_without_pyyaml_is_one_line(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_yaml(name, *args, **kwargs):
        if name == "yaml":
            raise ModuleNotFoundError("No module named 'yaml'", name="yaml")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yaml)
    (tmp_path / "a.yaml").write_text("epochs: 3\n")
    with pytest.raises(UserError, match="pip install pyyaml"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "name, text, fragments",
    [
        ("a.json", '{"epochs": 3, "epoch": 4}', ["unknown setting 'epoch'", "did you mean 'epochs'"]),
        ("a.json", '{"epochs": "3"}', ["epochs: expected int, got '3'"]),
        ("a.toml", "lr = -1.0\n", ["lr must be positive, got -1"]),
        ("a.toml", "lr = \n", ["not valid TOML"]),
        ("a.json", '{"lr": 0.1,}', ["not valid JSON"]),
        ("a.json", "[1, 2]", ["expected a mapping of settings, got list"]),
        ("a.ini", "lr=1", ["unknown format"]),
        ("a.json", '{"recipe": "nope"}', ["recipe: unknown 'nope'"]),
        ("a.json", '{"optimizer": "lion"}', ["optimizer: expected one of sgd, nesterov, adamw"]),
    ],
)
def test_bad_files_are_one_line_naming_the_file_and_the_key(tmp_path, name, text, fragments):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_config(path)
    message = str(e.value)
    assert message.startswith(f"--config {path}: ") and "\n" not in message, message
    for f in fragments:
        assert f in message, message


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match="cannot read it"):
        load_config(tmp_path / "none.json")


def test_a_runs_record_is_a_settings_file_without_its_folder(tmp_path):
    cfg = get_recipe("best").with_overrides(epochs=2, out=str(tmp_path / "old"))
    record = {**cfg.to_dict(), **{k: {"any": 1} for k in RECORD_KEYS}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(record))
    got = load_config(path)
    assert got.out is None and replace(got, out=cfg.out) == cfg  # every setting but the folder
    assert load_config(path, out="new").out == "new"
    # a study's run: its recipe is no recipe, but the record gives every setting
    path.write_text(json.dumps({**record, "recipe": "study"}))
    assert load_config(path).recipe == "study" and load_config(path).epochs == 2
    # a plain file keeps its out, and an unknown key that is not a record key is refused
    path.write_text(json.dumps({"out": "mine"}))
    assert load_config(path).out == "mine"
    path.write_text(json.dumps({**record, "history": []}))
    with pytest.raises(UserError, match="unknown setting 'history'"):
        load_config(path)
