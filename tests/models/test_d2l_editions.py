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


# -- the current edition's ResNeXt block (8.6) and the small-image ResNet-18 (13.6, 14.13) ---------------


@pytest.mark.parametrize(
    "args, kwargs, shape",
    [
        ((32, 16, 1), {}, (4, 32, 12, 12)),  # the book's own check: channels and size kept
        ((128, 16, 1), {"use_1x1conv": True, "strides": 2}, (4, 128, 6, 6)),  # the book's second check
        ((64, 8, 0.5), {"use_1x1conv": True}, (4, 64, 12, 12)),
    ],
)
def test_resnext_block_current_edition(args, kwargs, shape):
    x = torch.randn(4, 32, 12, 12)
    blk = _same(lambda: ours.ResNeXtBlock(*args, **kwargs), lambda: book.ResNeXtBlock(*args, **kwargs), x)
    assert blk(x).shape == shape
    assert blk.conv2.groups == int(round(args[0] * args[2])) // args[1]
    # resdense's eager form for a known input: the same layers, weights and outputs, no lazy ones left
    eager = _same(
        lambda: ours.ResNeXtBlock(*args, **kwargs, input_channels=32),
        lambda: book.ResNeXtBlock(*args, **kwargs),
        x,
    )
    assert not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in eager.parameters())


def book_key(key: str) -> str:
    """A ``d2l_resnet18_small`` state-dict key for the book's ``resnet18``'s (stem ``0``, stages ``1``..``4``)."""
    head, _, rest = key.partition(".")
    if head in ("0", "1"):
        return f"0.{head}.{rest}"
    if head.startswith("resnet_block"):
        return f"{head[-1]}.{rest}"
    assert head == "fc" and rest.startswith("1."), key
    return "7." + rest[2:]


@pytest.mark.parametrize("num_classes, in_channels, side", [(10, 3, 32), (10, 1, 28)])
def test_resnet18_small_is_the_books(num_classes, in_channels, side):
    from resdense.models import create_model

    torch.manual_seed(0)
    theirs = book.resnet18(num_classes, in_channels)
    x = torch.randn(2, in_channels, side, side)
    theirs(x)  # the book's lazy Residual blocks take their shapes from the first call
    theirs.train()
    for m in theirs.modules():  # running statistics the book's net would have after some training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    mine = create_model("d2l_resnet18_small", num_classes=num_classes, in_chans=in_channels)
    mapped = {book_key(k): v for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in mine.state_dict().items()}
    mine.load_state_dict(mapped, strict=True)
    theirs.eval(), mine.eval()
    torch.testing.assert_close(mine(x), theirs(x))
    assert sum(p.numel() for p in mine.parameters()) == sum(p.numel() for p in theirs.parameters())
