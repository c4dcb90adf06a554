"""train/settings.py on its own: a declaration's words, its checks and the file formats, on a toy dataclass
(nothing here knows TrainConfig)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from resdense.errors import UserError
from resdense.train.settings import (
    Setting,
    bounds_text,
    check_field,
    check_fields,
    kinds,
    read_mapping,
    setting,
    settings_from_mapping,
    spell_canonically,
)


@dataclass(frozen=True)
class Toy:
    size: int | None = setting(None, "a side", ge=8, le=64, unit="pixels")
    rate: float = setting(0.5, "a rate", gt=0, le=1)
    mode: str = setting("a", "a mode", choices=("a", "b"), key=str.lower)
    flag: bool = setting(False, "a switch")
    extra: dict = setting({}, "options")


@pytest.mark.parametrize(
    "declared, words",
    [
        (Setting("", gt=0), "positive"),
        (Setting("", ge=0), ">= 0"),
        (Setting("", gt=1), "> 1"),
        (Setting("", le=3), "<= 3"),
        (Setting("", ge=0, lt=1), "in [0, 1)"),
        (Setting("", gt=0, le=1), "in (0, 1]"),
        (Setting("", ge=8, le=64, unit="pixels"), "between 8 and 64 pixels"),
        (Setting("", ge=8, off=0, unit="pixels"), "0 (off) or >= 8 pixels"),
        (Setting(""), ""),
    ],
)
def test_bounds_in_words(declared, words):
    assert bounds_text(declared) == words


def test_checks_follow_the_declaration():
    assert kinds(Toy, "size") == (int, type(None)) and kinds(Toy, "extra") == (dict,)
    check_fields(Toy())
    check_fields(Toy(size=8, rate=1, mode="B", flag=True, extra={"x": 1}))  # an int for a float; B is b
    for name, value, message in [
        ("size", 65, "--size must be between 8 and 64 pixels, got 65"),
        ("size", 8.0, "--size: expected int or None, got 8.0"),
        ("rate", 0, "--rate must be in (0, 1], got 0"),
        ("rate", float("inf"), "--rate must be a finite number, got inf"),
        ("mode", "c", "--mode: expected one of a, b, got 'c'"),
        ("flag", 1, "--flag: expected bool, got 1"),
        ("extra", [], "--extra: expected dict, got []"),
    ]:
        with pytest.raises(UserError) as e:
            check_field(Toy, name, value)
        assert str(e.value) == message
    with pytest.raises(UserError, match=r"^f.toml: rate must be in \(0, 1\], got -1"):
        check_field(Toy, "rate", -1.0, label="f.toml: rate")


def test_mappings_from_files(tmp_path):
    (tmp_path / "a.toml").write_text('size = "none"\nrate = 1\n')
    got = settings_from_mapping(Toy, read_mapping(tmp_path / "a.toml"), "where", ignore=("note",))
    assert got == {"size": None, "rate": 1}
    with pytest.raises(UserError, match="^where: unknown setting 'sizes' \\(did you mean 'size'\\?\\)$"):
        settings_from_mapping(Toy, {"sizes": 8}, "where")
    assert settings_from_mapping(Toy, {"note": "read past"}, "where", ignore=("note",)) == {}
    # JSON by its first character whatever the name; otherwise by the suffix
    (tmp_path / "settings").write_text(' {"rate": 0.25}')
    assert read_mapping(tmp_path / "settings") == {"rate": 0.25}
    (tmp_path / "plain").write_text("rate = 0.25")
    with pytest.raises(UserError, match="unknown format"):
        read_mapping(tmp_path / "plain")


def test_a_keyed_setting_is_held_in_its_one_spelling() -> None:
    @dataclass(frozen=True)
    class Spelled(Toy):
        def __post_init__(self) -> None:
            spell_canonically(self)

    assert Spelled(mode="B").mode == "b"
    assert Spelled(mode=3).mode == 3  # not a string: left for the type check to refuse
    check_field(Toy, "mode", "B")  # the check accepts what the key maps into the choices


def test_train_settings_hold_the_data_sets_one_spelling(tmp_path) -> None:
    # a settings file may spell the data set as `dataset_key` reads it; the run then compares "folder"
    from resdense.train.config import TrainConfig
    from resdense.train.recipes import resolve_settings

    assert TrainConfig(dataset="Fashion_MNIST").dataset == "fashion-mnist"
    f = tmp_path / "s.json"
    f.write_text('{"dataset": "Folder", "data_dir": "photos"}')
    assert resolve_settings(None, f).dataset == "folder"
