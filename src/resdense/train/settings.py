"""A setting declared once, on its dataclass field: :func:`setting` puts the type (the annotation), the default,
the help, the choices, the bounds and the unit in one place, and the rest is derived from that declaration:
the per-field checks (:func:`check_field`, used by ``validate`` and by the studies), the command line's
options (``cli/train.py``) and the reading of a settings file (:func:`read_mapping`, :func:`settings_from_mapping`;
config.read_settings_file for TrainConfig).

Generic over the dataclass, so that a new field (or a subclass adding one) reaches all of them with no
other edit.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path

from ..errors import UserError

# the words that mean None for a numeric setting that may be None, in a file or on the command line
NONE_WORDS = ("none",)


@dataclass(frozen=True)
class Setting:
    """What a field's declaration says beyond its type and default."""

    help: str
    choices: tuple | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    unit: str | None = None  # "pixels", "images", "epochs", "steps": said in errors, shown as the metavar
    off: float | None = None  # a value outside the bounds that switches the setting off (0 for most)
    key: Callable | None = None  # maps a value before the choices are checked (a dataset's spelling)
    none_words: tuple[str, ...] = NONE_WORDS  # words meaning None where the type allows it
    metavar: str | None = None


def setting(default: typing.Any, help: str, **declaration: typing.Any) -> typing.Any:
    """A dataclass field with its whole declaration (see :class:`Setting` for the keywords). Typed ``Any``,
    as ``dataclasses.field`` is to type checkers, so that ``lr: float = setting(0.1, ...)`` checks."""
    meta = {"setting": Setting(help=help, **declaration)}
    if isinstance(default, (dict, list, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def declaration(f: Field) -> Setting:
    return f.metadata.get("setting") or Setting(help="")


def declared(cls, name: str) -> Setting:
    """The declaration of the field ``name`` of the dataclass ``cls``."""
    return declaration(next(f for f in fields(cls) if f.name == name))


def spell_canonically(obj) -> None:
    """Each string setting of the frozen dataclass ``obj`` whose declaration has a ``key`` spelled as the key
    spells it (``dataset="Folder"`` -> ``"folder"``): the settings hold one spelling, so code that compares a
    setting with a name needs no key of its own. Values of other types are left for the checks to judge."""
    for f in fields(obj):
        s = declaration(f)
        value = getattr(obj, f.name)
        if s.key is not None and isinstance(value, str) and s.key(value) != value:
            object.__setattr__(obj, f.name, s.key(value))


def option(name: str) -> str:
    """The command-line spelling of a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def default_of(f: Field):
    return f.default_factory() if f.default_factory is not MISSING else f.default


_KIND_NAMES = {type(None): "None"}


def kinds(cls, name: str) -> tuple[type, ...]:
    """The types a field's annotation allows: ``int | None`` -> ``(int, NoneType)``."""
    hint = _hints(cls)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(typing.get_origin(a) or a for a in typing.get_args(hint))
    return (typing.get_origin(hint) or hint,)


_HINTS: dict[type, dict] = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def kind_names(cls, name: str) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds(cls, name))


def _number(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def bounds_text(s: Setting) -> str:
    """The bounds in words: ``positive``, ``>= 0``, ``in [0, 1)``, ``between 8 and 4096 pixels``."""
    lo, hi = (s.ge if s.ge is not None else s.gt), (s.le if s.le is not None else s.lt)
    if lo is None and hi is None:
        return ""
    if hi is None:
        text = "positive" if s.gt == 0 else f"{'>=' if s.ge is not None else '>'} {_number(lo)}"
    elif lo is None:
        text = f"{'<=' if s.le is not None else '<'} {_number(hi)}"
    elif s.ge is not None and s.le is not None:
        text = f"between {_number(lo)} and {_number(hi)}"
    else:
        text = f"in {'[' if s.ge is not None else '('}{_number(lo)}, {_number(hi)}{']' if s.le is not None else ')'}"
    if s.unit:
        text += f" {s.unit}"
    return f"{_number(s.off)} (off) or {text}" if s.off is not None else text


def _in_bounds(s: Setting, v) -> bool:
    if s.off is not None and v == s.off:
        return True
    return not (
        (s.ge is not None and not v >= s.ge)
        or (s.gt is not None and not v > s.gt)
        or (s.le is not None and not v <= s.le)
        or (s.lt is not None and not v < s.lt)
    )


def check_type(cls, name: str, value, label: str | None = None) -> None:
    """The value of the type the annotation names (an int does for a float, a bool for nothing else), and
    finite when a number."""
    label = label or option(name)
    allowed = kinds(cls, name)
    if value is None and type(None) in allowed:
        return
    ok = tuple(float_or_int for k in allowed for float_or_int in ((int, float) if k is float else (k,)))
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, ok):
        raise UserError(f"{label}: expected {kind_names(cls, name)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{label} must be a finite number, got {value}")


def check_field(cls, name: str, value, label: str | None = None) -> None:
    """Everything one field's declaration says about a value: its type, finiteness, choices and bounds.
    ``label`` names it in the message (the option by default; a file's key when read from a file)."""
    label = label or option(name)
    check_type(cls, name, value, label)
    s = declared(cls, name)
    if value is None or isinstance(value, bool):
        return
    if s.choices is not None:
        key = s.key(value) if s.key else value
        if key not in s.choices:
            raise UserError(f"{label}: expected one of {', '.join(map(str, s.choices))}, got {value!r}")
    if isinstance(value, (int, float)) and not _in_bounds(s, value):
        raise UserError(f"{label} must be {bounds_text(s)}, got {_number(value)}")


def check_fields(obj, names: typing.Iterable[str] | None = None) -> None:
    """:func:`check_field` for every field of the dataclass instance ``obj`` (or the ``names`` given)."""
    cls = type(obj)
    for name in names if names is not None else [f.name for f in fields(cls)]:
        check_field(cls, name, getattr(obj, name))


# -- settings files -----------------------------------------------------------------------------------------


def _load_yaml(text: str):
    try:
        import yaml
    except ModuleNotFoundError:
        raise UserError("YAML needs PyYAML: pip install pyyaml (or give a .json or .toml file)") from None

    class Loader(yaml.SafeLoader):
        """YAML 1.2's booleans (true/false only): under 1.1's, ``in_memory: no`` would read as False and
        ``amp: yes`` as a bool that means fp32 on a CPU (utils.amp.amp_mode)."""

    bool_tag = "tag:yaml.org,2002:bool"
    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != bool_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return yaml.load(text, Loader=Loader)  # a SafeLoader: builds no objects


def _load_toml(text: str):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
        import tomli as tomllib
    return tomllib.loads(text)


# suffix -> (format name, parser); a file whose text starts with "{" is JSON whatever its name
FORMATS = {
    ".json": ("JSON", json.loads),
    ".toml": ("TOML", _load_toml),
    ".yaml": ("YAML", _load_yaml),
    ".yml": ("YAML", _load_yaml),
}


def read_mapping(path: str | Path) -> dict:
    """A JSON, TOML or YAML file's top-level mapping; errors are one line naming the file."""
    path = Path(path)
    where = f"--config {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{where}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    fmt = FORMATS[".json"] if text.lstrip().startswith("{") else FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{where}: unknown format; name it .json, .toml, .yaml or .yml")
    name, loads = fmt
    try:
        data = loads(text)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    except Exception as e:  # each parser has its own error class; each says where the text is wrong
        raise UserError(f"{where}: not valid {name}: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    return data


def settings_from_mapping(cls, data: Mapping, where: str, ignore: typing.Iterable[str] = ()) -> dict:
    """The settings in ``data`` for the dataclass ``cls``, each checked as its declaration says (keys in
    ``ignore`` are left out; any other unknown key is an error naming ``where`` and the key). A string in
    ``none_words`` stands for None where a numeric setting may be None (TOML has no null)."""
    names = [f.name for f in fields(cls)]
    out = {}
    for key, value in data.items():
        if key in ignore:
            continue
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{where}: unknown setting {key!r}{hint}")
        allowed = kinds(cls, key)
        s = declared(cls, key)
        nullable_number = type(None) in allowed and str not in allowed
        if nullable_number and isinstance(value, str) and value.lower() in s.none_words:
            value = None
        check_field(cls, key, value, label=f"{where}: {key}")
        out[key] = value
    return out
