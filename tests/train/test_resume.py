"""Kill a training run with SIGKILL mid-run, resume it, and get bit for bit the uninterrupted run's result."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resdense.rundir import load_checkpoint

from .conftest import TINY, run_cli, write_learnable_set

EPOCHS = 4
COMPARED = ("train_loss", "train_acc", "test_acc")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


# issue 36's options, every one with state or draws a resume must repeat: the keyed augmentations, MixUp and
# CutMix, the kept weights and the patience counter, accumulation and clipping
OPTIONS = [
    *("--mixup", "0.2", "--cutmix", "1.0", "--auto-augment", "trivial", "--random-erasing", "0.5"),
    *("--val-split", "64", "--keep", "best", "--patience", "3", "--accum-steps", "2", "--clip-grad", "5"),
]


def args(data_dir: Path, out: Path, amp: str = "no", extra: tuple[str, ...] = ()) -> list[str]:
    # The fast recipe's own training (Nesterov momentum, weight decay, one-cycle schedule, label smoothing,
    # flip-crop augmentation, test-time flips) plus a weight EMA: every piece of state a resume must restore.
    return [
        "train",
        "--recipe",
        "fast",
        *TINY,
        "--dataset",
        "idx",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "32",
        "--ema",
        "0.9",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--no-progress",
        "--amp",
        amp,
        *extra,
    ]


def metric_rows(run: Path) -> list[dict]:
    try:
        with open(run / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def safetensors(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory) -> Path:
    # 512 images: an epoch lasts long enough (about a second) for the kill to land inside one
    return write_learnable_set(tmp_path_factory.mktemp("resume") / "idx", n_train=512, n_test=64, seed=5)


def start(cmd: list[str], stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """``python -m resdense CMD`` on one thread, as ``run_cli`` runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "resdense", *cmd], stdout=stdout, stderr=subprocess.PIPE, text=True, env=env
    )


def kill_mid_run(cmd: list[str], run: Path, after_epochs: int = 1, timeout: float = 120) -> int:
    """Start ``resdense`` ARGS, SIGKILL it once ``after_epochs`` epochs are checkpointed, while it is still
    training; returns the number of epochs the killed run had completed."""
    proc = start(cmd)
    try:
        deadline = time.monotonic() + timeout
        while len(metric_rows(run)) < after_epochs:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.01)
        # metrics.csv is written after the checkpoint: the checkpoint of this epoch is complete. Let the
        # next epoch get under way, then kill without warning (no handler, no cleanup can run).
        time.sleep(0.2)
        assert proc.poll() is None, "the run finished before the kill; it must be killed mid-run"
        done = len(metric_rows(run))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return done


# fp32, and bf16 autocast (forced: on this machine or not, a resume must replay it bit for bit); and fp32 with
# issue 36's options
@pytest.mark.parametrize(
    ("amp", "extra"), [("no", ()), ("yes", ()), ("no", tuple(OPTIONS))], ids=["no", "yes", "options"]
)
def test_resume_after_sigkill_equals_the_uninterrupted_run(resume_data, tmp_path, amp, extra):
    # the uninterrupted run, in the background meanwhile
    full = tmp_path / "full"
    reference = start(args(resume_data, full, amp, extra))

    # the same run, killed mid-run and resumed
    broken = tmp_path / "broken"
    try:
        done = kill_mid_run(args(resume_data, broken, amp, extra), broken)
    finally:
        _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    assert 1 <= done < EPOCHS
    assert not (broken / "model.safetensors").exists()  # it really did not finish
    ckpt = load_checkpoint(broken / "checkpoint.pt")  # whole, despite the kill
    assert 1 <= ckpt["epoch"] < EPOCHS

    res = run_cli("train", "--resume", str(broken), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert f"resuming {broken} after epoch {ckpt['epoch']}" in res.stdout
    assert res.stdout.strip().splitlines()[-1].startswith("done: test accuracy")
    assert ckpt["config"]["amp"] == amp  # the decision is the run's own: a resume repeats it
    assert ("(bf16: --amp yes)" in res.stdout) == (amp == "yes")
    # only the missing epochs were trained again
    replayed = [line.split(":")[0] for line in res.stdout.splitlines() if line.startswith("epoch ")]
    assert replayed == [f"epoch {e}/{EPOCHS}" for e in range(ckpt["epoch"] + 1, EPOCHS + 1)]

    # the same weights, bit for bit: the evaluated (EMA) model and the raw model with its optimizer state
    assert_same_tensors(safetensors(full), safetensors(broken))
    c_full, c_broken = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(broken / "checkpoint.pt")
    assert c_full["epoch"] == c_broken["epoch"] == EPOCHS
    assert_same_tensors(c_full["model"], c_broken["model"])
    assert_same_tensors(c_full["ema"], c_broken["ema"])
    if extra:  # the kept weights, their epoch and score, the patience counter
        k_full, k_broken = c_full["keeper"], c_broken["keeper"]
        assert_same_tensors(k_full.pop("weights"), k_broken.pop("weights"))
        assert k_full == k_broken
        kept = f"kept: the weights of epoch {k_full['best_epoch']}, the best validation accuracy"
        assert kept in res.stdout
    # and the same learning curves, exactly (timings of course differ)
    # (.get: the fast recipe does not score its downscaled epochs)
    assert [[r.get(k) for k in COMPARED] for r in c_full["history"]] == [
        [r.get(k) for k in COMPARED] for r in c_broken["history"]
    ]
    rows_full, rows_broken = metric_rows(full), metric_rows(broken)
    assert [r["epoch"] for r in rows_broken] == [str(e) for e in range(1, EPOCHS + 1)]
    assert [[r[k] for k in COMPARED] for r in rows_full] == [[r[k] for k in COMPARED] for r in rows_broken]
