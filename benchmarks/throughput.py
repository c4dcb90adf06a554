"""Training images/s of the d2l recipes: resdense against the seed's own code fed by d2l's data pipeline.

Both sides train the same network (the book's ResNet-18 / DenseNet), at the same batch size (256),
resolution (96x96) and learning rate, in fp32 on the CPU (on a GPU resdense uses bf16 autocast, the book
fp32). The baseline is the book's code as printed in the seed, fed the book's way: torchvision's
FashionMNIST with ``Resize(96)`` and ``ToTensor`` per image, a ``DataLoader`` with d2l's 4 workers, and
``train_ch6``'s loop. Both are timed over the same number of steps after warm-up, in this one run.

    python benchmarks/throughput.py [--quick] [--recipes d2l-resnet,d2l-densenet] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the seed reference lives in tests/
from tests.models.d2l_seed import book_densenet, book_resnet  # noqa: E402

from _common import dump, extract_fashion_mnist, machine  # noqa: E402
from resdense.data import load_dataset  # noqa: E402
from resdense.train.engine import Trainer, resolve_device  # noqa: E402
from resdense.train.recipes import get_recipe  # noqa: E402
from resdense.utils.system import keep_freed_memory  # noqa: E402

BOOK_NETS = {"d2l-resnet": book_resnet, "d2l-densenet": book_densenet}


def seed_images_per_s(recipe: str, steps: int, warmup: int, device: torch.device, root: Path) -> float:
    """The book's train_ch6 inner loop on the book's data pipeline; images/s over ``steps`` batches."""
    import torchvision
    from torch.utils import data
    from torchvision import transforms

    cfg = get_recipe(recipe)
    net = BOOK_NETS[recipe]()

    def init_weights(m):
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)

    net.apply(init_weights)
    net.to(device)
    trans = transforms.Compose([transforms.Resize(cfg.resize), transforms.ToTensor()])
    train = torchvision.datasets.FashionMNIST(root=str(root), train=True, transform=trans, download=False)
    train_iter = data.DataLoader(train, cfg.batch_size, shuffle=True, num_workers=4)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    loss = nn.CrossEntropyLoss()
    net.train()
    metric = [0.0, 0.0, 0]
    t0, seen = None, 0
    for i, (X, y) in enumerate(train_iter):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, seen = time.perf_counter(), 0
        if i == warmup + steps:
            break
        optimizer.zero_grad()
        X, y = X.to(device), y.to(device)
        y_hat = net(X)
        l = loss(y_hat, y)
        l.backward()
        optimizer.step()
        with torch.no_grad():  # d2l's Accumulator: loss sum, correct count, examples
            metric[0] += float(l * X.shape[0])
            metric[1] += float((y_hat.argmax(axis=1).type(y.dtype) == y).type(y.dtype).sum())
            metric[2] += X.shape[0]
        seen += X.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def resdense_images_per_s(recipe: str, steps: int, device: torch.device, dataset, compile: bool) -> float:
    """resdense's own training epoch for the recipe, timed on its second pass (the first warms up)."""
    cfg = get_recipe(recipe)
    cfg = cfg.with_overrides(train_subset=steps * cfg.batch_size, device=str(device), compile=compile)
    if device.type == "cpu":
        keep_freed_memory()  # as train() does for its run (this process is ours: no need to undo it)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, dataset, Path(tmp), progress=False)
        trainer.train_epoch(0)
        return trainer.train_epoch(1)["images_per_s"], trainer.macs


def measure_in_subprocess(side: str, recipe: str, steps: int, device: str, compile: bool) -> dict:
    """One side in a fresh process, so that neither side's process settings (threads, allocator) leak
    into the other's measurement."""
    cmd = [sys.executable, __file__, "--side", side, "--recipes", recipe, "--steps", str(steps),
           "--device", device] + (["--compile"] if compile else [])  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{side} {recipe} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def side_main(args) -> None:
    device = resolve_device(args.device)
    recipe = args.recipes
    if args.side == "seed":
        with tempfile.TemporaryDirectory() as tmp:
            root = extract_fashion_mnist(Path(tmp))
            print(json.dumps({"images_per_s": seed_images_per_s(recipe, args.steps, 1, device, root)}))
    else:
        dataset = load_dataset("fashion-mnist", progress=False)
        ips, macs = resdense_images_per_s(recipe, args.steps, device, dataset, args.compile)
        print(json.dumps({"images_per_s": ips, "macs": macs}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps only (about 3 minutes on 2 vCPUs)")
    ap.add_argument("--recipes", default="d2l-resnet,d2l-densenet")
    ap.add_argument("--steps", type=int, help="timed steps per side (default 8, quick 2)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="also time resdense with torch.compile")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--side", choices=["seed", "ours"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    steps = args.steps or (2 if args.quick else 8)
    if args.side:
        args.steps = steps
        return side_main(args)
    device = str(resolve_device(args.device))
    print(f"machine: {machine()}; {steps} timed steps of batch 256 per side, each side in its own process")
    results = []
    for recipe in args.recipes.split(","):
        base = measure_in_subprocess("seed", recipe, steps, device, False)["images_per_s"]
        for label, comp in [("resdense", False)] + ([("resdense+compile", True)] if args.compile else []):
            r = measure_in_subprocess("ours", recipe, steps, device, comp)
            ours, macs = r["images_per_s"], r["macs"]
            gflops = 3 * 2 * macs * ours / 1e9
            row = {"recipe": recipe, "variant": label, "seed_images_per_s": base,
                   "images_per_s": ours, "ratio": ours / base, "train_gflops": gflops}  # fmt: skip
            results.append(row)
            print(f"{recipe:<13} {label:<17} seed+d2l pipeline {base:8.1f} img/s | ours {ours:8.1f} img/s "
                  f"| ratio {ours / base:5.2f}x | {gflops:6.1f} GFLOP/s training", flush=True)  # fmt: skip
    dump(args.json, {"machine": machine(), "steps": steps, "results": results})


if __name__ == "__main__":
    main()
