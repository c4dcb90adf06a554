"""The contract every resdense model keeps, whatever its family.

Like timm's models, each network splits into a body (``forward_features``: image -> feature map) and a head
(``forward_head``: feature map -> logits), can swap its classifier (``reset_classifier``), lists its feature
points (``feature_info``, ``forward_intermediates``) and carries a :class:`~.pretrained_cfg.PretrainedCfg`
that says how to feed it and what its outputs mean: the architecture's defaults for a fresh model, the
weights' own once weights are loaded. ``model.pretrained_cfg`` and ``model.default_cfg`` are the same object
(timm's contract), so a model fed by its ``default_cfg`` is fed as its weights were. Training, inspection,
serving and export rely on these alone.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .pretrained_cfg import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, ModelConfig, PretrainedCfg

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FeatureInfo",
    "FeatureListNet",
    "GlobalPool",
    "ModelConfig",
    "ModelContract",
    "PretrainedCfg",
    "Stage",
    "first_conv",
    "new_classifier",
    "take_indices",
]


POOL_TYPES = ("avg", "max", "")


class GlobalPool(nn.Module):
    """The head's global pooling, by timm's names: ``"avg"``, ``"max"`` (then flattened to (N, C)), or ``""``:
    none, the feature map goes on as it is (a head of ``reset_classifier(0, "")`` returns the map)."""

    def __init__(self, pool_type: str = "avg"):
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"global_pool must be 'avg', 'max' or '' (none), got {pool_type!r}")
        self.pool_type = pool_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "avg":
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.pool_type == "max":
            return torch.flatten(F.adaptive_max_pool2d(x, 1), 1)
        return x

    def extra_repr(self) -> str:
        return repr(self.pool_type)


@dataclass
class Stage:
    """What runs from one feature point to the next: ``layers``, in order; the output of the last is the point
    named ``module`` (timm's ``feature_info`` name). The first ``lead`` layers (a DenseNet's stem pool and
    transitions) belong with the stage before: they are frozen with it (``stage_groups``). ``after``: what
    follows the point within this stage (a ResNet stem's max pool: timm runs it even when stopping early
    there, and drops it when pruning there)."""

    module: str
    layers: list[nn.Module]
    num_chs: int
    reduction: int
    lead: int = 0
    after: list[nn.Module] = field(default_factory=list)  # run after the point, before the next stage


def take_indices(num: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: None -> every point, an int n -> the last n points, a sequence -> those
    positions (negative ones from the end); returns them and the largest. ValueError out of range."""
    if indices is None:
        indices = num
    if isinstance(indices, int):
        if not 0 < indices <= num:
            raise ValueError(f"indices={indices}: the last n points, n from 1 to {num}")
        take = list(range(num - indices, num))
    else:
        take = []
        for i in indices:
            idx = num + i if i < 0 else i
            if not 0 <= idx < num:
                raise ValueError(
                    f"feature index {i} is out of range: the model has {num} points (0 to {num - 1})"
                )
            take.append(idx)
        if not take:
            raise ValueError("indices: an empty list takes no point")
    return take, max(take)


