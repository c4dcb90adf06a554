"""Under torchrun each rank trains on its own share of every global batch, in memory and streamed.

Checked inside the engine, not only in the loader: a forward hook on the model records the images each
rank actually trained on, step by step. DDP averages gradients, so a rank that trained on the whole global
batch would still produce the one-process step: only the images themselves (and the images/s the run
reports) show it.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from resdense.data import load_dataset
from resdense.data.stream import load_folder
from resdense.modelfile import unwrap
from resdense.train import TrainConfig, Trainer
from resdense.train import distributed as dist_utils

from .test_distributed import TIMEOUT_S, WORLD, write_tiny_idx

BATCH = 16
CFG = TrainConfig(
    recipe="test",
    model="resnet20",
    model_options={"widths": (4, 8, 16)},
    epochs=1,
    batch_size=BATCH,
    lr=0.05,
    optimizer="sgd",
    schedule="constant",
    augment="none",
    tta_flip=False,
    channels_last=False,
    amp=False,
    device="cpu",
    train_subset=64,
    eval_batch_size=16,
    workers=1,
)
N_FOLDER = 48  # training images in the streamed folder (3 global batches)


def write_folder(root: Path) -> Path:
    """A folder of distinct grey PNGs in 4 classes, train/ and test/."""
    rng = np.random.default_rng(1)
    for split, n in (("train", N_FOLDER // 4), ("test", 4)):
        for c in range(4):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(
                    root / split / f"c{c}" / f"{i}.png"
                )
    return root


def record_training_inputs(trainer: Trainer) -> list[list[tuple]]:
    """Hook the model: per training step, a fingerprint of every image it was given."""
    steps: list[list[tuple]] = []

    def hook(module, args):
        if module.training:
            x = args[0].detach()
            steps.append([tuple(round(v, 4) for v in row[:, 0, :6].flatten().tolist()) for row in x])

    unwrap(trainer.model).register_forward_pre_hook(hook)
    return steps


def run_both(out: Path, idx_dir: Path, folder: Path) -> dict:
    """Train in memory and streamed; what each trained on and what it reported."""
    result = {}
    for name, data in (
        ("memory", load_dataset("idx", idx_dir)),
        ("stream", load_folder(folder, in_memory="no")[0]),
    ):
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(CFG.with_overrides(out=str(run_dir)), data, run_dir, progress=False)
        steps = record_training_inputs(trainer)
        fit = trainer.fit()
        result[name] = {"steps": steps, "history": fit.history, "n": len(trainer.train_set)}
    return result


def _worker(rank: int, init_file: str, idx_dir: str, folder: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD)
    )
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    dist_utils.setup("cpu")
    try:
        result = run_both(Path(out) / f"rank{rank}", Path(idx_dir), Path(folder))
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist_utils.teardown()


@pytest.fixture(autouse=True)
def single_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_each_rank_trains_on_its_own_share(tmp_path: Path) -> None:
    idx_dir, folder = write_tiny_idx(tmp_path / "idx"), write_folder(tmp_path / "folder")
    ctx = mp.start_processes(
        _worker,
        args=(str(tmp_path / "init"), str(idx_dir), str(folder), str(tmp_path)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=5):
            assert time.monotonic() < deadline, "the spawned processes did not finish in time"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    reference = run_both(tmp_path / "one", idx_dir, folder)  # one process: each step its global batch

    for name in ("memory", "stream"):
        ref = reference[name]
        n = ref["n"]
        steps = n // BATCH
        assert len(ref["steps"]) == CFG.epochs * steps
        per_epoch = []
        for i, global_batch in enumerate(ref["steps"]):
            shares = [r[name]["steps"][i] for r in ranks]
            assert all(len(s) == BATCH // WORLD for s in shares), (
                f"{name} step {i}: {[len(s) for s in shares]}"
            )
            joined = [f for s in shares for f in s]
            assert len(set(joined)) == BATCH, f"{name} step {i}: ranks trained on the same images"
            assert sorted(joined) == sorted(global_batch), f"{name} step {i}: not the global batch"
            per_epoch += joined
            if (i + 1) % steps == 0:  # across ranks, every image once per epoch
                assert len(set(per_epoch)) == len(per_epoch) == steps * BATCH
                per_epoch = []
        # the images/s each rank reports counts every image once: the epoch's images over its seconds
        for r in ranks:
            for row in r[name]["history"]:
                assert row["images_per_s"] * row["seconds"] == pytest.approx(steps * BATCH, rel=1e-9)
