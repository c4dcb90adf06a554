"""Process-level settings that the hardware rewards."""

from __future__ import annotations

import contextlib
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


# glibc's documented defaults (mallopt(3)): at most 65536 mmap'd blocks, trim the heap above 128 KiB
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024


@contextlib.contextmanager
def freed_memory_kept(enabled: bool = True):
    """:func:`keep_freed_memory` for the duration of a block; then glibc's defaults again and the unused heap
    handed back (``malloc_trim``), so a library call (``train()`` in a notebook) leaves the allocator as it
    was. One difference remains after the block: glibc's self-adjusting mmap threshold stays at its
    128 KiB default instead of adapting, as when MALLOC_TRIM_THRESHOLD_ is set. A process that already
    chose :func:`keep_freed_memory` for itself (a program) keeps it."""
    if not enabled or _tuned:
        yield _tuned
        return
    tuned = keep_freed_memory()
    try:
        yield tuned
    finally:
        if tuned:
            _restore_defaults()


def _restore_defaults() -> None:
    global _tuned
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim(0)
    _tuned = False
