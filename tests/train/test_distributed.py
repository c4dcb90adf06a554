"""Distributed training on CPU: two gloo processes, launched by torchrun or torch.multiprocessing.

Batch norm and DDP: PyTorch's SyncBatchNorm does not run on CPU, so the step-equivalence test uses a small
model without batch norm (registered for the test only), where per-process statistics cannot differ. The
BN models are checked for what must hold without --sync-bn: every rank ends with the same weights and
buffers and reports the same test accuracy, that of the saved model.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from resdense.cli import main as cli_main
from resdense.data import ImageSet, load_dataset
from resdense.data.idx import write_idx_images, write_idx_labels
from resdense.modelfile import unwrap
from resdense.models import registry
from resdense.serve.load import load_trained
from resdense.serve.predictor import predict_logits
from resdense.train import TrainConfig, Trainer, get_recipe
from resdense.train import distributed as dist_utils

WORLD = 2
N_TRAIN, N_TEST, CLASSES = 256, 64, 4
TIMEOUT_S = 240  # any one launched process group; a healthy one takes seconds
RUN_FILES = {"config.json", "metrics.csv", "summary.json", "curves.png", "model.safetensors", "checkpoint.pt"}
TINY_OPTIONS = ["--model", "resnet20", "--model-options", '{"widths": [4, 8, 16]}', "--batch-size", "64"]
TORCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

# A model with no batch norm: one DDP step must then equal one single-process step exactly.
NO_BN_MODEL = "test_no_bn_convnet"


def train_batches(data, batch_size, **kwargs):
    """The in-memory split's own batches (the batch protocol of resdense.data.dataset)."""
    return data.train_batches(batch_size, **kwargs)


def no_bn_convnet(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(6 * 16, num_classes),
    )


NO_BN_INFO = registry.ModelInfo(NO_BN_MODEL, no_bn_convnet, "test", "tests")

# One optimizer step: the whole 64-image subset is one global batch; 32 rows per process.
STEP_CFG = TrainConfig(
    recipe="test",
    model=NO_BN_MODEL,
    dataset="idx",
    epochs=1,
    batch_size=64,
    train_subset=64,
    lr=0.5,
    optimizer="nesterov",
    momentum=0.9,
    weight_decay=5e-4,
    schedule="constant",
    label_smoothing=0.1,
    augment="none",
    tta_flip=False,
    channels_last=False,
    amp=False,
    device="cpu",
)
# A BN model for two epochs; a small eval batch so that both processes score a share of the test set.
AGREE_CFG = get_recipe("fast").with_overrides(
    model_options={"widths": (4, 8, 16)},
    dataset="idx",
    epochs=2,
    batch_size=16,
    eval_batch_size=16,
    device="cpu",
)


