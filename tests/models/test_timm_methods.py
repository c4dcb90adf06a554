"""timm's model methods on resdense's models, checked against timm itself on the same weights where timm has
the family (ResNet-18/50, DenseNet-121), and against the nets' own blocks where it has not (the book's nets,
the CIFAR nets): ``forward_intermediates``, ``prune_intermediate_layers``, ``feature_info``,
``create_model(pretrained=, features_only=, out_indices=)``, ``num_classes``, ``reset_classifier`` and
``set_grad_checkpointing``."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import resdense
from resdense.models import FeatureListNet, create_model
from resdense.models.builder import default_weights
from resdense.models.hub import PretrainedError

timm = pytest.importorskip("timm")  # a dev dependency

TIMM_NAMES = ["resnet18", "resnet50", "densenet121"]
MODELS_DIR = Path(resdense.__file__).parent / "models"


def _randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights and batch-norm statistics far from their initial values, so that a wrong point shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _pair(name: str) -> tuple[nn.Module, nn.Module]:
    """timm's model and ours, with the same (random) weights."""
    theirs = _randomized(timm.create_model(name, pretrained=False))
    ours = create_model(name, pretrained=False).eval()
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module", params=TIMM_NAMES)
def pair(request):
    torch.manual_seed(0)
    return request.param, *_pair(request.param)


@torch.no_grad()
def test_points_and_outputs_equal_timms(pair):
    name, theirs, ours = pair
    x = torch.randn(2, 3, 64, 64)
    assert [(d["num_chs"], d["reduction"]) for d in ours.feature_info] == [
        (d["num_chs"], d["reduction"]) for d in theirs.feature_info
    ]
    for kwargs in [
        {},
        {"indices": 2},
        {"indices": [0, -1]},
        {"indices": [1, 3], "stop_early": True},
        {"indices": 1, "norm": True},
        {"indices": [0], "stop_early": True},
    ]:
        final_t, inter_t = theirs.forward_intermediates(x, **kwargs)
        final_o, inter_o = ours.forward_intermediates(x, **kwargs)
        assert len(inter_o) == len(inter_t), kwargs
        assert all(_close(o, t) for o, t in zip(inter_o, inter_t)), kwargs
        assert _close(final_o, final_t), kwargs
    only = ours.forward_intermediates(x, indices=3, intermediates_only=True)
    assert isinstance(only, list) and len(only) == 3
    assert all(
        _close(o, t) for o, t in zip(only, theirs.forward_intermediates(x, 3, intermediates_only=True))
    )
    # the whole forward and the features too
    assert _close(ours.forward_features(x), theirs.forward_features(x))
    assert _close(ours(x), theirs(x))


@pytest.mark.parametrize("keep", [[1, 2], [0], 2])
@torch.no_grad()
def test_prune_intermediate_layers_equals_timms(pair, keep):
    name, theirs, ours = copy.deepcopy(pair)
    x = torch.randn(1, 3, 64, 64)
    kept = ours.prune_intermediate_layers(keep)
    assert kept == theirs.prune_intermediate_layers(keep)
    assert ours.num_classes == theirs.num_classes == 0
    final_t, inter_t = theirs.forward_intermediates(x, kept)
    final_o, inter_o = ours.forward_intermediates(x, kept)
    assert all(_close(o, t) for o, t in zip(inter_o, inter_t)) and _close(final_o, final_t)
    # what was cut is gone from the state dict: the stages after the last kept point, and the head
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert _close(ours(x), theirs(x))  # no pooling, no classifier: the last kept point's map


