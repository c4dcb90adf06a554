"""Which device and how many cores: the one place that reads them (training, serving and the data loaders ask)."""

from __future__ import annotations

import os

import torch

from ..errors import UserError


def resolve_device(name: str | None, option: str = "--device") -> torch.device:
    """``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``; a one-line error for
    a name that is no device or a GPU this machine lacks."""
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"{option}: {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} {name}: CUDA is not available on this machine")
    return dev


def local_world_size(default: int = 1) -> int:
    """Processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``; ``default`` where it is not set)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", default))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` shows it (``/proc/cpuinfo``'s "model name", with its family/model
    numbers on x86, since cloud CPUs often say only "AMD EPYC"), else ``platform.processor()``: every
    figure a run reports is recorded with the machine it was measured on."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = dict(
                (k.strip(), v.strip())
                for k, _, v in (line.partition(":") for line in f.read(1 << 16).splitlines())
            )
    except OSError:
        info = {}
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


def device_label(device: torch.device, world_size: int = 1) -> str:
    """The device in words for a run's summary: the GPU's name or the CPU's threads, times the processes."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({torch.get_num_threads()} threads)"
    return f"{name} x{world_size}" if world_size > 1 else name
