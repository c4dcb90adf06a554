"""How to feed a model and what its outputs mean: :class:`PretrainedCfg`, the one typed config every resdense
model carries as ``model.pretrained_cfg`` (and ``default_cfg``, the same object), shaped as timm's: a read-only
mapping with timm's keys, so ``timm.data.resolve_model_data_config(model)`` reads it as it reads timm's own.
The architecture fills it for a fresh model; the weights (``models.pretrained``, ``models.hf_hub``) once loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields, replace

from ..modelfile import ModelSpec
from ..preprocess import (
    CIFAR_MEAN,
    CIFAR_STD,
    DEFAULT_INTERPOLATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    check_interpolation,
    crop_mode_for,
    crop_pct_for,
)

__all__ = [
    "CIFAR_CFG",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelConfig",
    "PretrainedCfg",
]

# timm's pretrained_cfg keys, in timm's order, that every config answers (test ones only where known)
TIMM_KEYS = (
    "input_size",
    "interpolation",
    "crop_pct",
    "crop_mode",
    "mean",
    "std",
    "num_classes",
    "first_conv",
    "classifier",
    "label_names",
)
TEST_KEYS = ("test_input_size", "test_crop_pct", "test_resize")
# the keys answered by a property rather than a field
DERIVED = ("crop_pct", "crop_mode", "label_names", "test_crop_pct")


@dataclass(frozen=True)
class PretrainedCfg(Mapping):
    """How to feed a model and what its outputs mean (timm's ``PretrainedCfg``, typed).

    ``input_size`` is what the network is fed, (C, H, W): the centre crop when ``resize`` is set (the side the
    image is resized to first: its shorter side for ``fit="shorter"``, the whole square for ``"squash"``),
    resampled by ``interpolation``. ``test_input_size`` (and ``test_resize``), where the weights give one, is
    the size they are evaluated and served at (timm's train-test resolution discrepancy: larger than the
    training size); training keeps ``input_size``. ``source`` names the weights (None: a fresh model, the
    architecture's defaults); ``known_input`` says whether the mean, std and sizes are the weights' own
    (resdense's files, torchvision's table) or, for a plain state dict that does not say, the architecture's.
    ``first_conv`` and ``classifier`` name the input convolution and the classifier modules (timm's names).

    It is also a read-only mapping, as timm's configs are dicts: ``cfg["mean"]``, ``"mean" in cfg``,
    ``dict(cfg)``, ``{**cfg}``, ``cfg.copy()`` (a plain dict) give timm's keys (:data:`TIMM_KEYS`, the test
    ones where known), then resdense's own fields, then the source's other facts (``meta``: ``"recipe"``,
    ``"imagenet_top1"``, ...). So ``timm.data.resolve_model_data_config(model)`` reads it as it reads timm's.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    first_conv: str | None = None
    classifier: str | None = None
    resize: int | None = None
    fit: str = "squash"
    classes: tuple[str, ...] = ()  # the outputs' names, when the weights know them
    tta_flip: bool = False  # the weights were scored averaging each image with its mirror image
    source: str | None = None
    known_input: bool = False
    model: str | None = None  # the architecture the weights are for
    options: dict = field(default_factory=dict)  # the builder options they came with (widths, ...)
    meta: dict = field(default_factory=dict)  # what else the source says: tag, accuracy, recipe, URL
    interpolation: str = DEFAULT_INTERPOLATION
    test_input_size: tuple[int, int, int] | None = None
    test_resize: int | None = None  # as resize, for test_input_size

    def __post_init__(self) -> None:
        check_interpolation(self.interpolation)

    @property
    def preprocess(self) -> Preprocess:
        """The :class:`~resdense.preprocess.Preprocess` that feeds this model for evaluation and serving: at
        ``test_input_size`` where the weights give one."""
        c = self.input_size[0]
        side, resize = self.input_size[-1], self.resize
        if self.test_input_size is not None:
            side, resize = self.test_input_size[-1], self.test_resize
        if resize:
            return Preprocess(resize, self.mean, self.std, c, side, self.fit, self.interpolation)
        return Preprocess(side, self.mean, self.std, c, None, self.fit, self.interpolation)

    @property
    def crop_pct(self) -> float:
        return crop_pct_for(self.input_size[-1], self.resize) if self.resize else 1.0

    @property
    def test_crop_pct(self) -> float | None:
        if self.test_input_size is None:
            return None
        return crop_pct_for(self.test_input_size[-1], self.test_resize) if self.test_resize else 1.0

    @property
    def crop_mode(self) -> str:
        """timm's name for ``fit``: ``"center"`` (the shorter side) or ``"squash"``."""
        return crop_mode_for(self.fit)

    @property
    def label_names(self) -> tuple[str, ...] | None:
        return self.classes or None

    @classmethod
    def from_preprocess(cls, pre: Preprocess, *, default_side: int = 224, **more) -> PretrainedCfg:
        side = pre.input_size or default_side
        own = {
            "input_size": (pre.in_chans, side, side),
            "mean": tuple(pre.mean),
            "std": tuple(pre.std),
            "resize": pre.resize if pre.crop else None,
            "fit": pre.fit,
            "interpolation": pre.interpolation,
        }
        return cls(**{**own, **more})

    @classmethod
    def from_spec(cls, spec: ModelSpec, source: str, meta: dict | None = None) -> PretrainedCfg:
        """What a resdense model file says about its weights."""
        opts = spec.options
        n = int(opts.get("num_classes", len(spec.classes)))
        return cls.from_preprocess(
            spec.preprocess,
            num_classes=n,
            classes=tuple(spec.classes),
            tta_flip=spec.tta_flip,
            source=source,
            known_input=True,
            model=spec.model,
            options={k: v for k, v in opts.items() if k not in ("num_classes", "in_chans")},
            meta=dict(meta or {}),
        )

    def for_channels(self, in_chans: int) -> PretrainedCfg:
        """The same config for ``in_chans`` input channels (means/stds averaged when they no longer fit)."""
        if in_chans == self.input_size[0] and len(self.mean) == in_chans:
            return self
        pre = self.preprocess.for_channels(in_chans)
        test = None if self.test_input_size is None else (in_chans, *self.test_input_size[1:])
        return replace(
            self,
            input_size=(in_chans, *self.input_size[1:]),
            mean=pre.mean,
            std=pre.std,
            test_input_size=test,
        )

    def for_classes(self, num_classes: int) -> PretrainedCfg:
        """After a new classifier: the class names go unless there are as many of them."""
        keep = self.classes if len(self.classes) == num_classes else ()
        return replace(self, num_classes=num_classes, classes=keep)

    def spec(self, model: str, in_chans: int | None = None) -> ModelSpec:
        """The :class:`~resdense.modelfile.ModelSpec` a model with this config is saved and served under (its
        preprocessing: :attr:`preprocess`, at the test size where there is one)."""
        c = in_chans or self.input_size[0]
        classes = list(self.classes) or [str(i) for i in range(self.num_classes)]
        options = {**self.options, "num_classes": self.num_classes, "in_chans": c}
        return ModelSpec(model, options, self.preprocess, classes, self.tta_flip)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(crop_pct=self.crop_pct, crop_mode=self.crop_mode, test_crop_pct=self.test_crop_pct)
        return d

    # -- the read-only mapping (timm's configs are dicts) ------------------------------------------------------

    def _keys(self) -> tuple[str, ...]:
        test = TEST_KEYS if self.test_input_size is not None else ()
        own = tuple(f.name for f in fields(self) if f.name not in TIMM_KEYS and f.name not in TEST_KEYS)
        seen = {*TIMM_KEYS, *test, *own}
        return TIMM_KEYS + test + own + tuple(k for k in self.meta if k not in seen)

    def __getitem__(self, key):
        """``cfg["mean"]``, as timm's dict-shaped configs are read; the source's other facts (``"recipe"``,
        ``"imagenet_top1"``, ...) by their names too."""
        if not isinstance(key, str) or key not in self._keys():
            raise KeyError(key)
        if key in DERIVED or key in self.__dataclass_fields__:
            return getattr(self, key)
        return self.meta[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __contains__(self, key) -> bool:
        return isinstance(key, str) and key in self._keys()

    def copy(self) -> dict:
        """A plain, mutable dict of the same keys and values (what ``dict.copy`` gives a timm user); its nested
        dicts (``options``, ``meta``) are copies too, so editing it never reaches the model's config."""
        return deepcopy(dict(self))


ModelConfig = PretrainedCfg  # the name of earlier releases
"""The name :class:`PretrainedCfg` had in earlier releases (the same class)."""

# the papers' nets for 32x32 images (the CIFAR ResNets and plain nets, the pre-activation ResNet-18, ResNet-9,
# DenseNet-BC): CIFAR-10's input, mean and std, and ten classes
CIFAR_CFG = PretrainedCfg(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD, num_classes=10)
