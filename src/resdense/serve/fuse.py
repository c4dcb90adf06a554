"""Fold batch norm into the convolution before it, for inference.

In eval mode a ``BatchNorm2d`` is a fixed per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * gamma
+ beta``. When ``x`` is the output of a ``Conv2d`` and nothing else reads that output, the map can be moved
into the conv's weight and bias and the BN dropped: one op instead of two, the same numbers.

Which BN follows which conv is found by running the model once, not by module names: forward hooks record
each conv's output tensor and each BN's input tensor, and a ``TorchFunctionMode`` counts every torch
operation that reads a tensor. A BN is folded exactly when its input *is* a conv's output and the BN is that
output's only reader (the conv and the BN each run once). This covers every registered model without rules
per family: torchvision-style blocks (``conv1/bn1`` ... ``downsample = Sequential(conv, bn)``), d2l's
``Residual`` and ``Sequential(conv, BN, ReLU, pool)`` stem, DenseNet's ``conv0/norm0`` stem and the
``conv1 -> norm2`` pair inside each dense layer, the ``conv1 -> bn2`` pair of a pre-activation block, and
memory-efficient DenseNets (the trace runs without grad, where checkpointing is off).

What stays: a BN that *precedes* its conv (pre-activation BN -> ReLU -> conv, as in DenseNet's layers and
transitions, d2l's ``conv_block`` and the pre-activation ResNet) cannot be folded into that conv exactly,
because the ReLU between them is not linear; nor can a BN that reads a concatenation or a residual sum
(DenseNet's final ``norm5``, pre-activation ResNet's ``final_norm``). Those modules are left as they are.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

__all__ = ["count_batchnorms", "find_conv_bn_pairs", "fold_conv_bn", "fuse_bn"]

# torch functions that read a tensor's metadata, not its values: they do not make a second consumer
_METADATA_READS = {"__get__", "dim", "size", "numel", "stride", "is_contiguous", "get_device", "element_size"}


class _ReadCounter(TorchFunctionMode):
    """Counts, per tensor (by identity), the torch operations that take it as an argument."""

    def __init__(self):
        super().__init__()
        self.reads: Counter[int] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") not in _METADATA_READS:
            for leaf in tree_flatten((args, kwargs))[0]:
                if isinstance(leaf, torch.Tensor):
                    self.reads[id(leaf)] += 1
        return func(*args, **kwargs)


def _example_input(model: nn.Module) -> torch.Tensor:
    cfg = getattr(model, "default_cfg", None)
    if cfg is not None:
        shape = tuple(cfg.input_size)
    else:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        shape = (first.in_channels if first is not None else 3, 64, 64)
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    return torch.randn(1, *shape, device=device)


def find_conv_bn_pairs(model: nn.Module, example_input: torch.Tensor | None = None) -> list[tuple[str, str]]:
    """``(conv_name, bn_name)`` for each ``BatchNorm2d`` whose only input is a ``Conv2d``'s output that
    nothing else reads, found by running ``model`` (in eval mode, without grad) on ``example_input``."""
    if example_input is None:
        example_input = _example_input(model)
    # modules registered under more than one name cannot be replaced safely; skip them
    names: dict[nn.Module, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        names.setdefault(m, []).append(name)
    convs = [m for m in names if type(m) is nn.Conv2d and len(names[m]) == 1]
    bns = [
        m
        for m in names
        if isinstance(m, nn.BatchNorm2d)
        and len(names[m]) == 1
        and m.track_running_stats
        and m.running_mean is not None
        and m.running_var is not None
    ]

    conv_outputs: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in convs}
    bn_inputs: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in bns}
    handles = []
    counter = _ReadCounter()

    def record_conv_output(mod, inp, out):
        conv_outputs[mod].append(out)
        # a freed temporary may have had the same id; reads count from the output's creation on
        counter.reads[id(out)] = 0

    for m in convs:
        handles.append(m.register_forward_hook(record_conv_output))
    for m in bns:
        handles.append(m.register_forward_pre_hook(lambda mod, inp: bn_inputs[mod].append(inp[0])))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    # the recorded tensors are still alive here, so their ids are unique
    producer = {id(outs[0]): conv for conv, outs in conv_outputs.items() if len(outs) == 1}
    pairs = []
    for bn, ins in bn_inputs.items():
        if len(ins) != 1:
            continue
        conv = producer.get(id(ins[0]))
        if conv is not None and counter.reads[id(ins[0])] == 1:
            pairs.append((names[conv][0], names[bn][0]))
    return pairs


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode ``bn`` that reads ``conv``'s output into ``conv``'s weight and bias, in place."""
    dtype = conv.weight.dtype
    w = conv.weight.double()
    b = (
        conv.bias.double()
        if conv.bias is not None
        else torch.zeros_like(bn.running_mean, dtype=torch.float64)
    )
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(b)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(b)
    scale = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
    new_w = w * scale.view(-1, *([1] * (w.dim() - 1)))
    new_b = (b - bn.running_mean.double()) * scale + beta
    conv.weight.copy_(new_w.to(dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(new_b.to(dtype))
    else:
        conv.bias.copy_(new_b.to(dtype))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def fuse_bn(model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every ``BatchNorm2d`` that directly follows a ``Conv2d``
    folded into that conv (the BN becomes ``nn.Identity``); ``model`` itself is not changed.

    The pairs are found by one forward pass on ``example_input`` (default: a random image of the model's
    ``default_cfg.input_size``); see the module docstring for what is folded and what is left. BNs that
    precede a conv (pre-activation BN -> ReLU -> conv) are left as they are: the ReLU between them makes an
    exact fold impossible. Outputs match the unfused model's in eval mode up to float rounding. The copy is
    for inference: memory-efficient (checkpointing) DenseNet layers in it are switched to the plain path.
    """
    fused = copy.deepcopy(model).eval()
    for m in fused.modules():
        # an inference copy needs no checkpointing; its replay would also look for the folded BNs' statistics
        if isinstance(getattr(m, "memory_efficient", None), bool):
            m.memory_efficient = False
    for conv_name, bn_name in find_conv_bn_pairs(fused, example_input):
        conv = fused.get_submodule(conv_name)
        bn = fused.get_submodule(bn_name)
        fold_conv_bn(conv, bn)
        _set_submodule(fused, bn_name, nn.Identity())
    return fused


def count_batchnorms(model: nn.Module) -> int:
    """How many batch-norm modules ``model`` holds."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
