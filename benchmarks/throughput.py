"""Training images/s: resdense against the seed's own code (d2l's pipeline) and against timm's pipeline.

Three sides train the same network at the same batch size, resolution and learning rate; the baselines in
fp32, resdense as its recipe says (``--amp auto``: bf16 autocast on a GPU and on a CPU with a fast bf16 path
such as AMX; the d2l recipes too, since bf16 was shown to keep the book's numbers for both):

- ``seed``: the book's code as printed in the seed (``tests/models/d2l_seed.py``), fed the book's way:
  torchvision's FashionMNIST with ``Resize`` + ``ToTensor`` per image, a ``DataLoader`` with d2l's 4
  workers, and ``train_ch6``'s loop. Only for the d2l recipes (the book has no other network).
- ``timm``: timm's data pipeline (``create_dataset("torch/fashion_mnist")``, ``create_loader``, which
  builds the ``create_transform`` resize/normalise; ``no_aug``, 2 workers) and a standard training loop
  (timm's ``train_one_epoch`` without the extras) on resdense's model for the recipe, channels-last.
- ``ours``: resdense's own training epoch for the recipe.

Steady state: every side runs ``--steps`` warm-up steps, then ``--steps`` timed steps (the same warm-up on
all sides). Each side runs in a fresh process, and the sides take turns, ``--repeats`` rounds
(interleaved, so a noisy neighbour hits all sides alike); the table gives the median and the range.

End to end (``--end-to-end``, small images only): one full epoch over the 60,000 training images, timed
from before the data is read to the end of the epoch, for timm and ours: what a user waits for.

    python benchmarks/throughput.py [--quick] [--recipes d2l-resnet,d2l-densenet,fast] [--repeats 3]
                                    [--end-to-end] [--device cuda] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
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

from _common import dump, extract_fashion_mnist, get_recipe, machine  # noqa: E402
from resdense.data import load_dataset  # noqa: E402
from resdense.models import create_model  # noqa: E402
from resdense.train import Trainer  # noqa: E402
from resdense.train.setup import xavier_init  # noqa: E402
from resdense.utils.device import resolve_device  # noqa: E402
from resdense.utils.system import keep_freed_memory  # noqa: E402

BOOK_NETS = {"d2l-resnet": book_resnet, "d2l-densenet": book_densenet}
FASHION_MNIST_SIZE = 28


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_loop(batches, step, warmup: int, steps: int, device: torch.device) -> float:
    """images/s over ``steps`` batches of ``batches`` after ``warmup`` batches; ``step(X, y)`` trains."""
    t0, seen = None, 0
    for i, (X, y) in enumerate(batches):
        if i == warmup:
            _sync(device)
            t0, seen = time.perf_counter(), 0
        if i == warmup + steps:
            break
        step(X, y)
        seen += X.shape[0]
    _sync(device)
    if t0 is None or seen == 0:
        raise SystemExit(f"the data gave fewer than {warmup + 1} batches")
    return seen / (time.perf_counter() - t0)


def seed_side(recipe: str, steps: int, device: torch.device, root: Path) -> dict:
    """The book's train_ch6 inner loop on the book's data pipeline."""
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

    def step(X, y):
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

    return {"images_per_s": timed_loop(train_iter, step, steps, steps, device)}


def timm_side(recipe: str, steps: int, device: torch.device, root: Path, workers: int, epoch: int) -> dict:
    """timm's data pipeline and a standard loop (timm's train_one_epoch, bare) on the recipe's model."""
    from timm.data import create_dataset, create_loader

    cfg = get_recipe(recipe)
    size = cfg.resize or FASHION_MNIST_SIZE
    t_start = time.perf_counter()
    ds = create_dataset("torch/fashion_mnist", root=str(root), split="train", download=False)
    if epoch > 0:  # the first N images, as resdense's --train-subset takes them
        ds.data, ds.targets = ds.data[:epoch], ds.targets[:epoch]
    # resdense's statistics for this data set when the recipe normalises, none when it does not (d2l)
    mean, std = ((0.286,), (0.353,)) if cfg.normalize else ((0.0,), (1.0,))
    loader = create_loader(
        ds,
        input_size=(1, size, size),
        batch_size=cfg.batch_size,
        is_training=True,
        no_aug=True,
        mean=mean,
        std=std,
        crop_pct=1.0,
        num_workers=workers,
        device=device,
        use_prefetcher=False,
    )
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=10, in_chans=1, **cfg.model_options)
    if cfg.init == "xavier":
        xavier_init(model)
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.optimizer == "nesterov",
        weight_decay=cfg.weight_decay,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    model.train()

    def step(X, y):
        X, y = X.to(device), y.to(device)
        X = X.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    if epoch:
        n = 0
        for X, y in loader:
            step(X, y)
            n += X.shape[0]
        _sync(device)
        return {"end_to_end_s": time.perf_counter() - t_start, "images": n}
    return {"images_per_s": timed_loop(loader, step, steps, steps, device)}


