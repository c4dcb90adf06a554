"""A folder's classes matched to a model's by name, not by position: a folder whose sub-folders sort in
another order, or hold only some of the model's classes, is scored right; one with classes the model does
not know is refused in one line. A folder made by ``resdense convert`` matches under the folder names it
gave the classes (Fashion-MNIST's "T-shirt/top" is the folder ``T-shirt-top``)."""

from __future__ import annotations

import logging

import torch

from ..data.convert import class_folder_name
from ..errors import UserError

log = logging.getLogger("resdense")


def _names(classes, n: int = 4) -> str:
    classes = list(classes)
    return ", ".join(classes[:n]) + (f", ... ({len(classes)} in all)" if len(classes) > n else "")


def match_by_name(folder_classes, model_classes, labels: torch.Tensor, source) -> torch.Tensor:
    """``labels`` (indices into ``folder_classes``) as indices into ``model_classes``."""
    folder_classes, model_classes = list(folder_classes), list(model_classes)
    if folder_classes == model_classes:
        return labels
    index = {c: i for i, c in enumerate(model_classes)}
    for i, c in enumerate(model_classes):  # a class as `resdense convert` names its folder ("T-shirt/top")
        index.setdefault(class_folder_name(c), i)
    unknown = [c for c in folder_classes if c not in index]
    if unknown:
        raise UserError(
            f"{source}: the folder's classes {_names(unknown)} are not the model's "
            f"({_names(model_classes)}); evaluate on a folder of the model's classes"
        )
    if len(folder_classes) < len(model_classes):
        log.info(
            "%s: scoring the %d of the model's %d classes this folder holds (%s), matched by name",
            source,
            len(folder_classes),
            len(model_classes),
            _names(folder_classes),
        )
    mapping = torch.tensor([index[c] for c in folder_classes], dtype=torch.int64)
    return mapping[labels.cpu()].to(labels.device)
