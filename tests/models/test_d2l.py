"""The d2l networks against the book's own code (d2l sections 8.6 and 8.7, as in the seed).

The reference is the book's code in ``tests/models/d2l_seed.py``, verbatim except for the ``d2l`` import; built
independently of ``resdense``, so any drift in our layer order, shapes or arithmetic shows up.
"""

import pytest
import torch
from torch import nn

from resdense.models import create_model
from resdense.models import d2l as ours
from tests.models.d2l_seed import (  # the book's code, the reference
    DenseBlock,
    Residual,
    book_densenet,
    book_resnet,
    conv_block,
    resnet_block,
    transition_block,
)

# --- tests -----------------------------------------------------------------------------------------------

PAIRS = {
    "resnet": (book_resnet, ours.d2l_resnet18, 11_178_378),
    "densenet": (book_densenet, ours.d2l_densenet, 758_226),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("which", PAIRS)
def test_parameter_count_is_the_books(which):
    book, build, expected = PAIRS[which]
    assert n_params(book()) == expected
    assert n_params(build()) == expected
    assert n_params(create_model(build.__name__)) == expected


@pytest.mark.parametrize("which", PAIRS)
def test_parameters_and_buffers_match_in_order(which):
    book, build, _ = PAIRS[which]
    ref, net = book(), build()
    assert [(k, tuple(p.shape)) for k, p in ref.named_parameters()] == [
        (k, tuple(p.shape)) for k, p in net.named_parameters()
    ]
    assert [(k, tuple(b.shape)) for k, b in ref.named_buffers()] == [
        (k, tuple(b.shape)) for k, b in net.named_buffers()
    ]
    # the same top-level children, of the same kinds, in the same order
    assert [type(m).__name__ for m in ref] == [type(m).__name__ for m in net]


@pytest.mark.parametrize("which", PAIRS)
def test_book_state_dict_loads_strictly_and_outputs_match(which):
    book, build, _ = PAIRS[which]
    torch.manual_seed(0)
    ref, net = book(), build()
    net.load_state_dict(ref.state_dict(), strict=True)
    ref.train()
    net.train()
    # a few training-mode passes: outputs agree, and the running statistics evolve identically
    for step in range(3):
        x = torch.randn(2, 1, 96, 96) * (1 + step)
        y_ref, y = ref(x), net(x)
        assert y.shape == (2, 10)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for (k, a), (k2, b) in zip(ref.state_dict().items(), net.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=f"{k} differs")
    ref.eval()
    net.eval()
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", PAIRS)
def test_gradients_match_the_books(which):
    book, build, _ = PAIRS[which]
    torch.manual_seed(1)
    ref, net = book(), build()
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 1, 96, 96)
    ref(x).square().sum().backward()
    net(x).square().sum().backward()
    for (k, a), (_, b) in zip(ref.named_parameters(), net.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=f"gradient of {k} differs")


@pytest.mark.parametrize("which", PAIRS)
def test_our_weights_load_into_the_book_net(which):
    book, build, _ = PAIRS[which]
    torch.manual_seed(2)
    net, ref = build(), book()
    ref.load_state_dict(net.state_dict(), strict=True)
    net.eval()
    ref.eval()
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)


def test_residual_keeps_the_books_signature():
    assert ours.Residual(3, 3)(torch.rand(4, 3, 6, 6)).shape == (4, 3, 6, 6)
    blk = ours.Residual(3, 6, use_1x1conv=True, strides=2)
    assert blk(torch.rand(4, 3, 6, 6)).shape == (4, 6, 3, 3)
    assert blk.conv3 is not None and blk.conv3.kernel_size == (1, 1)
    assert ours.Residual(3, 3).conv3 is None


def test_residual_computes_what_the_book_does():
    torch.manual_seed(3)
    ref = Residual(3, 6, use_1x1conv=True, strides=2)
    blk = ours.Residual(3, 6, use_1x1conv=True, strides=2)
    blk.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(4, 3, 6, 6)
    torch.testing.assert_close(blk(x), ref(x))


def test_resnet_block_is_a_list_of_residuals():
    blk = ours.resnet_block(64, 128, 2)
    assert isinstance(blk, list) and len(blk) == 2
    assert blk[0].conv3 is not None and blk[0].conv1.stride == (2, 2)
    assert blk[1].conv3 is None and blk[1].conv1.stride == (1, 1)
    assert all(b.conv3 is None for b in ours.resnet_block(64, 64, 2, first_block=True))
    assert [n_params(b) for b in blk] == [n_params(b) for b in resnet_block(64, 128, 2)]


def test_dense_block_keeps_the_books_signature():
    blk = ours.DenseBlock(2, 3, 10)
    x = torch.randn(4, 3, 8, 8)
    y = blk(x)
    assert y.shape == (4, 23, 8, 8)
    torch.testing.assert_close(y[:, :3], x)  # the input is passed on unchanged as the first channels
    torch.manual_seed(4)
    ref = DenseBlock(2, 3, 10)
    blk.load_state_dict(ref.state_dict(), strict=True)
    torch.testing.assert_close(blk(x), ref(x))


def test_conv_block_and_transition_block():
    assert ours.conv_block(3, 10)(torch.randn(2, 3, 8, 8)).shape == (2, 10, 8, 8)
    assert [type(m) for m in ours.conv_block(3, 10)] == [type(m) for m in conv_block(3, 10)]
    blk = ours.transition_block(23, 10)
    assert blk(torch.randn(4, 23, 8, 8)).shape == (4, 10, 4, 4)
    assert [type(m) for m in blk] == [type(m) for m in transition_block(23, 10)]


def test_the_books_shape_walkthrough_at_96():
    """The shapes the book prints layer by layer for one 1x96x96 image."""
    x = torch.rand(1, 1, 96, 96)
    shapes = []
    for layer in ours.d2l_resnet18():
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [
        (64, 24, 24),
        (64, 24, 24),
        (128, 12, 12),
        (256, 6, 6),
        (512, 3, 3),
        (512, 1, 1),
        (512,),
        (10,),
    ]