def write_tiny_idx(folder: Path) -> Path:
    """A learnable four-class set: the class sets the brightness, noise on top."""
    g = torch.Generator().manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        labels = torch.arange(n) % CLASSES
        noise = torch.randint(0, 80, (n, 28, 28), generator=g)
        write_idx_images(
            folder / f"{split}-images-idx3-ubyte.gz", (noise + 55 * labels[:, None, None]).byte()
        )
        write_idx_labels(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_idx(tmp_path_factory.mktemp("tiny-idx"))


@pytest.fixture(autouse=True)
def single_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs are single-process runs, whatever launched pytest."""
    for name in TORCH_ENV:
        monkeypatch.delenv(name, raising=False)


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TORCH_ENV}
    env["OMP_NUM_THREADS"] = "1"
    env[dist_utils.TIMEOUT_ENV] = "60"  # a hung peer fails a collective in a minute, not ten
    return env


def torchrun_cmd(*args: str) -> list[str]:
    # `python -m torch.distributed.run` is torchrun; --standalone picks a free local port for each job
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        "-m",
        "resdense",
        "train",
        *args,
    ]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        torchrun_cmd(*args), cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in history]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_run_folder(run: Path, *, epochs: int, world_size: int, files: set[str] = RUN_FILES) -> dict:
    missing = files - {p.name for p in run.iterdir()}
    assert not missing, f"missing {sorted(missing)}"
    summary = read_json(run / "summary.json")
    assert summary["world_size"] == world_size
    assert summary["epochs"] == epochs
    assert len(metrics_rows(run)) == epochs
    model, _ = load_trained(run)
    assert isinstance(model, nn.Module)
    return summary


# -- the loader: each process its own rows of every global batch --------------------------------------------


@pytest.mark.parametrize("world", [2, 3])
def test_shards_partition_each_global_batch(world: int) -> None:
    n, batch = 60, 12
    data = ImageSet(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n))  # label = row index
    for epoch in (0, 1):
        whole = [y for _, y in train_batches(data, batch, seed=3, epoch=epoch)]
        shards = [
            [y for _, y in train_batches(data, batch, seed=3, epoch=epoch, rank=r, world_size=world)]
            for r in range(world)
        ]
        assert all(len(s) == len(whole) == n // batch for s in shards)
        for i, global_batch in enumerate(whole):
            parts = [s[i] for s in shards]
            assert all(len(p) == batch // world for p in parts)
            joined = torch.cat(parts)
            assert len(set(joined.tolist())) == batch  # no overlap between processes
            assert sorted(joined.tolist()) == sorted(global_batch.tolist())  # together: the global batch
    epoch0 = torch.cat([y for _, y in train_batches(data, batch, seed=3, epoch=0)])
    epoch1 = torch.cat([y for _, y in train_batches(data, batch, seed=3, epoch=1)])
    assert not torch.equal(epoch0, epoch1)  # reshuffled every epoch


# -- two processes by torch.multiprocessing: the engine's step and evaluation, rank by rank ---------------


def _worker(rank: int, init_file: str, data: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD)
    )
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    registry._REGISTRY.setdefault(NO_BN_MODEL, NO_BN_INFO)
    dataset = load_dataset("idx", data)
    out_dir = Path(out)
    state = dist_utils.setup("cpu")  # joins the group made above: WORLD_SIZE is set, the group exists
    try:
        assert state.enabled and state.rank == rank and state.world_size == WORLD
        step_dir = out_dir / "step"
        step_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(STEP_CFG.with_overrides(out=str(step_dir)), dataset, step_dir, progress=False)
        trainer.fit()
        torch.save(unwrap(trainer.model).state_dict(), out_dir / f"step-rank{rank}.pt")

        agree_dir = out_dir / "agree"
        agree_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(AGREE_CFG.with_overrides(out=str(agree_dir)), dataset, agree_dir, progress=False)
        result = trainer.fit()
        # this rank's own model on the whole test set, no communication
        model = trainer.eval_model().eval()
        test = trainer.test_set
        logits = predict_logits(model, test.images, trainer.preprocess, tta_flip=trainer.cfg.tta_flip)
        whole = (logits.argmax(1) == test.labels).sum().item() / len(test)
        torch.save(
            {
                "summary": result.summary,
                "history": result.history,
                "whole_test_acc": whole,
                "state": model.state_dict(),
            },
            out_dir / f"agree-rank{rank}.pt",
        )
    finally:
        dist_utils.teardown()


def spawn_workers(tmp_path: Path, data_dir: Path) -> None:
    ctx = mp.start_processes(
        _worker,
        args=(str(tmp_path / "init"), str(data_dir), str(tmp_path)),
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


def test_ddp_matches_one_process_and_ranks_agree(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn_workers(tmp_path, data_dir)

    # (a) one DDP step == one single-process step on the same global batch (model without batch norm)
    monkeypatch.setitem(registry._REGISTRY, NO_BN_MODEL, NO_BN_INFO)
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    reference = Trainer(
        STEP_CFG.with_overrides(out=str(ref_dir)), load_dataset("idx", data_dir), ref_dir, progress=False
    )
    assert not reference.dist.enabled
    torch.manual_seed(STEP_CFG.seed)
    initial = no_bn_convnet(num_classes=CLASSES).state_dict()
    reference.fit()
    expected = unwrap(reference.model).state_dict()
    assert reference.steps_per_epoch == 1
    assert not torch.allclose(expected["4.weight"], initial["4.weight"]), "the step changed nothing"
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"step-rank{rank}.pt", weights_only=True)
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)

    # every rank ends with the same model and reports the same accuracy: that of the model on every rank
    runs = [torch.load(tmp_path / f"agree-rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for run in runs[1:]:
        assert without_timings(run["history"]) == without_timings(runs[0]["history"])
        assert run["summary"]["test_accuracy"] == runs[0]["summary"]["test_accuracy"]
        for name, value in runs[0]["state"].items():
            torch.testing.assert_close(run["state"][name], value, rtol=0, atol=0, msg=name)
    for run in runs:
        assert run["summary"]["world_size"] == WORLD
        assert run["summary"]["test_accuracy"] == pytest.approx(run["whole_test_acc"], abs=1e-9)
    # a Trainer run folder (train() adds config.json)
    saved = check_run_folder(
        tmp_path / "agree", epochs=2, world_size=WORLD, files=RUN_FILES - {"config.json"}
    )
    assert saved["test_accuracy"] == runs[0]["summary"]["test_accuracy"]


# -- torchrun -m resdense train: the CLI under two processes, and resuming across world sizes -------------


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One epoch under `torchrun --nproc_per_node=2 -m resdense train` (shared by the tests below)."""
    work = tmp_path_factory.mktemp("ddp")
    run = work / "run"
    proc = torchrun(
        "--dataset",
        "idx",
        "--data-dir",
        str(data_dir),
        *TINY_OPTIONS,
        "--epochs",
        "1",
        "--no-progress",
        "--out",
        str(run),
        cwd=work,
    )
    assert proc.stdout.count("epoch 1/1:") == 1, proc.stdout  # rank 0 alone prints
    return run


def test_torchrun_run_folder_is_complete(ddp_run: Path, capsys: pytest.CaptureFixture) -> None:
    summary = check_run_folder(ddp_run, epochs=1, world_size=WORLD)
    assert read_json(ddp_run / "config.json")["world_size"] == WORLD
    assert not list(ddp_run.glob("*.tmp*")), "a temporary file was left behind"
    # the accuracy reported is that of the saved model
    assert cli_main(["evaluate", str(ddp_run), "--json", "--out", str(ddp_run / "eval")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["test_accuracy"])


def test_two_process_checkpoint_resumes_in_one_process(
    ddp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(ddp_run, run)
    first = metrics_rows(run)
    assert cli_main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    check_run_folder(run, epochs=2, world_size=1)
    assert metrics_rows(run)[0] == first[0]


def test_one_process_checkpoint_resumes_under_two(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "idx",
        "--data-dir",
        str(data_dir),
        *TINY_OPTIONS,
        "--epochs",
        "1",
        "--no-progress",
        "--out",
        str(run),
    ]
    assert cli_main(args) == 0
    first = metrics_rows(run)
    proc = torchrun("--resume", str(run), "--epochs", "2", "--no-progress", cwd=tmp_path)
    assert "resuming" in proc.stdout
    check_run_folder(run, epochs=2, world_size=WORLD)
    assert metrics_rows(run)[0] == first[0]


# -- a rank that dies -----------------------------------------------------------------------------------


def _children_with_rank(parent: int, rank: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker processes in /proc")
def test_killed_rank_ends_the_job(data_dir: Path, tmp_path: Path) -> None:
    """SIGKILL one rank mid-training: torchrun stops the other and exits non-zero with its summary."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    cmd = torchrun_cmd(
        "--dataset",
        "idx",
        "--data-dir",
        str(data_dir),
        *TINY_OPTIONS,
        "--epochs",
        "1000",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    )
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=subprocess_env(), stdout=fo, stderr=fe, start_new_session=True
        )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while "epoch 1/1000:" not in out.read_text():
            assert proc.poll() is None, f"torchrun ended early:\n{err.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "training did not start in time"
            time.sleep(0.2)
        victims = _children_with_rank(proc.pid, 1)
        assert len(victims) == 1, victims
        os.kill(victims[0], signal.SIGKILL)
        killed_at = time.monotonic()
        rc = proc.wait(timeout=120)
        took = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = err.read_text()
    assert rc != 0
    assert "SIGKILL" in stderr and "FAILED" in stderr, stderr[-3000:]
    assert took < 90
    assert "done:" not in out.read_text()
