"""Random numbers keyed on (seed, epoch, image): the per-image draws of the augmentations that must give an
image the same pixels wherever it is decoded and augmented (in memory or streamed, in any batch, on any
rank, in a resumed run).

A generator's stream depends on the order of the draws, so a batch's draws would depend on the batch and on
which images came before. Here each draw is a hash of (seed, epoch, image index, purpose, column), a
counter-based generator in the manner of Philox or JAX's keys, computed with a few int64 tensor operations
on the batch's own device.
"""

from __future__ import annotations

import math

import torch

MASK = 0xFFFFFFFF  # the hash works on 32-bit words held in int64 tensors


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    """``x * m`` modulo 2**32 for 32-bit ``x`` and ``m``, in two halves so no int64 product overflows."""
    return (x * (m & 0xFFFF) + (((x * (m >> 16)) & 0xFFFF) << 16)) & MASK


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (Wellons's "lowbias32" constants)."""
    x = x & MASK
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def image_keys(seed: int, epoch: int, indices: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per image (int64, on ``indices``' device) from the run's seed, the epoch and the
    image's index in its split."""
    base = mix32(mix32(torch.tensor(seed & MASK)) ^ (epoch & MASK))
    return mix32(base.to(indices.device) ^ (indices.long() & MASK))


def uniforms(keys: torch.Tensor, columns: int, purpose: int) -> torch.Tensor:
    """(N, columns) float32 in [0, 1): ``columns`` independent draws per key; ``purpose`` keeps the draws
    of different augmentations apart."""
    cols = mix32(torch.arange(columns, device=keys.device) + ((purpose & 0xFFFF) << 16))
    h = mix32(keys.view(-1, 1) ^ cols.view(1, -1))
    return (h >> 8).float() / float(1 << 24)  # 24 bits: exact in float32


def _log_gamma(u: torch.Tensor, shape: float) -> torch.Tensor:
    """The log of a Gamma(``shape``, 1) draw per row (logs: a small shape's draws underflow as numbers) from the uniforms ``u`` (N, 3K + 1): Marsaglia and Tsang's method with K
    candidates per row (the first accepted one is kept; K = 16 leaves a miss rarer than 1e-20) and, for a
    shape below 1, the boost ``Gamma(a) = Gamma(a + 1) * U**(1/a)``."""
    a = shape + 1.0 if shape < 1 else shape
    d = a - 1.0 / 3
    c = 1.0 / math.sqrt(9 * d)
    k = (u.shape[1] - 1) // 3
    u1, u2, u3 = u[:, :k], u[:, k : 2 * k], u[:, 2 * k : 3 * k]
    z = torch.sqrt(-2 * torch.log1p(-u1)) * torch.cos(2 * math.pi * u2)  # Box-Muller: one normal each
    v = (1 + c * z) ** 3
    ok = (v > 0) & (torch.log1p(-u3) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp(min=1e-30)))
    first = ok.float().argmax(1, keepdim=True)
    log_g = torch.log(d * v.clamp(min=1e-30)).gather(1, first).squeeze(1)
    if shape < 1:
        log_g = log_g + torch.log1p(-u[:, -1]) / shape
    return log_g


def betas(keys: torch.Tensor, alpha: float, purpose: int, candidates: int = 16) -> torch.Tensor:
    """Beta(``alpha``, ``alpha``) per key, as G1 / (G1 + G2) of two Gamma(``alpha``) draws (the sigmoid of
    their logs' difference)."""
    n = 3 * candidates + 1
    u = uniforms(keys, 2 * n, purpose)
    return torch.sigmoid(_log_gamma(u[:, :n], alpha) - _log_gamma(u[:, n:], alpha))
