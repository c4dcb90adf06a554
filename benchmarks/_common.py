"""Shared bits of the benchmark scripts: machine description, the seed's baseline pipeline, printing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} vCPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )


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
