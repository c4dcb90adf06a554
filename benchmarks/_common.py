"""Shared bits of the benchmark scripts: machine description, the seed's baseline pipeline, printing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    from resdense.utils.amp import cpu_model  # the one reader of /proc/cpuinfo's model name

    return f"{cpu_model()}, {os.cpu_count()} vCPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def extract_fashion_mnist(dest: Path) -> Path:
    """Lay the raw IDX files out where torchvision's FashionMNIST looks (root/FashionMNIST/raw/)."""
    from resdense.data.fashion_mnist import find_idx_files, load_fashion_mnist
    from resdense.data.idx import read_idx_bytes

    src = find_idx_files(load_fashion_mnist(progress=False).source)
    raw = dest / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, path in src.items():
        (raw / name).write_bytes(read_idx_bytes(path))
    return dest


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def dump(path: Path | None, obj) -> None:
    if path:
        path.write_text(json.dumps(obj, indent=2) + "\n")


# ``benchmarks/gpu.sh smoke`` sets this: every recipe a benchmark asks for comes at toy size (a tiny subset,
# one epoch, small batches and images), so each step of the GPU check runs in seconds on a CPU
SMOKE_ENV = "RESDENSE_BENCH_SMOKE"


def smoke() -> bool:
    return os.environ.get(SMOKE_ENV) == "1"


def get_recipe(name: str):
    """The named recipe, or under ``SMOKE_ENV`` its toy version."""
    from resdense.train import get_recipe as recipe

    cfg = recipe(name)
    if not smoke():
        return cfg
    toy = {"epochs": 1, "batch_size": 8, "train_subset": 64, "eval_batch_size": 256, "compile": False}
    if cfg.resize:
        toy["resize"] = min(cfg.resize, 32)
    if cfg.model == "resnet20":
        toy["model_options"] = {"widths": (4, 8, 16)}
    return cfg.with_overrides(**toy)
