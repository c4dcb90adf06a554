"""Classify image files with a trained model, preprocessed exactly as in training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .data.transforms import resize
from .errors import UserError


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
    from .data.fashion_mnist import CLASSES

    return tuple(spec.classes) == CLASSES


def has_light_background(image: torch.Tensor) -> bool:
    """Whether a uint8 (1, C, H, W) image is dark-on-light: its border (the outer eighth on each side) is
    brighter than mid-grey. Product photos sit on white; Fashion-MNIST's garments sit on black."""
    x = image.float().mean(1)[0]
    h, w = x.shape
    bh, bw = max(1, h // 8), max(1, w // 8)
    border = torch.cat([x[:bh].flatten(), x[-bh:].flatten(), x[:, :bw].flatten(), x[:, -bw:].flatten()])
    return float(border.mean()) > 127.5


def read_image(path: str | Path, in_chans: int) -> torch.Tensor:
    """An image file as uint8 (1, C, H, W), in grey or RGB to match the model; UserError if unreadable."""
    from PIL import Image

    from .data.folder import READ_ERRORS, bombs_are_errors, image_problem

    try:
        with bombs_are_errors(), Image.open(path) as img:
            img = img.convert("L" if in_chans == 1 else "RGB")
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            w, h = img.size
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not an image") from None
    except READ_ERRORS as e:  # decompression bombs included: refused, never a traceback
        raise UserError(f"{path}: not a readable image ({image_problem(path, e).reason})") from None
    return data.view(h, w, -1).permute(2, 0, 1).unsqueeze(0).contiguous()


def predict_files(predictor, paths: list[str], top_k: int = 3, invert: str = "no") -> list[Prediction]:
    """One Prediction per path; unreadable files get an error entry and do not stop the others.

    ``invert``: ``"yes"`` inverts every image, ``"auto"`` those with a light background when the model was
    trained on Fashion-MNIST (light-on-dark), ``"no"`` none; each Prediction says whether it was.
    """
    if invert not in ("auto", "yes", "no"):
        raise ValueError(f"invert must be auto, yes or no, got {invert!r}")
    spec = predictor.spec
    size = spec.preprocess.size
    auto = invert == "auto" and is_fashion_mnist_model(spec)
    images, results = [], []
    for p in paths:
        try:
            img = read_image(p, spec.preprocess.in_chans)
            flip = invert == "yes" or (auto and has_light_background(img))
            if flip:
                img = 255 - img
            # bring every image to the training size first so that odd sizes batch together
            images.append(resize(img, size) if size else img)
            results.append(Prediction(str(p), [], inverted=flip))
        except UserError as e:
            results.append(Prediction(str(p), [], error=str(e)))
    if images:
        if size is None and len({tuple(i.shape) for i in images}) > 1:
            h, w = images[0].shape[-2:]
            images = [resize(i, h) if i.shape[-1] != w or i.shape[-2] != h else i for i in images]
        probs = predictor.predict_logits(torch.cat(images)).softmax(1)
        k = min(top_k, probs.shape[1])
        good = [r for r in results if r.error is None]
        values, indices = probs.topk(k, dim=1)
        for r, v, i in zip(good, values.tolist(), indices.tolist()):
            r.top = [(spec.classes[j], float(pv)) for pv, j in zip(v, i)]
    return results
