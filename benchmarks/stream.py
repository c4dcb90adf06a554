"""Streamed image folders: the pipeline's speed against torchvision's, training cost, memory.

Generates a folder of photo-sized JPEGs (default 5,000 at 500x375, 10 classes) under bench-data/ (ignored
by git), then measures, in one run:

1. pipeline alone (decode + random-resized crop 224 + flip + normalisation, no model), images/s: resdense's
   streamed folder against torchvision's ``ImageFolder`` + ``DataLoader`` with the same workers, batch and
   transforms (``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``), run
   alternately ``--rounds`` times, the receiving process at ``--main-threads`` torch threads (both sides);
   the median of the paired ratios, and their range;
   1b. the same per-file work alone, CPU ms per image in one process and one thread (``per_image``);
2. training images/s of resnet18 at 224 (SGD, batch ``--train-batch``): fed by the stream against the same
   steps on batches decoded beforehand and held in memory, alternately; median of the paired ratios;
3. resident memory (the training process plus its decoding workers) while streaming ``--memory-batches``
   batches of the folder at 1x and at 4x the images (the 4x folder links each file four times), each in
   a fresh process.

    python benchmarks/stream.py [--images 5000] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, dump, machine  # noqa: E402

DATA = ROOT.parent / "bench-data"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_photos(root: Path, n: int, size=(500, 375), classes: int = 10) -> Path:
    """``n`` JPEGs of smooth random colour fields plus grain (quality 90, about photo-sized files)."""
    from PIL import Image

    done = root / ".complete"
    if done.exists() and done.read_text() == str(n):
        return root
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (size[1] // 25, size[0] // 25, 3), dtype=np.uint8))
        img = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        img = img + rng.integers(-12, 13, img.shape, dtype=np.int16)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)
    done.write_text(str(n))
    return root


def linked_copies(src: Path, dst: Path, times: int) -> Path:
    """``times`` links to every file of ``src``: a folder of ``times`` x the images, on no extra disk."""
    if (dst / ".complete").exists():
        return dst
    for f in src.rglob("*.jpg"):
        for k in range(times):
            target = dst / f.parent.name / f"{k}-{f.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(f)
    (dst / ".complete").write_text(str(times))
    return dst


def resdense_stream(root: Path, workers: int):
    from resdense.data.stream import load_folder

    data, _ = load_folder(root, in_memory="no", augment="rrc-flip")
    # every image in train (a random split would hold some out): the folder's own files, all of them
    data.index.train, data.index.test = data.index.train + data.index.test, data.index.test[:1]
    train, _ = data.streams(size=224, augment="rrc-flip", workers=workers)
    return train


def time_resdense(root: Path, workers: int, batch: int) -> tuple[float, int]:
    from resdense.preprocess import normalize
    from resdense.utils.system import freed_memory_kept

    stream = resdense_stream(root, workers)
    t, n = time.perf_counter(), 0
    # as `resdense train` runs on a CPU: freed batch memory is reused, not handed back to the kernel and
    # zeroed again for the next batch (utils/system.py)
    with freed_memory_kept():
        for x, _ in stream.train_batches(batch, seed=0, epoch=0):
            x = normalize(x, MEAN, STD)  # what the training step does on the device
            n += len(x)
    return n / (time.perf_counter() - t), n


def time_torchvision(root: Path, workers: int, batch: int) -> tuple[float, int]:
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    ds = datasets.ImageFolder(str(root), tf)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True
    )
    t, n = time.perf_counter(), 0
    for x, _ in loader:
        n += len(x)
    return n / (time.perf_counter() - t), n


def per_image(root: Path, n: int, rounds: int) -> dict:
    """CPU milliseconds per image of each side's per-file work alone, one process, one thread, the sides
    taking turns on the same ``n`` files: resdense's PhotoTransform (decode + random-resized crop + flip,
    uint8) against torchvision's loader + RandomResizedCrop + flip + ToTensor + Normalize. Unlike the
    pipeline figure it leaves out what surrounds the workers (batching, the hand-over between processes, our
    normalisation of the batch in the training process)."""
    import random

    from PIL import Image
    from torchvision import transforms

    from resdense.data.photo import PhotoTransform

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    files = sorted(root.rglob("*.jpg"))[:n]
    ours_t = PhotoTransform(224, 3, crop="random", flip=True)
    tv_t = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )

    def tv(f, i):
        with open(f, "rb") as fh:  # torchvision's default loader
            return tv_t(Image.open(fh).convert("RGB"))

    sides = {"resdense_ms": lambda f, i: ours_t(f, random.Random(i)), "torchvision_ms": tv}
    out = {k: [] for k in sides}
    for _ in range(rounds):
        for k, fn in sides.items():
            t = time.process_time()
            for i, f in enumerate(files):
                fn(f, i)
            out[k].append((time.process_time() - t) / len(files) * 1e3)
    ratios = [b / a for a, b in zip(out["resdense_ms"], out["torchvision_ms"])]
    torch.set_num_threads(threads)
    return {**out, "ratios": ratios, "ratio": float(np.median(ratios))}


def train_ratio(root: Path, workers: int, batch: int, steps: int, rounds: int) -> dict:
    """resnet18 at 224: images/s fed by the stream vs from batches already in memory, alternately."""
    from resdense import create_model
    from resdense.preprocess import normalize

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    stream = resdense_stream(root, workers)

    def step(xb, yb):
        x = normalize(xb, MEAN, STD).contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(model(x), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    held = []
    for i, (x, y) in enumerate(stream.train_batches(batch, seed=0, epoch=99)):
        held.append((x.clone(), y.clone()))
        if i + 1 == steps:
            break
    step(*held[0])  # warm-up
    memory, streamed = [], []
    for r in range(rounds):
        t = time.perf_counter()
        for xb, yb in held:
            step(xb, yb)
        memory.append(steps * batch / (time.perf_counter() - t))
        t = time.perf_counter()
        for k, (xb, yb) in enumerate(stream.train_batches(batch, seed=0, epoch=r)):
            step(xb, yb)
            if k + 1 == steps:
                break
        streamed.append(steps * batch / (time.perf_counter() - t))
    ratios = [s / m for s, m in zip(streamed, memory)]  # paired: each round's two sides ran back to back
    return {
        "memory_img_s": memory,
        "stream_img_s": streamed,
        "ratios": ratios,
        "ratio": float(np.median(ratios)),
    }


MEMORY_CHILD = r"""
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
import stream as bench
from resdense.preprocess import normalize
root, workers, batches = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0

