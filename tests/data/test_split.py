"""The validation split: a fixed, disjoint draw out of the training set."""

from __future__ import annotations

import pytest
import torch

from resdense.data.dataset import ImageSet
from resdense.data.split import holdout


def numbered(n: int) -> ImageSet:
    # image i holds the value i in its first pixel, so every image is identifiable after the split
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n) % 10)


def ids(s: ImageSet) -> list[int]:
    return s.images[:, 0, 0, 0].tolist()


def test_holdout_is_disjoint_complete_and_keeps_labels():
    data = numbered(200)
    rest, val = holdout(data, 30)
    assert len(rest) == 170 and len(val) == 30
    assert sorted(ids(rest) + ids(val)) == list(range(200))
    assert ids(rest) == sorted(ids(rest)) and ids(val) == sorted(ids(val))  # order kept
    assert val.labels.tolist() == [i % 10 for i in ids(val)]
    assert ids(val) != list(range(170, 200)) and ids(val) != list(range(30))  # a random draw, not a slice


def test_holdout_is_the_same_draw_every_time():
    a = holdout(numbered(200), 30)[1]
    torch.manual_seed(123)  # the global seed (a run's --seed) does not move it
    b = holdout(numbered(200), 30)[1]
    assert ids(a) == ids(b)


@pytest.mark.parametrize("n", [0, -1, 200, 201])
def test_holdout_refuses_impossible_sizes(n):
    with pytest.raises(ValueError, match="validation split"):
        holdout(numbered(200), n)