def ours_side(recipe: str, steps: int, device: torch.device, compile: bool, epoch: int) -> dict:
    """resdense's own training epoch for the recipe."""
    cfg = get_recipe(recipe).with_overrides(device=str(device), compile=compile)
    if device.type == "cpu":
        keep_freed_memory()  # as train() does for its run (this process is ours: no need to undo it)
    t_start = time.perf_counter()
    dataset = load_dataset("fashion-mnist", progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        if epoch:
            trainer = Trainer(
                cfg.with_overrides(train_subset=max(epoch, 0)), dataset, Path(tmp), progress=False
            )
            r = trainer.train_epoch(0)
            _sync(device)
            return {
                "end_to_end_s": time.perf_counter() - t_start,
                "images": round(r["seconds"] * r["images_per_s"]),
            }
        # an epoch of `steps` batches warms up, the next one (same length) is timed
        cfg = cfg.with_overrides(train_subset=steps * cfg.batch_size)
        trainer = Trainer(cfg, dataset, Path(tmp), progress=False)
        trainer.train_epoch(0)
        return {"images_per_s": trainer.train_epoch(1)["images_per_s"], "macs": trainer.macs}


def measure_in_subprocess(side: str, recipe: str, args, compile: bool = False, epoch: int = 0) -> dict:
    """One side in a fresh process, so that neither side's process settings (threads, allocator) leak
    into the other's measurement."""
    cmd = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--recipes",
        recipe,
        "--steps",
        str(args.steps),
        "--device",
        args.device,
        "--workers",
        str(args.workers),
    ]
    cmd += (["--compile"] if compile else []) + (["--end-to-end", str(epoch)] if epoch else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{side} {recipe} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def seed_speed(steps: int = 4, device: str = "cpu") -> float:
    """The reference speed measure: the seed's d2l-resnet side (images/s), in a fresh process."""
    ns = argparse.Namespace(steps=steps, device=device, workers=2)
    return measure_in_subprocess("seed", "d2l-resnet", ns)["images_per_s"]


def side_main(args) -> None:
    device = resolve_device(args.device)
    recipe = args.recipes
    if args.side == "ours":
        print(json.dumps(ours_side(recipe, args.steps, device, args.compile, args.end_to_end)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = extract_fashion_mnist(Path(tmp))
        if args.side == "seed":
            print(json.dumps(seed_side(recipe, args.steps, device, root)))
        else:
            print(json.dumps(timm_side(recipe, args.steps, device, root, args.workers, args.end_to_end)))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 steps, 1 round (a check that it runs)")
    ap.add_argument("--recipes", default="d2l-resnet,d2l-densenet,fast")
    ap.add_argument("--steps", type=int, help="warm-up steps and timed steps per side (default 4, quick 2)")
    ap.add_argument("--repeats", type=int, help="interleaved rounds of all sides (default 3, quick 1)")
    ap.add_argument("--workers", type=int, default=2, help="timm loader workers (default 2)")
    ap.add_argument("--no-timm", action="store_true", help="leave the timm baseline out")
    ap.add_argument(
        "--end-to-end",
        type=int,
        nargs="?",
        const=-1,
        default=0,
        metavar="N",
        help="also one epoch end to end, timm vs ours (fast): all 60,000 images, or the first N",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="also time resdense with torch.compile")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--side", choices=["seed", "timm", "ours"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.steps = args.steps or (2 if args.quick else 4)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.side:
        return side_main(args)
    args.device = str(resolve_device(args.device))
    recipes = args.recipes.split(",")
    print(
        f"machine: {machine()}; {args.steps} warm-up + {args.steps} timed steps per side, {repeats} "
        f"interleaved rounds, each side in its own process",
        flush=True,
    )
    sides = {
        r: ([("seed", False)] if r in BOOK_NETS else [])
        + ([] if args.no_timm else [("timm", False)])
        + [("ours", False)]
        + ([("ours+compile", True)] if args.compile else [])
        for r in recipes
    }
    ips: dict[tuple[str, str], list[float]] = {}
    macs: dict[str, int] = {}
    for rnd in range(repeats):
        for recipe in recipes:
            for label, comp in sides[recipe]:
                r = measure_in_subprocess(label.split("+")[0], recipe, args, compile=comp)
                ips.setdefault((recipe, label), []).append(r["images_per_s"])
                if "macs" in r:
                    macs[recipe] = r["macs"]
                print(
                    f"  round {rnd + 1} {recipe:<13} {label:<13} {r['images_per_s']:8.1f} img/s", flush=True
                )
    results = []
    print(f"\n{'recipe':<13} {'side':<13} {'img/s median [range]':>26}  ratios of ours to it, median [range]")
    for recipe in recipes:
        ours = ips[(recipe, "ours")]
        for label, _ in sides[recipe]:
            v = ips[(recipe, label)]
            row = {"recipe": recipe, "side": label, "images_per_s": v, "median": statistics.median(v)}
            extra = ""
            if label != "ours":
                paired = [o / b for o, b in zip(ours, v)]  # rounds pair up: measured next to each other
                row["ours_over_it"] = paired
                extra = f"{statistics.median(paired):.2f}x [{min(paired):.2f}-{max(paired):.2f}]"
                if label == "ours+compile":
                    extra = f"(compile over eager) {extra}"
            if label == "ours" and macs.get(recipe):
                gflops = 3 * 2 * macs[recipe] * row["median"] / 1e9
                row["train_gflops"] = gflops
                extra = f"{gflops:.0f} nominal training GFLOP/s"
            results.append(row)
            print(f"{recipe:<13} {label:<13} {spread(v):>26}  {extra}")
    e2e = []
    if args.end_to_end and not args.no_timm:
        n = "60,000" if args.end_to_end < 0 else f"first {args.end_to_end:,}"
        print(f"\nend to end: one epoch of the {n} training images, from before the data is read")
        for rnd in range(repeats):
            for label in ("timm", "ours"):
                r = measure_in_subprocess(label, "fast", args, epoch=args.end_to_end)
                e2e.append({"side": label, "round": rnd, **r})
                print(
                    f"  round {rnd + 1} fast {label:<5} {r['end_to_end_s']:7.1f} s for {r['images']:,} images "
                    f"({r['images'] / r['end_to_end_s']:.0f} img/s)",
                    flush=True,
                )
        t = {s: [r["end_to_end_s"] for r in e2e if r["side"] == s] for s in ("timm", "ours")}
        ratios = [a / b for a, b in zip(t["timm"], t["ours"])]  # > 1: ours finishes sooner
        print(
            f"fast end to end: timm {spread(t['timm'])} s, ours {spread(t['ours'])} s; timm time / ours "
            f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        )
    dump(
        args.json,
        {
            "machine": machine(),
            "steps": args.steps,
            "repeats": repeats,
            "results": results,
            "end_to_end": e2e,
        },
    )


if __name__ == "__main__":
    main()
