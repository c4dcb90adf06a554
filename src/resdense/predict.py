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

    def to_json(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "top": [{"class": c, "probability": p} for c, p in self.top]}


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


def predict_files(predictor, paths: list[str], top_k: int = 3) -> list[Prediction]:
    """One Prediction per path; unreadable files get an error entry and do not stop the others."""
    spec = predictor.spec
    size = spec.preprocess.size
    images, results = [], []
    for p in paths:
        try:
            img = read_image(p, spec.preprocess.in_chans)
            # bring every image to the training size first so that odd sizes batch together
            images.append(resize(img, size) if size else img)
            results.append(Prediction(str(p), []))
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