def children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return kids

s = bench.resdense_stream(root, workers)
peak_main = peak_total = 0
for i, (x, _) in enumerate(s.train_batches(64, seed=0, epoch=0)):
    normalize(x, bench.MEAN, bench.STD)
    main = rss_kb(os.getpid())
    total = main + sum(rss_kb(k) for k in children(os.getpid()))
    peak_main, peak_total = max(peak_main, main), max(peak_total, total)
    if i + 1 == batches:
        break
print(len(s), peak_main, peak_total)
"""


def memory(root: Path, workers: int, batches: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(root), str(workers), str(batches), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    )
    n, main, total = map(int, out.stdout.split())
    return {"images": n, "peak_rss_main_mib": main / 1024, "peak_rss_with_workers_mib": total / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--main-threads",
        type=int,
        default=1,
        help="torch threads of the receiving process during the pipeline measurement (default 1)",
    )
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=4)
    p.add_argument("--memory-batches", type=int, default=60)
    p.add_argument("--skip", nargs="*", default=[], choices=["pipeline", "per-image", "train", "memory"])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"machine: {machine()}", flush=True)
    root = make_photos(DATA / f"photos-{args.images}", args.images)
    result = {"machine": machine(), "images": args.images, "workers": args.workers}

    if "pipeline" not in args.skip:
        # Both sides' batches arrive in this process; with no model to train here, a second torch thread
        # has nothing to do but spin after each batch's normalisation (OpenMP's wait), at normal priority,
        # taking CPU from the decoding workers. In training both threads are busy with the model.
        threads = torch.get_num_threads()
        torch.set_num_threads(args.main_threads)
        ours, theirs = [], []
        for r in range(args.rounds):
            ours.append(time_resdense(root, args.workers, args.batch)[0])
            theirs.append(time_torchvision(root, args.workers, args.batch)[0])
            print(
                f"round {r + 1}: resdense stream {ours[-1]:,.1f} img/s, torchvision ImageFolder "
                f"{theirs[-1]:,.1f} img/s",
                flush=True,
            )
        torch.set_num_threads(threads)
        ratios = [a / b for a, b in zip(ours, theirs)]  # paired rounds, back to back
        result["pipeline"] = {
            "main_threads": args.main_threads,
            "resdense_img_s": ours,
            "torchvision_img_s": theirs,
            "ratios": ratios,
            "ratio": float(np.median(ratios)),
        }
        print(
            f"pipeline: median {np.median(ours):,.1f} vs {np.median(theirs):,.1f} img/s; paired ratio "
            f"median {np.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})",
            flush=True,
        )

    if "per-image" not in args.skip:
        pi = per_image(root, 300, args.rounds)
        result["per_image"] = pi
        print(
            f"per image, one thread: resdense {np.median(pi['resdense_ms']):.2f} ms, torchvision "
            f"{np.median(pi['torchvision_ms']):.2f} ms of CPU (medians); paired ratio median {pi['ratio']:.2f}x "
            f"(range {min(pi['ratios']):.2f}-{max(pi['ratios']):.2f})",
            flush=True,
        )

    if "train" not in args.skip:
        from resdense.utils.system import freed_memory_kept

        with freed_memory_kept():  # both sides, as `resdense train` runs on a CPU
            tr = train_ratio(root, args.workers, args.train_batch, args.train_steps, args.rounds)
        result["train_resnet18_224"] = tr
        print(
            f"resnet18 training: streamed {np.median(tr['stream_img_s']):.2f} img/s, from memory "
            f"{np.median(tr['memory_img_s']):.2f} img/s (medians); paired ratio median {tr['ratio']:.3f} "
            f"(range {min(tr['ratios']):.3f}-{max(tr['ratios']):.3f})",
            flush=True,
        )

    if "memory" not in args.skip:
        four = linked_copies(root, DATA / f"photos-{args.images}-x4", 4)
        m1 = memory(root, args.workers, args.memory_batches)
        m4 = memory(four, args.workers, args.memory_batches)
        result["memory"] = {"1x": m1, "4x": m4}
        for name, m in (("1x", m1), ("4x", m4)):
            print(
                f"memory {name} ({m['images']:,} images): main {m['peak_rss_main_mib']:,.0f} MiB, with "
                f"workers {m['peak_rss_with_workers_mib']:,.0f} MiB",
                flush=True,
            )
    dump(args.json, result)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
