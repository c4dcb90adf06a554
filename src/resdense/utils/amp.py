"""Whether bf16 autocast pays on this device: the one place that decides ``--amp auto``.

On CUDA, bf16 autocast is what a GPU with bf16 is for. On a CPU it depends on the chip: where oneDNN has a
native bf16 matrix unit (Intel AMX, ``amx_bf16``) a 3x3 convolution ran 4.2x faster in bf16 than in fp32
(benchmarks/RESULTS.md), while on CPUs that only emulate bf16 it is several times *slower*. The decision:

1. what torch and oneDNN report: no oneDNN, or no bf16 support in it (``torch.ops.mkldnn.
   _is_mkldnn_bf16_supported``): fp32, no probe;
2. otherwise a short probe (well under a second): a 64-channel 3x3 convolution's forward and backward at
   28x28, fp32 against bf16 autocast, interleaved, medians; bf16 when it is at least ``MIN_SPEEDUP`` times
   faster. Reported bf16 support is not enough: some CPUs with ``avx512_bf16`` but no AMX gain little.

The probe's answer is cached in the user cache (``$XDG_CACHE_HOME/resdense/amp.json``), keyed by the CPU model,
its bf16 flags and the torch version, so it runs once per machine and torch. ``$RESDENSE_AMP`` (``bf16`` or
``fp32``) answers ``auto`` without probing (for a fleet of alike machines, or a test suite that must
behave the same everywhere).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .io import write_text

AMP_MODES = ("auto", "yes", "no")
AMP_ENV = "RESDENSE_AMP"
MIN_SPEEDUP = 1.25  # bf16 must beat fp32 by this much in the probe: small convolutions gain less
CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16")


@dataclass(frozen=True)
class AmpDecision:
    enabled: bool  # bf16 autocast on
    reason: str  # one phrase for the console and the run's summary

    @property
    def dtype(self) -> str:
        return "bf16" if self.enabled else "fp32"


def amp_mode(value, device: torch.device | None = None) -> str:
    """The ``amp`` setting as one of AMP_MODES. ``True``/``False`` keep their meaning from before ``auto``
    (runs saved then, Python callers): ``True`` was bf16 on CUDA and fp32 on a CPU, so a resumed old run
    trains on as it began. Anything else is returned as given, for ``validate`` to reject."""
    if isinstance(value, bool):
        on_gpu = device is None or device.type == "cuda"
        return "yes" if value and on_gpu else "no"
    return value.lower() if isinstance(value, str) else value


def decide_amp(mode, device: torch.device) -> AmpDecision:
    """bf16 autocast or fp32 on ``device`` for ``--amp`` ``mode`` (auto, yes, no)."""
    mode = amp_mode(mode, device)
    if mode == "no":
        return AmpDecision(False, "--amp no")
    if mode == "yes":
        return AmpDecision(True, "--amp yes")
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return AmpDecision(ok, "CUDA with bf16" if ok else "this GPU has no bf16")
    if device.type != "cpu":
        return AmpDecision(False, f"auto: fp32 on {device.type}")
    forced = forced_precision()
    if forced is not None:
        return AmpDecision(forced == "bf16", f"${AMP_ENV}={forced}")
    return cpu_bf16_decision()


AMP_ENV_VALUES = ("bf16", "fp32")
_warned: set[str] = set()  # each unknown value said once per process, not once per run or rank


def forced_precision() -> str | None:
    """``$RESDENSE_AMP`` (bf16 or fp32) when set; any other value is warned about and ignored, not taken
    silently for "decide" (``RESDENSE_AMP=garbage`` once said nothing)."""
    raw = os.environ.get(AMP_ENV, "")
    forced = raw.strip().lower()
    if forced in AMP_ENV_VALUES:
        return forced
    if forced and raw not in _warned:
        _warned.add(raw)
        logging.getLogger("resdense").warning(
            f"${AMP_ENV}={raw!r} is not one of {', '.join(AMP_ENV_VALUES)}: ignored, --amp auto decides"
        )
    return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The bf16-related CPU features torch reports (empty on a torch too old to say)."""
    caps = getattr(torch.cpu, "get_capabilities", None)
    if caps is None:
        return []
    try:
        found = caps()
    except Exception:  # an unusual platform: no flags, the probe decides
        return []
    return [f for f in CPU_FLAGS if found.get(f)]


def cache_file() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "resdense" / "amp.json"


def cache_key() -> str:
    return f"{cpu_model()} | {','.join(cpu_flags()) or '-'} | torch {torch.__version__}"


def onednn_bf16() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:
        return False


def cpu_bf16_decision() -> AmpDecision:
    """``auto`` on this CPU: oneDNN's report, then the cached (or a new) probe."""
    if not onednn_bf16():
        return AmpDecision(False, "auto: oneDNN reports no bf16 on this CPU")
    key, path = cache_key(), cache_file()
    try:
        cache = json.loads(path.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if not (isinstance(entry, dict) and isinstance(entry.get("speedup"), int | float)):
        entry = {"speedup": round(probe_speedup(), 3), "measured": time.strftime("%Y-%m-%d")}
        cache[key] = entry
        try:  # a read-only home only costs the next run another probe
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps(cache, indent=1) + "\n")
        except OSError:
            pass
    x = float(entry["speedup"])
    verdict = "bf16" if x >= MIN_SPEEDUP else "fp32"
    return AmpDecision(x >= MIN_SPEEDUP, f"auto: {verdict}, a bf16 convolution probed {x:.2f}x fp32's speed")


def probe_speedup(rounds: int = 3, steps: int = 3) -> float:
    """fp32 time / bf16-autocast time of a 3x3 conv's forward and backward (64 channels, 28x28, batch 32,
    channels-last), interleaved, median of ``rounds``; its own seed, the caller's random state untouched."""
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        conv = nn.Conv2d(64, 64, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
        x = torch.randn(32, 64, 28, 28).contiguous(memory_format=torch.channels_last).requires_grad_()

    def run(bf16: bool, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = conv(x)
            y.float().square().mean().backward()
        return time.perf_counter() - t

    run(False, 1), run(True, 1)  # warm-up: oneDNN builds its kernels on the first call
    fp32, bf16 = [], []
    for _ in range(rounds):
        fp32.append(run(False, steps))
        bf16.append(run(True, steps))
    return statistics.median(fp32) / max(statistics.median(bf16), 1e-9)
