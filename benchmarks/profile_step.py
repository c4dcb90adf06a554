"""Where a CPU training step's time goes, and what each CPU-side setting of resdense buys on its own.

Two measurements of a bare training step (forward, backward, SGD step; batch 256 of random 1x96x96 images
by default, the d2l recipes' shape), with no data pipeline in the way:

1. **Settings, one at a time**: the step's images/s with plain PyTorch (contiguous tensors, glibc's
   default allocator), with channels-last, and with channels-last plus ``keep_freed_memory`` (the allocator
   setting). Each setting runs in a fresh process (the allocator setting is process-wide), the settings take
   turns for ``--repeats`` rounds, and the table gives the median and range, with each step-up's ratio.
2. **Profile** (``torch.profiler``, resdense's full settings): the share of the step spent in convolutions,
   forward and backward, and their nominal GFLOP/s (direct-method MACs x 2 / time; fast convolution
   algorithms need fewer multiplications, so this can exceed the machine's matrix-product rate).

    python benchmarks/profile_step.py [--models d2l_resnet18,d2l_densenet] [--batch 256] [--size 96]
                                      [--steps 4] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump, machine  # noqa: E402
from resdense.models import create_model  # noqa: E402
from resdense.utils.system import keep_freed_memory  # noqa: E402

SETTINGS = ("plain", "channels-last", "channels-last+keep-freed")


def build(model_name: str, batch: int, size: int, channels_last: bool):
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_chans=1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return model, step


def setting_images_per_s(model_name: str, setting: str, batch: int, size: int, steps: int) -> float:
    if "keep-freed" in setting:
        keep_freed_memory()
    _, step = build(model_name, batch, size, channels_last="channels-last" in setting)
    for _ in range(steps):  # warm-up: as many steps as are timed
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def conv_macs_per_image(model: nn.Module, size: int) -> int:
    """Direct-method multiply-accumulates of the convolutions alone, for one image (forward hooks)."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size))
    model.train()
    for h in handles:
        h.remove()
    return total


def profile(model_name: str, batch: int, size: int, steps: int) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    keep_freed_memory()
    model, step = build(model_name, batch, size, channels_last=True)
    conv_macs = conv_macs_per_image(model, size)
    for _ in range(steps):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - t0
    ev = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}  # inclusive seconds per op name
    fwd = ev.get("aten::convolution", 0.0)
    bwd = ev.get("aten::convolution_backward", 0.0)
    # backward computes two products per convolution (input and weight gradients): twice the forward MACs
    return {
        "step_s": total / steps,
        "conv_share": (fwd + bwd) / total,
        "forward_conv_share": fwd / total,
        "forward_conv_gflops": 2 * conv_macs * batch * steps / fwd / 1e9 if fwd else None,
        "backward_conv_gflops": 4 * conv_macs * batch * steps / bwd / 1e9 if bwd else None,
        "macs_per_image": conv_macs,
    }


def in_subprocess(args, model_name: str, setting: str) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--side",
        setting,
        "--models",
        model_name,
        "--batch",
        str(args.batch),
        "--size",
        str(args.size),
        "--steps",
        str(args.steps),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{model_name} {setting} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="d2l_resnet18,d2l_densenet")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=4, help="warm-up steps and timed steps (default 4)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--side", choices=SETTINGS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        ips = setting_images_per_s(args.models, args.side, args.batch, args.size, args.steps)
        print(json.dumps({"images_per_s": ips}))
        return
    models = args.models.split(",")
    print(
        f"machine: {machine()}; batch {args.batch} of 1x{args.size}x{args.size}; {args.steps} warm-up + "
        f"{args.steps} timed steps; {args.repeats} interleaved rounds",
        flush=True,
    )
    ips: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for m in models:
            for s in SETTINGS:
                ips.setdefault((m, s), []).append(in_subprocess(args, m, s))
    out = {"machine": machine(), "settings": [], "profile": {}}
    for m in models:
        prev = None
        for s in SETTINGS:
            v = ips[(m, s)]
            med = statistics.median(v)
            step_up = f"{med / prev:.2f}x over the row above" if prev else ""
            print(f"{m:<14} {s:<26} {med:8.1f} img/s [{min(v):.1f}-{max(v):.1f}]  {step_up}")
            out["settings"].append({"model": m, "setting": s, "images_per_s": v})
            prev = med
    for m in models:
        p = profile(m, args.batch, args.size, args.steps)
        out["profile"][m] = p
        fg, bg = p["forward_conv_gflops"] or 0.0, p["backward_conv_gflops"] or 0.0
        print(
            f"{m}: convolutions {p['conv_share']:.0%} of the step ({p['forward_conv_share']:.0%} forward); "
            f"nominal {fg:.0f} GFLOP/s forward, {bg:.0f} backward"
        )
    dump(args.json, out)


if __name__ == "__main__":
    main()
