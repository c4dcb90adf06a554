"""The test-time views, in one place (``serve.predictor.tta_forward``): what each view feeds the model."""

from __future__ import annotations

import pytest
import torch

from resdense.serve.predictor import TTA_VIEWS, _shift, tta_forward, tta_views


def recorder():
    seen = []

    def run(x):
        seen.append(x.clone())
        return x.flatten(1)[:, :3].clone()

    return run, seen


def test_a_model_files_flag_names_its_views():
    assert tta_views(True) == "flip" and tta_views(False) == tta_views(None) == "none"
    assert all(tta_views(v) == v for v in TTA_VIEWS)
    with pytest.raises(ValueError, match="flip-translate"):
        tta_views("rotate")


def test_none_and_flip():
    x = torch.randn(2, 1, 8, 8)
    run, seen = recorder()
    torch.testing.assert_close(tta_forward(run, x, "none"), run(x))
    run, seen = recorder()
    out = tta_forward(run, x, True)
    assert len(seen) == 2 and torch.equal(seen[1], x.flip(-1))
    torch.testing.assert_close(out, 0.5 * (x.flatten(1)[:, :3] + x.flip(-1).flatten(1)[:, :3]))


def test_flip_translate_feeds_six_views_weighted_half_and_quarters():
    x = torch.randn(1, 1, 8, 8)
    run, seen = recorder()
    out = tta_forward(run, x, "flip-translate")
    assert len(seen) == 6
    assert torch.equal(seen[0], x) and torch.equal(seen[1], x.flip(-1))
    assert torch.equal(seen[2], _shift(x, 1, 1)) and torch.equal(seen[4], _shift(x, -1, -1))
    f = [v.flatten(1)[:, :3] for v in seen]
    torch.testing.assert_close(out, 0.25 * (f[0] + f[1]) + 0.125 * (f[2] + f[3] + f[4] + f[5]))


def test_shift_moves_the_content_diagonally_and_reflects_the_border():
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 2, 3] = 1.0
    moved = _shift(x, 1, 1)
    assert moved[0, 0].nonzero().tolist() == [[3, 4]]
    back = _shift(x, -1, -1)
    assert back[0, 0].nonzero().tolist() == [[1, 2]]
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 6, 6)
    assert _shift(ramp, 0, 1)[0, 0, 0].tolist() == [1.0, 0.0, 1.0, 2.0, 3.0, 4.0]  # reflected, not zeros


def test_a_constant_image_gives_the_same_logits_under_every_view():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.Flatten(), torch.nn.LazyLinear(4)
    )
    x = torch.full((2, 1, 8, 8), 0.7)
    with torch.no_grad():
        base = tta_forward(model, x, "none")
        for v in TTA_VIEWS:
            torch.testing.assert_close(tta_forward(model, x, v), base)
