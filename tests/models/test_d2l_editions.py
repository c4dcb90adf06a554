"""Both editions of the book's calls build the book's blocks (issue 23: ``Residual(3)`` failed here).

The seed's edition writes ``Residual(input_channels, num_channels, ...)``; the current edition writes
``Residual(num_channels, ...)`` with lazy layers. Each reader's call must work and compute what their book's
code computes: the same initial weights from the same seed, and the same outputs.
"""

import pytest
import torch

from resdense.models import d2l as ours

from . import d2l_current as book


def _same(make_ours, make_book, x):
    torch.manual_seed(7)
    a = make_ours()
    ya = a(x)
    torch.manual_seed(7)
    b = make_book()
    yb = b(x)
    torch.testing.assert_close(ya, yb)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [
        (k, v.shape) for k, v in b.state_dict().items()
    ]
    return a


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.Residual(6),
        lambda m: m.Residual(6, use_1x1conv=True, strides=2),
        lambda m: m.Residual(6, True, 2),
        lambda m: m.Residual(num_channels=6, use_1x1conv=True),
    ],
)
def test_residual_current_edition(call):
    x = torch.randn(2, 6, 8, 8)  # 6 channels in: a block without the 1x1 conv keeps the channels
    blk = _same(lambda: call(ours), lambda: call(book), x)
    assert isinstance(blk.conv1, torch.nn.Conv2d) and blk.conv1.in_channels == 6  # materialised


def test_residual_seed_edition_is_unchanged():
    blk = ours.Residual(3, 6, use_1x1conv=True, strides=2)
    assert not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in blk.parameters())
    assert blk(torch.randn(2, 3, 8, 8)).shape == (2, 6, 4, 4)
    assert ours.Residual(3, 6, True, 2).conv1.stride == (2, 2)


def test_dense_and_transition_blocks_current_edition():
    x = torch.randn(2, 3, 8, 8)
    y = _same(lambda: ours.DenseBlock(2, 10), lambda: book.DenseBlock(2, 10), x)(x)
    assert y.shape == (2, 23, 8, 8)
    _same(lambda: ours.conv_block(10), lambda: book.conv_block(10), x)
    _same(lambda: ours.transition_block(10), lambda: book.transition_block(10), torch.randn(2, 23, 8, 8))


def test_no_channels_at_all_is_a_clear_error():
    with pytest.raises(TypeError, match="num_channels"):
        ours.Residual()
