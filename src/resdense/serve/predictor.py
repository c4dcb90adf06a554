"""A loaded model with its spec: uint8 images in, logits out, whatever runs it (PyTorch, onnxruntime,
TorchScript); and the one forward pass with test-time augmentation, which training's evaluation, the studies
and every predictor share.

A :class:`Predictor`'s steps are public, and serving's other modules call only them:
:meth:`~Predictor.fit_images` (resize and crop to the input size: the image the network sees),
:meth:`~Predictor.predict_fitted` (normalise, run with the test-time views), :meth:`~Predictor.forward` (the
network alone on one view), and :meth:`~Predictor.predict_logits` / :meth:`~Predictor.predict_images` /
:meth:`~Predictor.predict`, which compose them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..modelfile import ModelSpec
from ..preprocess import Preprocess, normalize

__all__ = [
    "BACKENDS",
    "DEFAULT_BATCH_SIZE",
    "TTA_VIEWS",
    "Predictor",
    "predict_logits",
    "tta_forward",
    "tta_views",
]

BACKENDS = ("torch", "onnxruntime", "torchscript")
DEFAULT_BATCH_SIZE = 256

# The test-time views, here and nowhere else (training's evaluation, the studies, predict and evaluate all
# come through tta_forward): "flip" averages each image with its mirror image (what a model file's tta_flip
# asks for); "flip-translate" also averages the flipped pair of two copies shifted diagonally by a few pixels
# (reflected at the border), weighted 1/2 (unshifted) and 1/4 each (shifted), the multi-crop of small-image
# training recipes.
TTA_VIEWS = ("none", "flip", "flip-translate")


def tta_views(tta: bool | str | None) -> str:
    """The views' name for a model file's ``tta_flip`` (a bool) or a name of :data:`TTA_VIEWS`."""
    if tta is None or isinstance(tta, bool):
        return "flip" if tta else "none"
    if tta not in TTA_VIEWS:
        raise ValueError(f"test-time views must be one of {', '.join(TTA_VIEWS)}, got {tta!r}")
    return tta


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    s = max(abs(dy), abs(dx))
    padded = torch.nn.functional.pad(x, (s, s, s, s), mode="reflect")
    h, w = x.shape[-2:]
    return padded[..., s - dy : s - dy + h, s - dx : s - dx + w]


def tta_forward(
    run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tta: bool | str
) -> torch.Tensor:
    """Float32 logits of the preprocessed batch ``x`` averaged over the test-time views ``tta`` (a name of
    :data:`TTA_VIEWS`, or a model file's ``tta_flip``: True is ``"flip"``, False ``"none"``).

    ``run``: the forward pass applied to each view.
    """
    views = tta_views(tta)
    logits = run(x).float()
    if views == "none":
        return logits
    logits = 0.5 * (logits + run(x.flip(-1)).float())
    if views == "flip-translate":
        s = max(1, x.shape[-1] // 32)  # 1 pixel at 28-63 px, 7 at 224
        shifted = [_shift(x, d, d) for d in (s, -s)]
        logits = 0.5 * logits + sum(0.125 * (run(v).float() + run(v.flip(-1)).float()) for v in shifted)
    return logits


def predict_logits(
    model: nn.Module | Callable,
    images: torch.Tensor,
    preprocess: Preprocess,
    *,
    tta_flip: bool | str = False,
    batch_size: int = 1024,
    channels_last: bool = False,
    autocast: bool = False,
) -> torch.Tensor:
    """Logits for uint8 images (on their device), in batches, without grad; ``tta_flip``: the test-time
    views (a bool, or a name of :data:`TTA_VIEWS`).

    ``model``: the network; ``preprocess``: how uint8 images become its input; ``batch_size``: images per
    forward pass; ``channels_last``: run in channels-last memory format; ``autocast``: run the forward
    under bf16 autocast.
    """
    outs = []
    dev = images.device
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        for chunk in images.split(batch_size):
            x = preprocess(chunk)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            outs.append(tta_forward(model, x, tta_flip))
    return torch.cat(outs) if outs else torch.empty(0)


class Predictor:
    """A loaded model with its spec: uint8 images in, logits out.

    ``backend`` is ``"torch"`` (``model`` is the ``nn.Module``), ``"onnxruntime"`` or ``"torchscript"``
    (``model`` is None for both; the runtime object is ``runner``). Made by :func:`resdense.serve.load_predictor`.

    ``spec``: what the model is and how to feed it; ``runner``: the callable that runs a batch;
    ``device``: where it runs; ``path``: the file it came from; ``batch_size``: images per forward pass;
    ``tta``: the test-time views (default: the spec's own).
    """

    def __init__(
        self,
        spec: ModelSpec,
        backend: str,
        runner: Any,
        *,
        device: str | torch.device = "cpu",
        model: nn.Module | None = None,
        path: Path | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        tta: str | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.spec = spec
        self.backend = backend
        self.runner = runner
        self.device = torch.device(device)
        self.model = model
        self.path = path
        self.batch_size = batch_size
        self.tta = None if tta in (None, "auto") else tta_views(tta)  # None: the model file's own views

    @property
    def views(self) -> str:
        """The test-time views every prediction averages over: ``tta`` when set, else the spec's own (what
        training scored with)."""
        return self.tta or tta_views(self.spec.tta_flip)

    @classmethod
    def for_model(
        cls, model: nn.Module, spec: ModelSpec, device: str | torch.device = "cpu", **kw
    ) -> Predictor:
        return cls(spec, "torch", model, device=device, model=model, **kw)

    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    def __repr__(self) -> str:
        return f"Predictor({self.spec.model!r}, backend={self.backend!r}, path={str(self.path)!r})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a normalised batch ``x`` (N, C, H, W) at the input size: its logits for that one
        view, on whatever backend runs it (no test-time views, no preprocessing; :meth:`predict_fitted` adds
        both). Timing and quantization checks call it to compare backends on the same tensors."""
        if self.backend == "onnxruntime":
            name = self.runner.get_inputs()[0].name
            out = self.runner.run(None, {name: x.detach().cpu().numpy()})[0]
            return torch.from_numpy(out)
        return self.runner(x)

    def fit_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) on the predictor's device, resized and cropped to the input size as
        ``spec.preprocess`` says (not normalised): what :meth:`predict_fitted` takes, and the image the network
        sees, which explanations and feature maps draw. Bad input (e.g. 4 channels for a 3-channel model) is a
        one-line :class:`UserError` naming the model."""
        try:
            return self.spec.preprocess.fit_images(images.to(self.device))
        except ValueError as e:  # e.g. 4-channel images for a 3-channel model
            raise UserError(f"{self.path or self.spec.model}: {e}") from None

    @torch.no_grad()
    def predict_fitted(self, fitted: torch.Tensor) -> torch.Tensor:
        """Logits for uint8 images already at the input size (resized and cropped as ``spec.preprocess``
        says, e.g. by the photo decoder): normalised and run, nothing else."""
        pre = self.spec.preprocess
        x = normalize(fitted.to(self.device), pre.mean, pre.std)
        return tta_forward(self.forward, x, self.views).cpu()

    @torch.no_grad()
    def predict_logits(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> float32 logits (N, classes) on the CPU.

        Each batch of ``batch_size`` (default 256) images is preprocessed with ``spec.preprocess`` (channels,
        resize, centre crop, normalisation) on the predictor's device, then run without grad.
        """
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"expected a uint8 tensor (N, C, H, W), got {shape}")
        if images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images, got {images.dtype}")
        bs = batch_size or self.batch_size
        outs = [
            self.predict_fitted(self.fit_images(images[s : s + bs])) for s in range(0, images.shape[0], bs)
        ]
        if not outs:
            return torch.empty(0, len(self.spec.classes) or 0)
        return torch.cat(outs)

    @torch.no_grad()
    def predict_images(self, images: Sequence[torch.Tensor], batch_size: int | None = None) -> torch.Tensor:
        """Logits for images of any sizes (each uint8 (1, C, H, W) or (C, H, W), or anything
        :func:`~resdense.serve.inputs.as_images` takes: float in [0, 1], batches, numpy, PIL): each is fitted
        on its own (resize, centre crop) exactly as a batch would be, then they run in batches."""
        from .inputs import as_images

        fitted = [self.fit_images(im) for im in as_images(images, self.spec.preprocess.in_chans)]
        return self.predict_fitted_each(fitted, batch_size)

    @torch.no_grad()
    def predict_fitted_each(
        self, fitted: Sequence[torch.Tensor], batch_size: int | None = None
    ) -> torch.Tensor:
        """Logits for images fitted one at a time (:meth:`fit_images`, e.g. right after each was decoded, so
        a batch holds input-sized images, not file-sized ones), run in batches."""
        bs = batch_size or self.batch_size
        outs = [self.predict_fitted(torch.cat(list(fitted[s : s + bs]))) for s in range(0, len(fitted), bs)]
        return torch.cat(outs) if outs else torch.empty(0, len(self.spec.classes) or 0)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> predicted class indices (N,)."""
        return self.predict_logits(images, batch_size).argmax(1)
