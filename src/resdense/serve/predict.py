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


def inverted_for(spec, img: torch.Tensor, invert: str = "auto") -> tuple[torch.Tensor, bool]:
    """A uint8 (1, C, H, W) image as a model with ``spec`` takes it, and whether it was inverted
    (``invert``: see :func:`predict_files`)."""
    flip = invert == "yes" or (
        invert == "auto" and is_fashion_mnist_model(spec) and has_light_background(img)
    )
    return (255 - img if flip else img), flip


def read_for(spec, path, invert: str = "auto") -> tuple[torch.Tensor, bool]:
    """The file as a uint8 (1, C, H, W) image for a model with ``spec``, and whether it was inverted."""
    return inverted_for(spec, read_image(path, spec.preprocess.in_chans), invert)


def predict_files(predictor, paths: list[str], top_k: int = 3, invert: str = "no") -> list[Prediction]:
    """One Prediction per path; unreadable files get an error entry and do not stop the others.

    ``invert``: ``"yes"`` inverts every image, ``"auto"`` those with a light background when the model was
    trained on Fashion-MNIST (light-on-dark), ``"no"`` none; each Prediction says whether it was.
    """
    from functools import partial

    return predict_sources(predictor, [(str(p), partial(read_image, p)) for p in paths], top_k, invert)


def predict_sources(predictor, sources, top_k: int = 3, invert: str = "no") -> list[Prediction]:
    """:func:`predict_files` for any images: ``sources`` are (name, read) pairs, ``read(in_chans)`` giving a
    uint8 (1, C, H, W) image or raising a UserError (files for the CLI, uploads for the HTTP service)."""
    results, images = read_sources(predictor.spec, sources, invert)
    if images:
        fill_top(results, predictor.predict_images(images), predictor.spec.classes, top_k)
    return results


def read_sources(spec, sources, invert: str = "no") -> tuple[list[Prediction], list[torch.Tensor]]:
    """Each source read (and inverted as ``invert`` says): a Prediction per source, without its top classes
    yet, and the images that were read, in order (an unreadable one has its error and no image)."""
    if invert not in ("auto", "yes", "no"):
        raise ValueError(f"invert must be auto, yes or no, got {invert!r}")
    images, results = [], []
    for name, read in sources:
        try:
            img, flip = inverted_for(spec, read(spec.preprocess.in_chans), invert)
            images.append(img)
            results.append(Prediction(name, [], inverted=flip))
        except UserError as e:
            results.append(Prediction(name, [], error=str(e)))
    return results, images


def fill_top(results: list[Prediction], logits: torch.Tensor, classes: list[str], top_k: int) -> None:
    """The top ``top_k`` classes by probability for the readable results, from their ``logits`` in order."""
    probs = logits.softmax(1)
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    good = [r for r in results if r.error is None]
    for r, v, i in zip(good, values.tolist(), indices.tolist()):
        r.top = [(classes[j], float(pv)) for pv, j in zip(v, i)]
