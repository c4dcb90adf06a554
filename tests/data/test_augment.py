"""The fine-tuning transforms: random-resized-crop boxes, the batched crop-and-resize, the centre crop."""

from __future__ import annotations

import torch

from resdense.data.augment import crop_resize, random_resized_crop, random_resized_crop_params
from resdense.preprocess import Preprocess, center_crop, resize


def test_boxes_fit_and_follow_scale_and_ratio() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = random_resized_crop_params(2000, 60, 80, scale=(0.08, 1.0), generator=g)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 60).all() and (left + w <= 80).all()
    area = (h * w).float() / (60 * 80)
    assert area.min() >= 0.05 and area.max() <= 1.0
    ratio = w.float() / h.float()
    assert ratio.min() > 0.7 and ratio.max() < 1.45  # 3/4..4/3, up to rounding
    assert area.std() > 0.1  # really random
    again = random_resized_crop_params(2000, 60, 80, generator=torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)


def test_fallback_when_nothing_fits() -> None:
    # a 4x100 strip: no box of area >= 90% within ratio 3/4..4/3 fits; the centred fallback is used
    boxes = random_resized_crop_params(
        5, 4, 100, scale=(0.9, 1.0), generator=torch.Generator().manual_seed(0)
    )
    assert boxes.tolist() == [[0, 47, 4, 5]] * 5


def test_crop_resize_whole_box_is_a_resize_and_a_part_is_that_part() -> None:
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16)
    whole = torch.tensor([[0, 0, 16, 16]] * 2)
    torch.testing.assert_close(crop_resize(x, whole, 16), x)
    part = torch.tensor([[4, 2, 8, 8], [0, 8, 8, 8]])
    out = crop_resize(x, part, 8)
    torch.testing.assert_close(out[0], x[0, :, 4:12, 2:10])
    torch.testing.assert_close(out[1], x[1, :, 0:8, 8:16])
    u8 = random_resized_crop(torch.randint(0, 256, (3, 3, 40, 30), dtype=torch.uint8), 24)
    assert u8.shape == (3, 3, 24, 24) and u8.dtype == torch.uint8


def test_center_crop_and_preprocess_with_crop() -> None:
    x = torch.arange(10 * 10, dtype=torch.uint8).view(1, 1, 10, 10)
    assert torch.equal(center_crop(x, 6), x[..., 2:8, 2:8])
    p = Preprocess(resize=12, mean=(0.0,), std=(1.0,), in_chans=1, crop=8)
    assert p.input_size == 8 and p(x).shape == (1, 1, 8, 8)
    torch.testing.assert_close(p(x), center_crop(resize(x, 12), 8).float() / 255)
    assert Preprocess.from_dict(p.to_dict()) == p
    old = {"size": 28, "mean": [0.1], "std": [0.2], "in_chans": 1}  # files saved before crop existed
    assert Preprocess.from_dict(old).crop is None and "crop" not in Preprocess.from_dict(old).to_dict()
