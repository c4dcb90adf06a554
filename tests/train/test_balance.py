"""Lopsided classes: the counts line, class weights, class-balanced sampling, and the batch capped to a small
training set."""

from __future__ import annotations

import pytest
import torch

from resdense.data.dataset import ImageSet
from resdense.errors import UserError
from resdense.train.balance import BalancedSampling, balanced, capped_batch_size, class_weights, counts_line
from resdense.train.config import TrainConfig, validate


def test_counts_line_says_unbalanced_and_the_way_out() -> None:
    line = counts_line(["boot", "bag"], [400, 100], "none")
    assert "boot 400, bag 100" in line and "unbalanced, 4.0x" in line and "--balance" in line
    assert "unbalanced" not in counts_line(["boot", "bag"], [110, 100], "none")
    assert "balanced by --balance loss" in counts_line(["boot", "bag"], [400, 100], "loss")


def test_class_weights_give_every_class_the_same_total() -> None:
    counts = [300, 100, 0, 50]
    w = class_weights(counts)
    totals = [float(w[k]) * n for k, n in enumerate(counts) if n]
    assert max(totals) == pytest.approx(min(totals)) and float(w[2]) == 0.0


def test_balanced_sampling_evens_the_classes_and_replays() -> None:
    labels = torch.tensor([0] * 900 + [1] * 100)
    s = BalancedSampling(ImageSet(torch.zeros(1000, 1, 2, 2, dtype=torch.uint8), labels))
    batches = list(s.train_batches(100, seed=0, epoch=3))
    drawn = torch.cat([y for _, y in batches])
    assert len(drawn) == 1000 and 0.4 < float((drawn == 1).float().mean()) < 0.6  # 10% in the data
    again = torch.cat([y for _, y in s.train_batches(100, seed=0, epoch=3)])
    assert torch.equal(drawn, again)  # (seed, epoch) decide: a resumed run replays the epoch
    # under two processes each takes its rows of the same global batches
    r0 = [y for _, y in s.train_batches(100, seed=0, epoch=3, rank=0, world_size=2)]
    r1 = [y for _, y in s.train_batches(100, seed=0, epoch=3, rank=1, world_size=2)]
    assert torch.equal(
        torch.stack([torch.stack([a, b], 1).flatten() for a, b in zip(r0, r1)]).flatten(), drawn
    )
    assert s.labels is labels and len(s.subset(10)) == 10
    assert balanced(s.split, "loss") is s.split
    with pytest.raises(UserError, match="--balance sampler"):
        balanced(object(), "sampler")


def test_batch_capped_to_the_data_and_balance_validated() -> None:
    assert capped_batch_size(128, 96) == 96 and capped_batch_size(128, 97, 2) == 96
    assert capped_batch_size(64, 96) == 64
    with pytest.raises(UserError, match="--balance: expected one of none, loss, sampler, got 'weights'"):
        validate(TrainConfig(balance="weights"))
