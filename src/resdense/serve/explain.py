"""Where a model looked: class-activation maps (Grad-CAM and Grad-CAM++) over the image, for the predicted
class or a class the user names, at the layer the model family names (``model.cam_layer()``: the last stage
of a ResNet, the last dense block of a DenseNet, the book's ``b5`` or last ``DenseBlock``) or any other.

Written here with one forward hook rather than taken from a library (their requirements as published on
PyPI, December 2026): pytorch-grad-cam 1.5.7 needs torchvision, opencv, scikit-learn, scipy and ttach, none
of which the package itself needs; torchcam 0.5.0 needs torch >= 2.4.1 and captum 0.9.0 torch >= 2.3, where
resdense supports torch >= 2.1; and both methods are one forward pass, one backward pass and a weighted sum,
about 30 lines below, that a test checks against a model whose answer is known. None of the libraries knows
this project's model contract, which already names the right layer. The hook hands the rest of the network
a copy of the layer's output, so in-place operations downstream (``ReLU(inplace=True)``) leave the saved
activation and its gradient intact.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..preprocess import normalize
from .features import evaluating, stage_names, torch_model
from .inputs import as_images
from .load import as_predictor
from .predictor import Predictor

__all__ = [
    "METHODS",
    "Explanation",
    "class_activation_maps",
    "explain",
    "explain_fitted",
    "layer_candidates",
    "mistake_maps",
    "resolve_layer",
]

METHODS = ("gradcam", "gradcam++")


@dataclass
class Explanation:
    """One image's maps: ``cams[method]`` is (H, W) in [0, 1] over ``image`` (uint8 (C, H, W), the image as
    the network saw it: resized, cropped, inverted if it was)."""

    path: str | None
    image: torch.Tensor
    cams: dict[str, torch.Tensor]
    target: str  # the class explained
    target_probability: float
    predicted: str
    probability: float
    layer: str
    inverted: bool = False

    def peak(self, method: str = "gradcam") -> tuple[float, float]:
        """Where the map is highest, as (row, column) fractions of the image's height and width."""
        cam = self.cams[method]
        h, w = cam.shape
        i = int(cam.flatten().argmax())
        return ((i // w + 0.5) / h, (i % w + 0.5) / w)

    def to_json(self) -> dict:
        d = {
            "path": self.path,
            "predicted": self.predicted,
            "probability": self.probability,
            "class": self.target,
            "class_probability": self.target_probability,
            "layer": self.layer,
            "peak": {m: list(self.peak(m)) for m in self.cams},
        }
        if self.inverted:
            d["inverted"] = True
        return d


def layer_candidates(model: nn.Module) -> list[str]:
    """The layers worth naming: the model's stages and their direct children (its blocks)."""
    stages = stage_names(model)
    named = dict(model.named_modules())
    out = []
    for s in stages:
        out.append(s)
        out += [f"{s}.{c}" for c, _ in named[s].named_children()] if s in named else []
    return out


def resolve_layer(model: nn.Module, layer: str | None, what: str = "--layer") -> tuple[str, nn.Module]:
    """``layer`` (default: the model's own ``cam_layer()``) and its module; a one-line error listing the
    candidates when the model has no such layer."""
    if layer is None:
        layer = model.cam_layer() if hasattr(model, "cam_layer") else stage_names(model)[-1]
    module = dict(model.named_modules()).get(layer)
    if module is None or layer == "":
        cfg = getattr(model, "pretrained_cfg", None)
        name = getattr(cfg, "model", None) or type(model).__name__
        raise UserError(
            f"{what} {layer}: {name} has no such layer; try one of {', '.join(layer_candidates(model))}"
        )
    return layer, module


def class_activation_maps(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, module: nn.Module, name: str = "layer"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) of the normalised batch
    ``x`` for the classes ``target`` (None: each image's top class) at ``module``'s output (``name``: the
    module's name, for the errors).

    Returns the logits and {method: (N, H, W) maps}, upsampled to the input's size and scaled to [0, 1]
    per image (all zeros where nothing speaks for the class)."""
    saved = {}

    def keep(_mod, _inp, out):
        saved["a"] = out  # a module called twice (a shared ReLU) keeps its last call
        return out.clone()  # downstream in-place ops change the copy, not the saved activation

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad(), evaluating(model):
            logits = model(x.detach().requires_grad_(True))
            a = saved.get("a")
            if not isinstance(a, torch.Tensor) or a.dim() != 4:
                what = (
                    "nothing"
                    if a is None
                    else tuple(a.shape)
                    if isinstance(a, torch.Tensor)
                    else type(a).__name__
                )
                raise UserError(
                    f"--layer {name}: its output ({what}) is not a feature map (N, C, H, W); "
                    "name a convolutional stage or block"
                )
            if target is None:
                target = logits.argmax(1)
            score = logits.gather(1, target.view(-1, 1).to(logits.device)).sum()
            (grad,) = torch.autograd.grad(score, a, allow_unused=True)
    finally:
        handle.remove()
    if grad is None:
        raise UserError(f"--layer {name}: the class scores do not depend on its output")
    a, g = a.detach().float(), grad.float()
    cams = {"gradcam": (g.mean((2, 3), keepdim=True) * a).sum(1)}
    # Grad-CAM++ weighs each position by alpha = g^2 / (2 g^2 + sum(A) g^3) (the closed form for an
    # exponential of the score), then sums alpha * relu(g) over the positions.
    g2, g3 = g * g, g * g * g
    denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g3
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0.0)
    cams["gradcam++"] = ((alpha * F.relu(g)).sum((2, 3), keepdim=True) * a).sum(1)
    size = x.shape[-2:]
    for k, cam in cams.items():
        cam = F.interpolate(F.relu(cam)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(1).values.view(-1, 1, 1)
        cams[k] = torch.where(peak > 0, cam / peak.clamp(min=1e-12), torch.zeros_like(cam)).cpu()
    return logits.detach().float(), cams


def _class_index(predictor, name: str | None) -> int | None:
    if name is None:
        return None
    classes = predictor.spec.classes
    if name in classes:
        return classes.index(name)
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    raise UserError(f"--class {name!r}: the model has no such class ({len(classes)} classes: {shown})")


def explain_fitted(
    predictor, fitted: torch.Tensor, *, target: int | Sequence[int] | None = None, layer: str | None = None
) -> tuple[str, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Maps for uint8 images already at the input size: (layer, probabilities (with the predictor's
    test-time views, as ``predict`` reports them), the targets, {method: (N, H, W)})."""
    model = torch_model(predictor, "explanations")
    layer, module = resolve_layer(model, layer)
    pre = predictor.spec.preprocess
    x = normalize(fitted.to(predictor.device), pre.mean, pre.std)
    with evaluating(model):
        probs = predictor.predict_fitted(fitted).softmax(1)
        # the class asked for (one for all, or one each), else each image's top class as predict reports it
        t = (
            probs.argmax(1)
            if target is None
            else torch.as_tensor(target).view(-1).expand(len(fitted)).clone()
        )
        _, cams = class_activation_maps(model, x, t, module, layer)
    return layer, probs, t, cams


def explain(
    source: Predictor | nn.Module | str | Path,
    images: Any,  # what serve.inputs.as_images takes: paths, tensors, numpy arrays, PIL images, lists of them
    *,
    class_name: str | None = None,
    layer: str | None = None,
    out: str | Path | None = None,
    methods: Sequence[str] = METHODS,
    invert: str = "auto",
    arch: str | None = None,
    device: str = "cpu",
) -> list[Explanation]:
    """Where the model looked: one :class:`Explanation` per image: a file, or an image in memory as
    :func:`resdense.serve.inputs.as_images` takes it (a tensor, batches included, uint8 or float in [0, 1]; a
    numpy array; a PIL image).

    ``source``: a :class:`~resdense.serve.Predictor`, a resdense model (``create_model``), or any source
    ``load_predictor`` takes (run folder, model file, ``fashion-mnist``). ``class_name``: explain this class
    (default: each image's top class); ``layer``: the module to look at (default: ``model.cam_layer()``).
    ``out``: a folder to write the figure to (``explain.png``). In a notebook the figure is shown inline.
    Images are fed as ``predict`` feeds them (``invert`` as there).

    ``images``: the image files or tensors to explain; ``methods``: which maps to draw (``gradcam``,
    ``gradcam++``); ``arch``: the architecture, for torchvision weight names; ``device``: where to run.
    """
    from ..plots import explanation_figure, save_figure
    from ..rundir import RunDir
    from ..utils.notebook import show_figure
    from .predict import read_for

    predictor = as_predictor(source, arch=arch, device=device)
    for m in methods:
        if m not in METHODS:
            raise UserError(f"method {m!r}: expected one of {', '.join(METHODS)}")
    if not isinstance(images, (list, tuple)):
        images = [images]
    target = _class_index(predictor, class_name)
    items = []
    for im in images:
        if isinstance(im, (str, os.PathLike)):
            items.append((str(im), *read_for(predictor.spec, im, invert)))
        else:  # tensors (a batch gives one explanation an image), arrays, PIL images: converted as predict's
            in_chans = predictor.spec.preprocess.in_chans
            items += [(None, t, False) for t in as_images(im, in_chans)]
    fitted = torch.cat([predictor.fit_images(im) for _, im, _ in items]) if items else None
    if fitted is None:
        return []
    layer, probs, t, cams = explain_fitted(predictor, fitted, target=target, layer=layer)
    classes = predictor.spec.classes
    result = [
        Explanation(
            path,
            fitted[i].cpu(),
            {m: cams[m][i] for m in methods},
            classes[int(t[i])],
            float(probs[i, t[i]]),
            classes[int(probs[i].argmax())],
            float(probs[i].max()),
            layer,
            inv,
        )
        for i, (path, _, inv) in enumerate(items)
    ]
    fig = explanation_figure(result, list(methods))
    if out is not None:
        save_figure(fig, Path(out) / RunDir.EXPLAIN)
    show_figure(fig)
    return result


def overlay_png(predictor, image: torch.Tensor, class_index: int) -> bytes:
    """The HTTP service's explanation hook (``serve.http.create_app(explain=...)``): the Grad-CAM map of
    ``class_index`` over a uint8 (1, C, H, W) image as decoded, as PNG bytes of the image the network saw."""
    from ..plots import heat_png

    fitted = predictor.fit_images(image)
    _, _, _, cams = explain_fitted(predictor, fitted, target=[int(class_index)])
    return heat_png(fitted[0].cpu(), cams["gradcam"][0])


def can_explain(predictor) -> bool:
    """Whether ``predictor`` runs a PyTorch model (exported ONNX/TorchScript files have no layers to hook)."""
    return isinstance(getattr(predictor, "model", None), nn.Module)


def mistake_maps(predictor, images: torch.Tensor, fitted: bool, pred: torch.Tensor):
    """(the images as the network saw them, their Grad-CAM maps of the predicted class), or (the images,
    None) for a model that is not a PyTorch one."""
    if predictor is None or getattr(predictor, "model", None) is None or len(images) == 0:
        return images, None
    x = images if fitted else predictor.fit_images(images)
    _, _, _, cams = explain_fitted(predictor, x, target=pred.tolist())
    return x.cpu(), cams["gradcam"]
