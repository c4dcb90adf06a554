"""Weights from the Hugging Face Hub: ``hf-hub:ORG/NAME`` (``hf-hub:ORG/NAME@REVISION``), as timm spells it.

Files are fetched by ``huggingface_hub`` (the ``hub`` extra) into its own cache (``$HF_HUB_CACHE``, default
``~/.cache/huggingface/hub``: ``models--ORG--NAME/snapshots/REV/...``), so a file timm or any other tool
already fetched is used as it is; ``HF_HUB_OFFLINE=1`` reads the cache only. A repository holds either

* a resdense model file (``model.safetensors`` carrying its spec, as ``resdense train`` writes it), read as
  every other resdense file; or
* timm's weights (``model.safetensors`` or ``pytorch_model.bin``) with timm's ``config.json``: its
  ``architecture`` names the model (timm's ResNets and DenseNets use the same key names as ours) and its
  ``pretrained_cfg`` (mean, std, input size, crop_pct, crop_mode, interpolation, test_input_size) and
  ``label_names`` fill the same typed :class:`~resdense.models._contract.PretrainedCfg` as torchvision's
  table does.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from ..modelfile import MAX_CHANNELS, MAX_CLASSES, MAX_SIDE
from ..preprocess import CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, check_interpolation, fit_for, scale_size
from ..rundir import RunDir
from .hub import PretrainedError, imagenet_classes
from .pretrained_cfg import PretrainedCfg
from .registry import is_model

__all__ = ["HF_PREFIX", "hf_cache_dir", "hf_source", "load_from_hub"]

HF_PREFIX = "hf-hub:"
# a Hub repository's file names (timm's, transformers'); the first and the config are spelled as a run
# folder's files are, so they are taken from RunDir, the one place that spells those
WEIGHT_FILES = (RunDir.WEIGHTS, "pytorch_model.bin")
CONFIG_FILE = RunDir.CONFIG
# the Hub's rule for repository ids: ORG/NAME, letters, digits, '-', '_', '.'
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def hf_source(src: str | os.PathLike) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` for ``hf-hub:ORG/NAME[@REV]``, None for other sources; a one-line
    :class:`PretrainedError` for an ``hf-hub:`` name that is not a repository id."""
    text = os.fspath(src).strip()
    if not text.lower().startswith(HF_PREFIX):
        return None
    repo, sep, rev = text[len(HF_PREFIX) :].partition("@")
    if not _REPO.match(repo) or ".." in repo or (sep and not rev):
        raise PretrainedError(
            f"{text}: not a Hugging Face Hub repository; expected hf-hub:ORG/NAME (e.g. "
            "hf-hub:timm/resnet50.a1_in1k), optionally @REVISION"
        )
    return repo, rev or None