def test_feature_extractor_matches_timms_feature_info():
    for name in TIMM_NAMES:
        theirs = timm.create_model(name, pretrained=False, features_only=True, out_indices=(1, 3))
        ours = create_model(name, features_only=True, out_indices=(1, 3))
        assert isinstance(ours, FeatureListNet)
        assert ours.feature_info.channels() == theirs.feature_info.channels()
        assert ours.feature_info.reduction() == theirs.feature_info.reduction()
        assert ours.feature_info.module_name() == [ours.model.feature_info[i]["module"] for i in (1, 3)]
        maps = ours(torch.randn(1, 3, 64, 64))
        assert [m.shape[1] for m in maps] == ours.feature_info.channels()
        assert [64 // m.shape[-1] for m in maps] == ours.feature_info.reduction()


@torch.no_grad()
def test_feature_extractor_outputs_equal_the_full_models_points():
    torch.manual_seed(0)
    full = _randomized(create_model("densenet121"))
    features = FeatureListNet(copy.deepcopy(full), out_indices=(0, -1)).eval()
    assert features.out_indices == (0, 4)
    x = torch.randn(1, 3, 64, 64)
    want = full.forward_intermediates(x, [0, 4], intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(features(x), want))
    # all points by default, for the CIFAR nets too
    small = create_model("resnet20", features_only=True)
    assert small.feature_info.channels() == [16, 16, 32, 64]
    assert small.feature_info.reduction() == [1, 1, 2, 4]
    assert [m.shape[1] for m in small(torch.randn(2, 3, 32, 32))] == [16, 16, 32, 64]
    with pytest.raises(ValueError, match="out of range"):
        create_model("resnet20", features_only=True, out_indices=(4,))
    with pytest.raises(ValueError, match="features_only"):
        create_model("resnet20", out_indices=(1,))


@torch.no_grad()
def test_reset_classifier_and_global_pool_as_timms():
    theirs, ours = _pair("resnet18")
    x = torch.randn(2, 3, 64, 64)
    for n, pool in [(5, None), (0, "max"), (0, ""), (3, "avg")]:
        theirs.reset_classifier(n, pool)
        ours.reset_classifier(n, pool)
        assert ours.num_classes == theirs.num_classes == n
        if n == 0:  # no classifier to compare weights of: the pooled (or not) features
            assert _close(ours(x), theirs(x)), pool
        else:
            assert ours(x).shape == theirs(x).shape == (2, n)
            assert ours.pretrained_cfg.num_classes == n
    with pytest.raises(ValueError, match="global_pool"):
        ours.reset_classifier(3, "median")
    with pytest.raises(ValueError, match="num_classes=0 only"):
        ours.reset_classifier(3, "")
    # the book's nets swap their pool and flatten children; the keys stay the book's
    d2l = create_model("d2l_resnet18")
    keys = set(d2l.state_dict())
    d2l.reset_classifier(4, "max")
    assert set(d2l.state_dict()) == keys and d2l(torch.randn(2, 1, 64, 64)).shape == (2, 4)


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet18", "densenet_bc_40", "d2l_resnet18", "resnet9"])
def test_grad_checkpointing_keeps_outputs_gradients_and_statistics(name, monkeypatch):
    torch.manual_seed(0)
    plain = create_model(name, num_classes=3).train()
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing()
    calls = []
    import resdense.models._contract as contract

    real = contract.checkpoint
    monkeypatch.setattr(contract, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    c = plain.pretrained_cfg.input_size[0]
    x = torch.randn(4, c, 32, 32)
    outs = []
    for m in (plain, ckpt):
        y = m(x)
        y.square().sum().backward()
        outs.append(y.detach())
    torch.testing.assert_close(outs[0], outs[1])
    for (k, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=k)
    for (k, a), (_, b) in zip(plain.state_dict().items(), ckpt.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)  # running statistics moved once, not twice
    if name.startswith("densenet"):  # per dense layer, as timm's DenseNet (the memory_efficient option)
        assert all(m.memory_efficient for m in ckpt.modules() if hasattr(m, "memory_efficient"))
    else:
        assert len(calls) == len(ckpt.feature_info) - 1  # each stage but the stem
    # evaluation is never checkpointed
    calls.clear()
    with torch.no_grad():
        ckpt.eval()(x)
    assert not calls


def test_pretrained_flag():
    assert default_weights("resnet18") == "DEFAULT" and default_weights("densenet121") == "DEFAULT"
    assert default_weights("resnet20") == "fashion-mnist"
    fresh = create_model("resnet20", pretrained=False)
    assert fresh.pretrained_cfg.source is None
    shipped = create_model("resnet20", pretrained=True)
    assert shipped.pretrained_cfg.source.startswith("fashion-mnist")
    same = create_model("resnet20", weights="fashion-mnist")
    assert all(torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), same.state_dict().values()))
    with pytest.raises(PretrainedError, match="resnet32 has no default weights"):
        create_model("resnet32", pretrained=True)
    with pytest.raises(ValueError, match="not both"):
        create_model("resnet20", pretrained=True, weights="fashion-mnist")


