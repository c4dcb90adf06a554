"""The speed records' training tricks, as ordinary settings (each off by default; RESULTS.md has their
measured effect here): Keller Jordan's airbench (CIFAR-10 94% in 3.8 s) and David Page's "How to train your
ResNet" (DAWNBench), re-written for this library's models from their descriptions.

- ``whiten_init``: the first convolution's filters are the eigenvectors of the covariance of the training
  images' patches (its kernel's size), each divided by the square root of its eigenvalue, and their
  negatives (a ReLU passes one sign): its outputs start decorrelated, with unit variance.
- ``dirac_init``: every other convolution starts as the identity on its first ``in_channels`` filters
  (``torch.nn.init.dirac_``), the rest as the model made them: a deep net starts close to a shallow one.
- ``bn_momentum``: every batch norm's momentum (PyTorch's convention: the weight of the new batch's
  statistics; airbench's "0.6" is 0.4 here).
- ``lookahead``: Zhang et al. 2019's Lookahead, as airbench uses it: every N steps the slow weights move
  ``lookahead_alpha`` of the way to the fast ones and the fast ones restart from there; the run ends on the
  slow weights.
- ``logit_scale``: the loss sees the logits times this (airbench: 1/9); the saved model has the factor folded
  into its classifier, so predict's probabilities are the ones training used.
- ``bn_recalibrate``: not a record's trick but one of their kind (Wu & Johnson 2021, "Rethinking 'Batch' in
  BatchNorm": precise BN): after the last step, each batch norm's running mean and variance are re-estimated
  as a plain average over N training images spread evenly over the split, evaluation's preprocessing, no
  augmentation, for the weights the run ends on. The momentum average lags weights that still move (a constant learning rate, the
  d2l recipes; a weight EMA), and evaluation uses nothing else from training.
- ``bn_bias_lr_mult`` (train/optim.py) and ``alt_flip`` (data/augment.py) live with their owners.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..models import first_conv as named_first_conv

WHITEN_EPS = 5e-4  # added to the eigenvalues: directions with almost no variance are not blown up
WHITEN_IMAGES = 2000  # the patches of this many training images (evenly spaced) give the covariance


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The convolution whitening initialises: the one the model's ``pretrained_cfg`` names ``first_conv``."""
    return named_first_conv(model)[1]


@torch.no_grad()
def whiten_conv(conv: nn.Conv2d, images: torch.Tensor, eps: float = WHITEN_EPS) -> int:
    """Set ``conv``'s first 2n filters to the n leading whitening filters of ``images``' patches and their
    negatives (n = min(patch size, out_channels // 2)); returns n. ``images``: a float batch as the network
    sees it."""
    kh, kw = conv.kernel_size
    patches = F.unfold(images.float(), (kh, kw)).transpose(1, 2).reshape(-1, conv.in_channels * kh * kw)
    patches = patches.double() - patches.double().mean(0)
    cov = patches.T @ patches / len(patches)
    eigenvalues, vectors = torch.linalg.eigh(cov)  # ascending
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
    n = min(vectors.shape[1], conv.out_channels // 2)
    filters = (vectors[:, :n] / (eigenvalues[:n] + eps).sqrt()).T.reshape(n, conv.in_channels, kh, kw)
    filters = filters.to(conv.weight.dtype)
    conv.weight[:n] = filters
    conv.weight[n : 2 * n] = -filters
    return n


@torch.no_grad()
def dirac_convs(model: nn.Module) -> int:
    """Identity-initialise every convolution but the first (ungrouped ones); returns how many."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1:]
    done = 0
    for conv in convs:
        if conv.groups == 1:
            nn.init.dirac_(conv.weight[: min(conv.out_channels, conv.in_channels)])
            done += 1
    return done


def set_bn_momentum(model: nn.Module, momentum: float) -> int:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = momentum
    return len(norms)


def apply_init(cfg, model: nn.Module, train_images: torch.Tensor | None) -> None:
    """The initialisation tricks ``cfg`` asks for, on a freshly built model (``train_images``: a preprocessed
    float sample of the training set, for the whitening)."""
    if cfg.whiten_init:
        whiten_conv(first_conv(model), train_images)
    if cfg.dirac_init:
        dirac_convs(model)
    if cfg.bn_momentum is not None:
        set_bn_momentum(model, cfg.bn_momentum)


def spread_batches(length: int, n: int, batch_size: int) -> list[torch.Tensor]:
    """``min(n, length)`` indices spread evenly over ``range(length)`` (an image folder's files come sorted
    by class), in batches of about ``batch_size`` and of equal sizes (give or take one): a batch norm's
    cumulative average weighs each batch alike, so a short last batch would count as much as a full one."""
    picks = torch.linspace(0, length - 1, min(n, length)).round().long().unique()
    return list(picks.tensor_split(math.ceil(len(picks) / max(1, batch_size))))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches) -> int:
    """Re-estimate the running statistics of ``model``'s batch norms that train (frozen ones, see
    train/optim.py, keep theirs) as the plain average over ``batches`` (float inputs as the model takes them);
    returns how many. Hand-written rather than torch's ``swa_utils.update_bn``: that one resets every batch
    norm, and a frozen one, which stays in eval mode, would keep the reset statistics."""
    was_training = model.training
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
    for x in batches:
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    return len(norms)


def recalibrate_from(model: nn.Module, split, n: int, batch_size: int, prepare) -> int:
    """``--bn-recalibrate n`` whole: ``n`` images of ``split`` spread evenly (:func:`spread_batches`), read as
    evaluation reads them, each batch turned into the model's input by ``prepare``; one owner for the
    training loop and for ``benchmarks/bn_stats.py``, which applies it to finished runs."""
    chunks = spread_batches(len(split), n, batch_size)
    return recalibrate_bn(model, (prepare(x) for x, _ in split.batches_at(chunks)))


class Lookahead:
    """Slow weights beside the model's own (the fast ones), synchronised every ``every`` optimizer steps."""

    def __init__(self, model: nn.Module, every: int, alpha: float):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.slow = [p.detach().clone() for p in self.params]
        self.every, self.alpha = every, alpha

    @torch.no_grad()
    def step(self, step: int) -> None:
        """After optimizer step ``step`` (0-based, counted over the run)."""
        if (step + 1) % self.every == 0:
            for s, p in zip(self.slow, self.params):
                s.lerp_(p, self.alpha)
                p.copy_(s)

    @torch.no_grad()
    def finish(self) -> None:
        """End on the slow weights (what the fast ones did since the last synchronisation is dropped)."""
        for s, p in zip(self.slow, self.params):
            p.copy_(s)

    def state_dict(self) -> list[torch.Tensor]:
        return [s.clone() for s in self.slow]

    def load_state_dict(self, slow: list[torch.Tensor]) -> None:
        for s, saved in zip(self.slow, slow, strict=True):
            s.copy_(saved)


def scaled_model(model: nn.Module, scale: float) -> nn.Module:
    """``model`` whose logits are ``scale`` times its own: a copy with the factor folded into its classifier
    (a linear layer), or ``model`` itself when ``scale`` is 1."""
    if scale == 1.0:
        return model
    out = copy.deepcopy(model)
    head = out.get_classifier()
    with torch.no_grad():
        head.weight.mul_(scale)
        if head.bias is not None:
            head.bias.mul_(scale)
    return out
