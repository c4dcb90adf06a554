"""Classify image files with a trained model, each fed as the model was evaluated in training (its
``Preprocess``: resized by its shorter side or squashed, as the run did, then the centre crop)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.photo import read_image
from ..errors import UserError


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class, probability), most likely first
    error: str | None = None
    inverted: bool = False  # a dark-on-light image was inverted before classifying

    def to_json(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        d = {"path": self.path, "top": [{"class": c, "probability": p} for c, p in self.top]}
        if self.inverted:
            d["inverted"] = True
        return d


def is_fashion_mnist_model(spec) -> bool:
    """Trained on Fashion-MNIST (its ten class names, grey input): expects light garments on black."""
    from ..data.fashion_mnist import CLASSES

    return tuple(spec.classes) == CLASSES


def has_light_background(image: torch.Tensor) -> bool:
    """Whether a uint8 (1, C, H, W) image is dark-on-light: its border (the outer eighth on each side) is
    brighter than mid-grey. Product photos sit on white; Fashion-MNIST's garments sit on black."""
    x = image.float().mean(1)[0]
    h, w = x.shape
    bh, bw = max(1, h // 8), max(1, w // 8)
    border = torch.cat([x[:bh].flatten(), x[-bh:].flatten(), x[:, :bw].flatten(), x[:, -bw:].flatten()])
    return float(border.mean()) > 127.5


def read_for(spec, path, invert: str = "auto") -> tuple[torch.Tensor, bool]:
    """The file as a uint8 (1, C, H, W) image for a model with ``spec``, and whether it was inverted
    (``invert``: see :func:`predict_files`)."""
    img = read_image(path, spec.preprocess.in_chans)
    flip = invert == "yes" or (
        invert == "auto" and is_fashion_mnist_model(spec) and has_light_background(img)
    )
    return (255 - img if flip else img), flip


def predict_files(predictor, paths: list[str], top_k: int = 3, invert: str = "no") -> list[Prediction]:
    """One Prediction per path; unreadable files get an error entry and do not stop the others.

    ``invert``: ``"yes"`` inverts every image, ``"auto"`` those with a light background when the model was
    trained on Fashion-MNIST (light-on-dark), ``"no"`` none; each Prediction says whether it was.
    """
    if invert not in ("auto", "yes", "no"):
        raise ValueError(f"invert must be auto, yes or no, got {invert!r}")
    spec = predictor.spec
    images, results = [], []
    for p in paths:
        try:
            img, flip = read_for(spec, p, invert)
            images.append(img)
            results.append(Prediction(str(p), [], inverted=flip))
        except UserError as e:
            results.append(Prediction(str(p), [], error=str(e)))
    if images:
        probs = predictor.predict_images(images).softmax(1)
        k = min(top_k, probs.shape[1])
        good = [r for r in results if r.error is None]
        values, indices = probs.topk(k, dim=1)
        for r, v, i in zip(good, values.tolist(), indices.tolist()):
            r.top = [(spec.classes[j], float(pv)) for pv, j in zip(v, i)]
    return results