@torch.no_grad()
def test_the_books_and_cifar_nets_own_points():
    """Points resdense chose itself (timm has not these nets): the book's blocks, the CIFAR stems and
    stages; each one's map is what running the blocks in order gives."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 64, 64)
    for name, n in [("d2l_resnet18", 5), ("d2l_densenet", 8)]:
        net = create_model(name).eval()
        inter = net.forward_intermediates(x, intermediates_only=True)
        assert net.feature_stages() == [str(i) for i in range(n)] and len(inter) == n
        y = x
        for i in range(n):
            y = net[i](y)
            assert torch.equal(inter[i], y)
        final, (last,) = net.forward_intermediates(x, indices=1, norm=True)
        torch.testing.assert_close(final, net.forward_features(x))
        torch.testing.assert_close(
            last, final
        )  # norm=True: the DenseNet's final BN and ReLU on the last point
    net = create_model("resnet20", in_chans=1).eval()
    stem, *stages = net.forward_intermediates(torch.randn(2, 1, 32, 32), intermediates_only=True)
    assert net.feature_stages() == ["relu", "layer1", "layer2", "layer3"]
    assert [t.shape[-1] for t in [stem, *stages]] == [32, 32, 16, 8]
    preact = create_model("preact_resnet18").eval()
    z = torch.randn(1, 3, 32, 32)
    final, (last,) = preact.forward_intermediates(z, indices=1)
    torch.testing.assert_close(torch.relu(preact.final_norm(last)), final)


def test_bad_arguments_are_clear():
    net = create_model("resnet20")
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="NCHW"):
        net.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(ValueError, match="last n points, n from 1 to 4"):
        net.forward_intermediates(x, indices=5)
    with pytest.raises(ValueError, match="feature index -5 is out of range"):
        net.forward_intermediates(x, indices=[-5])


def test_freeze_asks_the_model_for_its_stages():
    from resdense.train.optim import stages

    dense = create_model("densenet121")
    groups = stages(dense)
    assert len(groups) == len(dense.feature_info)
    named = {id(m): n for n, m in dense.named_modules()}
    # a transition is frozen with the block before it, as timm groups them
    assert [named[id(m)] for m in groups[1]] == ["features.denseblock1", "features.transition1"]


def _imports(path: Path) -> set[str]:
    """The models modules ``path`` imports (at the top or inside functions), relative ones resolved."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module.split(".")[0] if node.module else None
                names = [base] if base else [a.name for a in node.names]
            elif node.level == 0 and (node.module or "").startswith("resdense.models."):
                names = [node.module.split(".")[2]]
            else:
                continue
            out |= {n for n in names if (MODELS_DIR / f"{n}.py").exists()}
    return out - {path.stem}


def test_the_models_package_has_no_import_cycle():
    graph = {p.stem: _imports(p) for p in MODELS_DIR.glob("*.py") if p.stem != "__init__"}
    assert graph["registry"] == set()  # the bottom
    assert "builder" not in set().union(*(v for k, v in graph.items()))  # the top: none imports it

    def visit(node, path):
        assert node not in path, f"import cycle: {' -> '.join([*path, node])}"
        for nxt in graph.get(node, ()):
            visit(nxt, [*path, node])

    for module in graph:
        visit(module, [])


def test_no_private_name_crosses_models_modules():
    for path in MODELS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
