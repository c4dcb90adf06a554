"""Batch transforms (data/transforms.py)."""

from __future__ import annotations

import pytest
import torch

from resdense.preprocess import normalize

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_normalize_is_the_formula_in_either_memory_layout(channels: int, channels_last: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, channels, 7, 5), dtype=torch.uint8, generator=g)
    if channels_last:  # how decoded photos arrive: (N, H, W, C) memory seen as (N, C, H, W)
        x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    mean, std = MEAN[:channels], STD[:channels]
    want = (x.double() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    got = normalize(x, mean, std)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    # each channel keeps its own statistics: a mix-up of the repeated pattern would shift these
    for c in range(channels):
        torch.testing.assert_close(got[:, c].double(), want[:, c], atol=1e-5, rtol=1e-5)