def hf_cache_dir() -> Path:
    """huggingface_hub's cache folder, read from the environment now (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "huggingface" / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class _Missing(Exception):
    """A file the repository (or, offline, the cache) does not have."""


def _download(repo: str, rev: str | None, filename: str, label: str) -> Path:
    try:
        import huggingface_hub as hf
        from huggingface_hub import errors
    except ImportError:
        raise PretrainedError(
            f"{label}: weights from the Hugging Face Hub need huggingface_hub: pip install 'resdense[hub]'"
        ) from None
    try:
        path = hf.hf_hub_download(
            repo, filename, revision=rev, cache_dir=hf_cache_dir(), local_files_only=_offline()
        )
    except errors.RepositoryNotFoundError:  # also gated/private repos without a token
        raise PretrainedError(
            f"{label}: no such model repository on the Hugging Face Hub (or it is private "
            "and no token is set)"
        ) from None
    except errors.RevisionNotFoundError:
        raise PretrainedError(f"{label}: the repository has no revision {rev!r}") from None
    except (errors.EntryNotFoundError, errors.LocalEntryNotFoundError) as e:
        raise _Missing(filename) from e
    except (errors.HfHubHTTPError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PretrainedError(f"{label}: cannot fetch {filename} ({first})") from None
    return Path(path)


def _missing(label: str, what: str) -> PretrainedError:
    cache = hf_cache_dir()
    if _offline():
        return PretrainedError(
            f"{label}: {what} not in the cache folder {cache} and HF_HUB_OFFLINE is set "
            "(fetch it once online, or unset HF_HUB_OFFLINE)"
        )
    return PretrainedError(f"{label}: the repository has no {what} (nor in the cache folder {cache})")


def load_from_hub(src: str, model: str | None = None, *, progress: bool = True, read):
    """The weights of an ``hf-hub:`` source as a :class:`~resdense.models.pretrained.Pretrained`; ``read``
    reads a fetched weights file (``pretrained.read_weights_file``, passed in: the sources sit above the
    Hub's module, which imports none of them)."""
    repo, rev = hf_source(src)
    label = f"{HF_PREFIX}{repo}" + (f"@{rev}" if rev else "")
    weights = None
    for name in WEIGHT_FILES:
        try:
            weights = _download(repo, rev, name, label)
            break
        except _Missing:
            continue
    if weights is None:
        raise _missing(label, " or ".join(WEIGHT_FILES))
    pre = read(weights)
    pre.source = label
    if pre.cfg is not None:  # a resdense model file: it says everything itself
        pre.cfg = _relabel(pre.cfg, label, repo, rev)
        return pre
    try:
        config = json.loads(_download(repo, rev, CONFIG_FILE, label).read_text("utf-8"))
    except _Missing:
        if model is None:
            raise _missing(label, f"{CONFIG_FILE} (timm's: it names the architecture)") from None
        return pre  # a plain state dict: the architecture's defaults, as for a .pth file
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PretrainedError(f"{label}: {CONFIG_FILE} is not valid JSON ({e})") from None
    pre.cfg = timm_cfg(config, label, model, repo=repo, revision=rev)
    return pre


def _whole(value, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be a whole number in [{low}, {high}], got {value!r}")
    return value


def _size(value, field: str) -> tuple[int, int, int]:
    """(channels, height, width), each a whole number within a model file's bounds."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"{field} must be (channels, height, width), got {value!r}")
    c = _whole(value[0], f"{field}[0]", 1, MAX_CHANNELS)
    return c, _whole(value[1], f"{field}[1]", 1, MAX_SIDE), _whole(value[2], f"{field}[2]", 1, MAX_SIDE)


def _numbers(value, field: str, count: int, positive: bool = False) -> tuple[float, ...]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != count
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        or (positive and not all(v > 0 for v in value))
    ):
        kind = "positive finite numbers" if positive else "finite numbers"
        raise ValueError(f"{field} must be {count} {kind} (one per channel), got {value!r}")
    return tuple(float(v) for v in value)


def _fraction(value, field: str, default: float) -> float:
    """A crop share in (0, 1]; absent (None) means ``default``, but 0, NaN or a string are refused."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{field} must be a number in (0, 1], got {value!r}")
    return float(value)


def _name(value, field: str, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a name, got {value!r}")
    return value


def _read_fields(config: dict, pc: dict) -> tuple:
    """Every field of timm's config.json resdense reads, checked as a model file's spec is (types, bounds,
    finite numbers, a positive std): a ValueError naming the field otherwise."""
    c, h, w = _size(pc.get("input_size", (3, 224, 224)), "input_size")
    mean = _numbers(pc.get("mean", IMAGENET_MEAN[:c] if c == 3 else IMAGENET_MEAN[:1] * c), "mean", c)
    std = _numbers(pc.get("std", IMAGENET_STD[:c] if c == 3 else IMAGENET_STD[:1] * c), "std", c, True)
    crop_pct = _fraction(pc.get("crop_pct"), "crop_pct", CROP_PCT)
    n = _whole(config.get("num_classes", pc.get("num_classes", 1000)), "num_classes", 0, MAX_CLASSES)
    # timm's own default when a config names none (resolve_data_config)
    interpolation = check_interpolation(_name(pc.get("interpolation"), "interpolation", "bicubic"))
    fit = fit_for(_name(pc.get("crop_mode"), "crop_mode", "center"))
    test = pc.get("test_input_size")
    test_size = None if test is None else _size(test, "test_input_size")
    test_pct = _fraction(pc.get("test_crop_pct"), "test_crop_pct", crop_pct)
    names = config.get("label_names")
    if isinstance(names, dict):  # {"0": "tench", ...}
        if not all(isinstance(k, str) and k.isdigit() for k in names):
            raise ValueError("label_names must map class numbers to names")
        names = [names[k] for k in sorted(names, key=int)]
    if names is not None and not isinstance(names, list):
        raise ValueError(f"label_names must be a list of names, got {type(names).__name__}")
    if isinstance(names, list) and len(names) == n:
        classes = tuple(str(v) for v in names)
    else:
        classes = tuple(imagenet_classes()) if n == 1000 else ()
    return (c, h, w), mean, std, crop_pct, n, interpolation, fit, test_size, test_pct, classes


def _relabel(cfg: PretrainedCfg, label: str, repo: str, rev: str | None) -> PretrainedCfg:
    from dataclasses import replace

    return replace(cfg, source=label, meta={**cfg.meta, "hf_repo": repo, "revision": rev})


def timm_cfg(
    config: dict, label: str, model: str | None = None, *, repo: str = "", revision=None
) -> PretrainedCfg:
    """timm's ``config.json`` as a :class:`PretrainedCfg`: the architecture, mean/std, the input size, the
    evaluation resize (timm: the side to ``floor(size / crop_pct)``, then the centre crop) by its
    ``crop_mode`` and ``interpolation``, the test-time size where the weights have one (``test_input_size``,
    ``test_crop_pct``), the number of classes and their names (``label_names``; ImageNet's for 1,000 classes
    without names)."""
    if not isinstance(config, dict):
        raise PretrainedError(f"{label}: {CONFIG_FILE} is not a JSON object")
    try:
        arch = config.get("architecture") or model
        if not isinstance(arch, str):
            raise ValueError(f"architecture must be a model name, got {arch!r}")
        pc = config.get("pretrained_cfg") or {}
        if not isinstance(pc, dict):
            raise ValueError(f"pretrained_cfg must be an object, got {type(pc).__name__}")
        fields = _read_fields(config, pc)
    except (TypeError, ValueError) as e:
        raise PretrainedError(f"{label}: {CONFIG_FILE}: unreadable pretrained_cfg ({e})") from None
    if not is_model(arch):
        raise PretrainedError(
            f"{label}: timm architecture {arch!r} has no resdense counterpart (resdense reads "
            "timm's resnet*/resnext*/wide_resnet*/densenet* of torchvision's layout)"
        )
    (c, h, w), mean, std, crop_pct, n, interpolation, fit, test_size, test_pct, classes = fields
    meta = {"hf_repo": repo, "revision": revision, "timm_tag": pc.get("tag")}
    test_resize = None if test_size is None else scale_size(min(test_size[1:]), test_pct)
    return PretrainedCfg(
        input_size=(c, h, w),
        mean=mean,
        std=std,
        num_classes=n,
        resize=scale_size(min(h, w), crop_pct),
        fit=fit,
        interpolation=interpolation,
        classes=classes,
        source=label,
        known_input=True,
        model=arch,
        meta={k: v for k, v in meta.items() if v is not None},
        test_input_size=test_size,
        test_resize=test_resize,
    )