class ModelContract:
    """Mixin giving a resdense model timm's model methods, in terms of what each family says of itself.

    A family gives ``forward_head``, ``get_classifier``/``_set_classifier`` and ``stages()``: the list of
    :class:`Stage` from the input to the last feature point (the stem, then each stage), and ``final_layers``,
    what ``forward_features`` applies after the last point (a pre-activation net's last batch norm and ReLU). From these alone come ``forward_features``, ``forward_intermediates``,
    ``prune_intermediate_layers``, ``feature_info``, ``feature_stages``, ``stage_groups`` (what ``--freeze
    stages:N`` freezes), ``set_grad_checkpointing``, ``reset_classifier`` and ``num_classes``.
    """

    pretrained_cfg: PretrainedCfg
    grad_checkpointing: bool = False

    @property
    def default_cfg(self) -> PretrainedCfg:
        """How to feed this model: the same object as ``pretrained_cfg`` (timm's contract)."""
        return self.pretrained_cfg

    def stages(self) -> list[Stage]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_classifier(self, head: nn.Module) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def final_layers(self) -> list[nn.Module]:
        """What ``forward_features`` applies after the last point: the final norm (and its activation) of a
        pre-activation net, nothing for most."""
        return []

    def _set_global_pool(self, pool: GlobalPool) -> None:
        self.global_pool = pool

    # --- the feature points ---------------------------------------------------------------------------------

    @property
    def feature_info(self) -> list[dict]:
        """One dict per feature point, input side first: ``num_chs``, ``reduction`` (the input's side over
        the map's) and ``module`` (the module whose output it is), as timm's ``feature_info``."""
        return [
            dict(num_chs=s.num_chs, reduction=s.reduction, module=s.module, index=i)
            for i, s in enumerate(self.stages())
        ]

    def feature_stages(self) -> list[str]:
        """The feature points' module names, input side first: what ``forward_intermediates`` indexes, what
        ``resdense inspect --image`` draws one row of each, what ``--layer`` offers first."""
        return [s.module for s in self.stages()]

    def stage_groups(self) -> list[list[nn.Module]]:
        """The body as [stem, stage 1, stage 2, ...], lists of modules (what ``--freeze stages:N`` freezes):
        each point's layers, less the leading ones (a pool, a transition), which go with the stage before."""
        groups: list[list[nn.Module]] = []
        for s in self.stages():
            if groups:
                groups[-1] += [m for m in s.layers[: s.lead] if isinstance(m, nn.Module)]
            groups.append([m for m in [*s.layers[s.lead :], *s.after] if isinstance(m, nn.Module)])
        return groups

    def cam_layer(self) -> str:
        """The module a class-activation map (``resdense explain``) looks at unless told otherwise: the last
        stage, the last map that still has a layout and already tells the classes apart."""
        return self.feature_stages()[-1]

    def _run_stage(self, i: int, stage: Stage, x: torch.Tensor) -> torch.Tensor:
        """The stage's point (its ``after`` layers not yet run)."""
        if self.grad_checkpointing and i > 0 and torch.is_grad_enabled() and getattr(self, "training", False):
            # activations inside the stage are recomputed in the backward pass instead of kept (timm's
            # checkpoint_seq); the stem is left alone, as timm does. The recomputation must not move the
            # batch norms' running statistics a second time.
            replay = functools.partial(_bn_stats_kept, stage.layers)
            return checkpoint(
                _run_layers,
                stage.layers,
                x,
                use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), replay()),
            )
        return _run_layers(stage.layers, x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i, stage in enumerate(self.stages()):
            x = _run_layers(stage.after, self._run_stage(i, stage, x))
        return _run_layers(self.final_layers(), x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """timm's ``forward_intermediates``: ``(final_features, [the outputs at the points indices
        takes])``, or the list alone with ``intermediates_only``. ``indices``: None every point, an int n the
        last n, a sequence those positions (negative from the end) of :meth:`feature_stages`. ``stop_early``
        stops after the last point taken (``final_features`` is then that point's map); ``norm`` applies the
        final norm (``final_layers()``, where the family has one) to the last point; only ``"NCHW"`` output."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: resdense's models give 'NCHW' maps only")
        stages = self.stages()
        take, last = take_indices(len(stages), indices)
        run = stages[: last + 1] if stop_early else stages
        out: dict[int, torch.Tensor] = {}
        for i, stage in enumerate(run):
            point = self._run_stage(i, stage, x)
            if i in take:
                out[i] = _run_layers(self.final_layers(), point) if norm and i == len(stages) - 1 else point
            x = _run_layers(stage.after, point)
        intermediates = [out[i] for i in take]
        if intermediates_only:
            return intermediates
        return (_run_layers(self.final_layers(), x) if len(run) == len(stages) else x), intermediates

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's ``prune_intermediate_layers``: the layers after the last point ``indices`` takes are
        dropped (replaced by identities; their weights leave the state dict), the final norm with them (or
        with ``prune_norm``), the head reset to none when ``prune_head`` or when the last point is gone (the
        classifier no longer fits); returns the points kept."""
        stages = self.stages()
        take, last = take_indices(len(stages), indices)
        prune_end = last < len(stages) - 1
        cut = [*stages[last].after] if prune_end else []
        for stage in stages[last + 1 :]:
            cut += [*stage.layers, *stage.after]
        for layer in cut:
            if isinstance(layer, nn.Module):
                self._replace(layer, nn.Identity())
        if prune_end or prune_norm:
            for layer in self.final_layers():
                self._replace(layer, nn.Identity())
        if prune_head or prune_end:
            self._set_global_pool(GlobalPool(""))
            self._set_classifier(new_classifier(stages[last].num_chs, 0))
            self.pretrained_cfg = self.pretrained_cfg.for_classes(0)
        return take

    def _replace(self, old: nn.Module, new: nn.Module) -> None:
        for parent in self.modules():
            for name, child in parent.named_children():
                if child is old:
                    setattr(parent, name, new)
                    return

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass instead of keeping them (training only;
        the outputs are the same): timm's ``set_grad_checkpointing``."""
        self.grad_checkpointing = enable

    # --- the head --------------------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """The classifier's outputs (0: a feature extractor)."""
        return getattr(self.get_classifier(), "out_features", 0)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier for ``num_classes`` outputs (0: a feature extractor); ``global_pool``
        (``"avg"``, ``"max"``, ``""`` for none; None keeps the current one) as timm's. The config follows."""
        if global_pool is not None:
            if global_pool == "" and num_classes:  # a linear layer needs a vector per image (timm's rule too)
                raise ValueError("global_pool='' (no pooling) goes with num_classes=0 only")
            self._set_global_pool(GlobalPool(global_pool))
        self._set_classifier(new_classifier(self.num_features, num_classes))
        self.pretrained_cfg = self.pretrained_cfg.for_classes(num_classes)

    def init_cfg(
        self,
        cfg: PretrainedCfg | None,
        in_chans: int,
        num_classes: int,
        *,
        first_conv: str | None = None,
        classifier: str | None = None,
    ) -> None:
        """The architecture's config for the channels and classes this instance was built with, naming its
        first convolution and its classifier modules (timm's ``first_conv``, ``classifier``; None: as ``cfg``
        says)."""
        base = cfg or PretrainedCfg()
        cfg = replace(
            base, first_conv=first_conv or base.first_conv, classifier=classifier or base.classifier
        )
        self.pretrained_cfg = cfg.for_channels(in_chans).for_classes(num_classes)

    @property
    def num_features(self) -> int:
        return self.get_classifier().in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@contextlib.contextmanager
def _bn_stats_kept(layers: list):
    """Batch norms inside ``layers`` with their running statistics and step count as they were on exit:
    momentum 0 while replaying (the batch's own statistics still normalise, as in the first pass)."""
    norms = [
        m
        for layer in layers
        if isinstance(layer, nn.Module)
        for m in layer.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    saved = [
        (m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
        for m in norms
    ]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, steps in saved:
            m.momentum = momentum
            if steps is not None:
                m.num_batches_tracked.copy_(steps)


def _run_layers(layers: list, x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


class FeatureInfo:
    """The points a feature extractor returns (timm's ``FeatureInfo``): ``channels()``, ``reduction()``,
    ``module_name()``, each a list in ``out_indices`` order (or one value for ``idx``).

    ``info``: one dict per feature point (``num_chs``, ``reduction``, ``module``); ``out_indices``: the
    points kept.
    """

    def __init__(self, info: list[dict], out_indices: Sequence[int]):
        self.info = [dict(d) for d in info]
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: int | None = None):
        if idx is not None:
            return self.info[idx][key]
        return [self.info[i][key] for i in self.out_indices]

    def channels(self, idx: int | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | None = None):
        return self.get("module", idx)

    def __getitem__(self, i: int) -> dict:
        return self.info[i]

    def __len__(self) -> int:
        return len(self.info)


class FeatureListNet(nn.Module):
    """A model cut after its last wanted point, whose forward returns the list of maps at ``out_indices``
    (``create_model(..., features_only=True)``, as timm's ``FeatureListNet``)."""

    def __init__(self, model: ModelContract, out_indices: Sequence[int] | int | None = None):
        super().__init__()
        n = len(model.stages())
        take, _ = take_indices(n, tuple(range(n)) if out_indices is None else out_indices)
        info = model.feature_info
        model.prune_intermediate_layers(take, prune_norm=take[-1] != n - 1, prune_head=True)
        self.model = model
        self.out_indices = tuple(take)
        self.feature_info = FeatureInfo(info, take)
        self.pretrained_cfg = model.pretrained_cfg

    @property
    def default_cfg(self) -> PretrainedCfg:
        return self.pretrained_cfg

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(
            x, list(self.out_indices), stop_early=True, intermediates_only=True
        )


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The model's first convolution and its name: the one its ``pretrained_cfg`` names (``first_conv``, as
    timm's), or for a model whose cfg does not say, the first ``nn.Conv2d`` it holds."""
    cfg = getattr(model, "pretrained_cfg", None)
    name = getattr(cfg, "first_conv", None)
    modules = dict(model.named_modules())
    if name and isinstance(modules.get(name), nn.Conv2d):
        return name, modules[name]
    for n, m in modules.items():
        if isinstance(m, nn.Conv2d):
            return n, m
    raise ValueError(f"{type(model).__name__} has no convolution")


def new_classifier(in_features: int, num_classes: int) -> nn.Module:
    """A linear classifier, or an identity when ``num_classes == 0`` (feature extractor, as in timm)."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if num_classes == 0:
        head = nn.Identity()
        head.in_features = in_features  # keeps num_features answerable
        return head
    return nn.Linear(in_features, num_classes)
