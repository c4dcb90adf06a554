"""What an image given in Python may be, written once: the Python API (``resdense.explain``,
:meth:`Predictor.predict_images <resdense.serve.predictor.Predictor.predict_images>`) turns whatever it is
given into uint8 (1, C, H, W) images here, as files are read by ``data.photo``.

Accepted: torch tensors (channels first: (H, W), (C, H, W) or a batch (N, C, H, W)), numpy arrays (channels
last, as Pillow and OpenCV hand them: (H, W), (H, W, C) or (N, H, W, C)), Pillow images (any mode; wide ones
scaled by their bit depth as files are), and lists or tuples of these. Values: uint8 as they are; floats
in [0, 1] (torchvision's ``ToTensor`` convention) scaled by 255 and rounded, so ``x / 255`` gives the uint8
image's answer exactly; other integers when they lie in 0..255. Anything else is a one-line
:class:`ImageInputError` saying what was expected.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError

__all__ = ["ImageInputError", "as_images"]

# the channel counts a channels-last array may end in (grey, grey + alpha, RGB, RGBA)
_LAST_CHANNELS = (1, 2, 3, 4)


class ImageInputError(UserError, ValueError):
    """An image given in Python that is not one (a ValueError too, as the tensor checks always raised)."""


def as_images(x, in_chans: int, what: str = "images") -> list[torch.Tensor]:
    """``x`` (see the module's note) as a list of uint8 (1, C, H, W) images, one per image given; a Pillow
    image is converted to ``in_chans`` channels (tensors and arrays keep theirs: the model's preprocessing
    matches them)."""
    from PIL import Image

    if isinstance(x, (list, tuple)):
        return [im for item in x for im in as_images(item, in_chans, what)]
    if isinstance(x, Image.Image):
        from ..data.pixels import to_channels

        arr = np.asarray(to_channels(x, in_chans))
        t = torch.from_numpy(arr.copy())
        t = t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]
        return [t.contiguous()]
    if isinstance(x, np.ndarray):
        if x.dtype == object or x.dtype.kind not in "biuf":
            raise ImageInputError(f"{what}: a numpy array of numbers expected, got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x))
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3 and t.shape[-1] in _LAST_CHANNELS:
            t = t.permute(2, 0, 1)[None]
        elif t.dim() == 4 and t.shape[-1] in _LAST_CHANNELS:
            t = t.permute(0, 3, 1, 2)
        else:
            raise ImageInputError(
                f"{what}: a numpy image is (H, W), (H, W, C) or (N, H, W, C) with C of 1 to 4, "
                f"got shape {tuple(x.shape)}"
            )
    elif isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3:
            t = t[None]
        elif t.dim() != 4:
            raise ImageInputError(
                f"{what}: a tensor image is (H, W), (C, H, W) or (N, C, H, W), got shape {tuple(t.shape)}"
            )
    else:
        raise ImageInputError(
            f"{what}: expected an image file, a tensor, a numpy array or a PIL image (or a list of them), "
            f"got {type(x).__name__}"
        )
    if min(t.shape[-2:], default=0) < 1 or t.shape[1] < 1:
        raise ImageInputError(f"{what}: an empty image (shape {tuple(t.shape)})")
    return list(to_uint8(t, what).split(1))


def to_uint8(t: torch.Tensor, what: str = "images") -> torch.Tensor:
    """A tensor's values as uint8: uint8 as is; floats in [0, 1] times 255, rounded; integers in 0..255."""
    if t.dtype == torch.uint8:
        return t.contiguous()
    if t.dtype == torch.bool or t.is_complex():
        raise ImageInputError(f"{what}: images of {t.dtype} are not images; give uint8 or float in [0, 1]")
    if t.is_floating_point():
        t = t.float()
        if not bool(torch.isfinite(t).all()):
            raise ImageInputError(f"{what}: float images hold NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < 0 or hi > 1:
            raise ImageInputError(
                f"{what}: float images must lie in [0, 1] (uint8 for 0..255), got values from {lo:g} to {hi:g}"
            )
        return (t * 255).round_().to(torch.uint8)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi > 255:
        raise ImageInputError(f"{what}: integer images must lie in 0..255, got values from {lo} to {hi}")
    return t.to(torch.uint8)
