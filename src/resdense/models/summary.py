"""A look inside a model: d2l's layer-by-layer shape walkthrough, with parameters and multiply-adds.

Shapes come from forward hooks on one forward pass; multiply-accumulates come from PyTorch's own
``FlopCounterMode`` (which counts convolutions and matrix products; one MAC = two FLOPs), so grouped
convolutions, projections and classifiers are all counted the way the papers count them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


class InputTooSmallError(ValueError):
    """The input's height/width shrinks to nothing somewhere inside the network."""


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    macs: int


@dataclass
class Summary:
    model: str
    input_size: tuple[int, int, int]
    layers: list[LayerRow]
    total_params: int
    trainable_params: int
    macs: int

    def to_json(self) -> dict:
        d = asdict(self)
        for row in d["layers"]:
            row["output_shape"] = list(row["output_shape"]) if row["output_shape"] is not None else None
        d["input_size"] = list(self.input_size)
        return d

    def table(self) -> str:
        head = ("layer", "type", "output shape", "params", "MACs")
        rows = [
            (
                r.name,
                r.type,
                "-" if r.output_shape is None else str(tuple(r.output_shape)).replace(",)", ")"),
                f"{r.params:,}",
                format_count(r.macs),
            )
            for r in self.layers
        ]
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
        fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
        lines = [f"{self.model}: input {tuple(self.input_size)}", fmt.format(*head)]
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt.format(*r) for r in rows]
        lines.append("")
        lines.append(f"total params: {self.total_params:,} ({self.trainable_params:,} trainable)")
        lines.append(f"MACs: {format_count(self.macs)} ({self.macs:,}) per image")
        return "\n".join(lines)


def format_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)}"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on one image of ``input_size``."""
    return summarize(model, input_size, depth=1).macs


def _selected(model: nn.Module, depth: int, called: set[str]) -> list[tuple[str, nn.Module]]:
    """Modules ``depth`` levels down, plus leaves that stop short of that depth, in definition order.

    A module that is never called as a whole is replaced by its children, and so on down: d2l's
    ``DenseBlock`` loops over ``self.net`` instead of calling it, and dropping it would drop its parameters
    from the table (every depth must account for every parameter).
    """
    out: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, mod: nn.Module, level: int) -> None:
        for child_name, child in mod.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            leaf = not any(True for _ in child.children())
            if (level + 1 >= depth or leaf) and (name in called or leaf):
                out.append((name, child))
            else:
                visit(name, child, level + 1)

    visit("", model, 0)
    return out


def summarize(
    model: nn.Module, input_size: tuple[int, int, int] | None = None, depth: int = 1, name: str | None = None
) -> Summary:
    """Run one image of ``input_size`` (default: the model's ``default_cfg``) through ``model`` in eval mode."""
    if input_size is None:
        input_size = tuple(model.default_cfg.input_size)
    if depth < 1:
        raise ValueError("depth must be >= 1")
    name = name or type(model).__name__
    cfg = getattr(model, "default_cfg", None)
    if cfg is not None and cfg.input_size[0] != input_size[0]:
        # otherwise the convolution's channel error would be reported as an input that is too small
        raise ValueError(
            f"{name} takes {cfg.input_size[0]} input channels, got input size {tuple(input_size)}"
        )
    shapes: dict[str, tuple[int, ...] | None] = {}
    last_input: list = [None, None]

    def hook_for(mod_name):
        def hook(_mod, _inp, out):
            shapes[mod_name] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None

        return hook

    def pre_hook(mod, inp):
        if inp and isinstance(inp[0], torch.Tensor):
            last_input[:] = [mod, tuple(inp[0].shape[1:])]

    # every module is hooked: which ones are called decides the rows (see _selected)
    named = [(n, m) for n, m in model.named_modules() if n]
    handles = [m.register_forward_hook(hook_for(n)) for n, m in named]
    handles += [m.register_forward_pre_hook(pre_hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    flops = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), flops:
            model(torch.zeros(1, *input_size))
    except RuntimeError as e:
        mod, shape = last_input
        where = f" at {type(mod).__name__} (input {shape})" if mod is not None else ""
        raise InputTooSmallError(
            f"input size {tuple(input_size)} is too small for {name}{where}: {str(e).splitlines()[0]}"
        ) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    root = type(model).__name__
    per_module = flops.get_flop_counts()

    def macs_of(mod_name: str) -> int:
        return int(sum(per_module.get(f"{root}.{mod_name}", {}).values()) // 2)

    layers = [
        LayerRow(n, type(m).__name__, shapes.get(n), count_params(m), macs_of(n))
        for n, m in _selected(model, depth, set(shapes))
        # leaves never called (e.g. an unused branch) are left out, but their parameters are counted
        if n in shapes or count_params(m)
    ]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Summary(
        name, tuple(input_size), layers, count_params(model), trainable, flops.get_total_flops() // 2
    )
