"""The schedule: the learning rate of each step, the side of each epoch, which epochs are scored."""

from __future__ import annotations

import math

import pytest

from resdense.train import TrainConfig
from resdense.train import schedule as S


@pytest.mark.parametrize(
    "schedule, expect",
    [
        ("constant", lambda t: 1.0),
        ("linear", lambda t: 1 - t),
        ("cosine", lambda t: 0.5 * (1 + math.cos(math.pi * t))),
        ("step", lambda t: 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01),  # He et al.'s CIFAR decay
    ],
)
def test_lr_schedules(schedule, expect):
    cfg = TrainConfig(lr=0.2, schedule=schedule)
    total = 40
    for step in (0, 10, 19, 20, 29, 30, 39):
        assert S.lr_at(cfg, step, total, 10) == pytest.approx(0.2 * expect(step / total))


def test_onecycle_is_a_triangle_with_warmup():
    cfg = TrainConfig(lr=1.0, schedule="onecycle")
    lrs = [S.lr_at(cfg, s, 100, 10) for s in range(100)]
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 20
    assert lrs[0] == 0.0 and lrs[-1] == pytest.approx(0.01 / 0.8)  # falls to zero at the end
    cfg = TrainConfig(lr=1.0, schedule="constant", warmup_epochs=1)
    assert [S.lr_at(cfg, s, 100, 10) for s in (0, 4, 9, 10, 50)] == pytest.approx([0.1, 0.5, 1, 1, 1])


def test_progressive_resizing_schedule():
    """The side grows linearly from --progressive-from to the full size, reached after the stated fraction
    of the epochs and kept to the end; off (0) or not smaller than the data, it is the full size."""
    cfg = TrainConfig(epochs=8, progressive_from=16, progressive_until=0.75)
    sides = [S.size_at(cfg, e, 28) for e in range(8)]
    assert sides[0] == 16 and sides[5:] == [28, 28, 28], sides
    assert sides == sorted(sides) and len(set(sides[:6])) == 6, sides
    assert [S.size_at(TrainConfig(epochs=8), e, 28) for e in range(8)] == [28] * 8
    assert S.size_at(TrainConfig(epochs=3, progressive_from=32), 0, 28) == 28
    # the last epoch is always at the full size, whatever the fraction: a 1-epoch run never shrinks
    assert S.size_at(TrainConfig(epochs=1, progressive_from=16), 0, 28) == 28
    assert [
        S.size_at(TrainConfig(epochs=4, progressive_from=16, progressive_until=1), e, 28) for e in range(4)
    ] == [16, 20, 24, 28]


def test_which_epochs_are_scored():
    """The last epoch always; the others every --eval-every epochs (0: none), never one trained on
    downscaled images."""
    scored = lambda cfg: [e + 1 for e in range(cfg.epochs) if S.evaluates_at(cfg, e, 28)]  # noqa: E731
    assert scored(TrainConfig(epochs=4)) == [1, 2, 3, 4]
    assert scored(TrainConfig(epochs=7, eval_every=3)) == [3, 6, 7]
    assert scored(TrainConfig(epochs=5, eval_every=0)) == [5]
    # fast's schedule: 16, 19, 22, 25, 28, 28, 28 px; only the full-size epochs are scored
    assert scored(TrainConfig(epochs=7, progressive_from=16)) == [5, 6, 7]
    assert scored(TrainConfig(epochs=1, progressive_from=16, eval_every=0)) == [1]
