"""The input size of an image folder's run when ``--resize`` does not say: the weights' own size when
training starts from weights that know it, else the architecture's (``default_cfg.input_size``), as timm's
``resolve_data_config`` picks it; never the first file's size, which a folder of photos does not share
(a 201x201 first photo made a ResNet-20 cost 1.6 G MACs per image)."""

from __future__ import annotations

import torch

from ..models import create_model

__all__ = ["folder_input_size"]


def folder_input_size(model: str, options: dict, pretrained=None) -> tuple[int, str]:
    """``(side, where it comes from)`` for a folder run of ``model`` (from ``pretrained``, if given)."""
    weights_cfg = getattr(pretrained, "cfg", None)
    if weights_cfg is not None and weights_cfg.known_input:
        return int(weights_cfg.input_size[-1]), f"the weights' own ({pretrained.source})"
    try:
        with torch.device("meta"):  # the architecture's config, without allocating its weights
            net = create_model(model, **options)
    except Exception:  # a bad name or option is reported where the model is built, in one line
        return 0, ""
    return int(net.default_cfg.input_size[-1]), f"{model}'s own"
