"""Process-level settings that the hardware rewards."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_tuned = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed memory instead of returning it to the kernel.

    A CPU training step allocates and frees the same large activation tensors every step. By default
    glibc serves each block over 32 MiB with a fresh mmap and unmaps it on free, so every step pays the
    kernel to map and zero gigabytes of pages again (on a 2-vCPU machine, a third of the step's time went
    to the kernel). Serving them from the heap and never trimming it keeps the pages mapped: the same
    effect as running under jemalloc or tcmalloc, which PyTorch's CPU tuning guide recommends. Returns
    whether the setting took (glibc on Linux only); harmless elsewhere.
    """
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _tuned = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _tuned
