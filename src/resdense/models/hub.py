"""Weights others publish, by name: the entry types of the weight tables each model file keeps beside its
builders (torchvision-style), and where their files are found or fetched.

* :class:`TorchvisionWeights`: one of torchvision's ImageNet weight sets (our own table: torchvision is not
  needed to use its files), found under torchvision's own file name in the PyTorch hub cache
  (``$TORCH_HOME/hub/checkpoints``), so a file torchvision already fetched is used as it is, and otherwise
  downloaded from the official URL and checked against the hash in its name;
* :class:`ShippedWeights`: a model trained by resdense's own recipes, shipped inside the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import UserError
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD

_TV_URL = "https://download.pytorch.org/models/"


class PretrainedError(UserError):
    """Weights that cannot be found, read or loaded into the model; the message is one line."""


@dataclass(frozen=True)
class TorchvisionWeights:
    """One torchvision weight set: the file (its name holds the SHA-256 prefix) and how it was evaluated."""

    model: str
    name: str  # IMAGENET1K_V1 / IMAGENET1K_V2
    file: str  # e.g. resnet50-11ad3fa6.pth
    top1: float  # ImageNet-1K top-1 accuracy (%) as torchvision publishes it
    resize: int = 256  # evaluation: the shorter side resized to this, then the centre 224
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def url(self) -> str:
        return _TV_URL + self.file

    @property
    def hash_prefix(self) -> str:
        return Path(self.file).stem.rsplit("-", 1)[-1]

    def fetch(self, *, progress: bool = True) -> Path:
        """The file in the hub cache, downloaded there first when missing; a one-line error otherwise."""
        folder = hub_checkpoint_dir()
        path = folder / self.file
        if path.exists():
            return path
        from ..utils.download import download

        try:
            download(
                self.url,
                path,
                progress=progress,
                desc=f"{self.model} {self.name}",
                hash_prefix=self.hash_prefix,
            )
        except UserError as e:
            text = str(e)
            reason = text.split(": ", 1)[1] if text.startswith("cannot download") and ": " in text else text
            raise PretrainedError(
                f"{self.model} {self.name}: {self.file} is not in {folder} and cannot be downloaded from "
                f"{self.url} ({reason}); download it there by hand, or set TORCH_HOME to the folder above hub/"
            ) from None
        return path


def torchvision_table(model: str, v1: tuple[str, float], v2: tuple[str, float] | None = None) -> dict:
    """``IMAGENET1K_V1`` (and ``_V2``) for ``model``, and ``DEFAULT``: the best of them, as torchvision."""
    table = {"IMAGENET1K_V1": TorchvisionWeights(model, "IMAGENET1K_V1", *v1)}
    if v2 is not None:
        # the V2 recipes were evaluated at resize 232 (torchvision's "new training recipe")
        table["IMAGENET1K_V2"] = TorchvisionWeights(model, "IMAGENET1K_V2", *v2, resize=232)
    table["DEFAULT"] = table["IMAGENET1K_V2" if v2 else "IMAGENET1K_V1"]
    return table


@dataclass(frozen=True)
class ShippedWeights:
    """A model file shipped as package data (``resdense/models/data``)."""

    tag: str  # fashion-mnist:<tag>
    file: str

    @property
    def path(self) -> Path:
        return Path(str(resources.files(__package__).joinpath("data", self.file)))


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (and so torchvision) keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        home = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(home) / "hub" / "checkpoints"


def imagenet_classes() -> list[str]:
    """ImageNet-1K's 1,000 class names, in the order of the classifier's outputs."""
    text = resources.files(__package__).joinpath("data", "imagenet_classes.txt").read_text("utf-8")
    return text.splitlines()
