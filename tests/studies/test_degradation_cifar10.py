"""``resdense study degradation --paper --dataset cifar10``: He et al.'s own experiment (Fig. 6, plain versus
residual nets on CIFAR-10), wired end to end at toy size on files made in CIFAR-10's binary format."""

from __future__ import annotations

import importlib

import pytest
import torch

from resdense.cli import main
from resdense.data import cifar10
from resdense.data.dataset import ImageSet
from resdense.rundir import RunDir

PER_FILE = 8


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "PER_FILE", PER_FILE)
    monkeypatch.delenv("RESDENSE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    g = torch.Generator().manual_seed(0)

    def split(n):
        return ImageSet(
            torch.randint(0, 256, (n, 3, 32, 32), generator=g).to(torch.uint8), torch.arange(n) % 10
        )

    return cifar10.write_binary_release(tmp_path / "cifar", split(5 * PER_FILE), split(PER_FILE))


def test_paper_epochs_are_64k_iterations_of_128():
    deg = importlib.import_module("resdense.studies.degradation")
    assert deg.paper_epochs(50_000) == 164  # CIFAR-10: lr / 10 at 82 and 123 epochs (32k and 48k iterations)
    assert deg.paper_epochs(60_000) == 137  # Fashion-MNIST, the paper size's default
    assert deg.DegradationSettings.paper().epochs == 137


def test_paper_degradation_on_cifar10_at_toy_size(fake_cifar, tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "degradation", "--paper", "--dataset", "cifar10", "--data-dir", str(fake_cifar)]
    argv += ["--out", str(out), "--epochs", "1", "--seeds", "0", "--depths", "20,56", "--widths", "2,4,8"]
    argv += ["--batch-size", "8", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "degradation: claim" in printed and "report:" in printed
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["plain20-seed0", "plain56-seed0", "resnet20-seed0", "resnet56-seed0"]
    config = RunDir(out / "runs" / "resnet56-seed0").read_config()
    # the paper's recipe on CIFAR-10's 3x32x32 images
    assert config["dataset"] == "cifar10" and config["plan"]["input_size"] == 32
    assert (config["augment"], config["crop_padding"], config["schedule"]) == ("flip-crop", 4, "step")
    assert config["weight_decay"] == 1e-4 and config["epochs"] == 1
    report = (out / "report.md").read_text()
    assert "cifar10 at 32x32" in report
    assert (out / "degradation.png").read_bytes()[:4] == b"\x89PNG"
