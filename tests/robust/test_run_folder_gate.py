"""Issue 19, the run folder: one process per folder, nothing lost on resume, no stale temporary files, the
same permissions for every file, --force never deletes what resdense did not write, a full or read-only disk
is one line naming the folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resdense.errors import UserError
from resdense.rundir import RunDir, load_checkpoint, read_metrics
from resdense.utils.io import write_text
from tests.cli.conftest import cli
from tests.train.conftest import assert_one_line_error, train_args

from .conftest import storage


def _holder(folder):
    """Another process holding ``folder``'s lock as resdense takes it (a POSIX lock on ``.lock`` holding its PID);
    a bare interpreter, so that the test does not wait for torch to import."""
    code = (
        f"import fcntl, os, sys; os.makedirs({str(folder)!r}, exist_ok=True); "
        f"fd = os.open(os.path.join({str(folder)!r}, {RunDir.LOCK!r}), os.O_RDWR | os.O_CREAT); "
        "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); os.write(fd, f'{os.getpid()}\\n'.encode()); "
        "print('locked', flush=True); sys.stdin.read()"
    )
    p = subprocess.Popen(
        [sys.executable, "-S", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "locked"
    return p


def test_resdense_takes_the_lock_that_others_see(tmp_path):
    run = RunDir(tmp_path / "run")
    run.prepare()
    try:
        probe = subprocess.run(
            [
                sys.executable,
                "-S",
                "-c",
                "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
                "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
                str(run.path / RunDir.LOCK),
            ],
            capture_output=True,
            text=True,
        )
        assert probe.returncode != 0 and "BlockingIOError" in probe.stderr
        assert (run.path / RunDir.LOCK).read_text().strip() == str(os.getpid())
    finally:
        run.unlock()


def test_case3_second_process_on_a_folder_gets_one_line_naming_the_first(tmp_path, idx_dir, capsys):
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        with pytest.raises(UserError, match=rf"another resdense process \(PID {holder.pid}\)"):
            RunDir(out).prepare()
        code, _, err = cli(capsys, *train_args(idx_dir, out, epochs=1))
        assert_one_line_error(code, err, str(out), f"PID {holder.pid}")
        assert not RunDir(out).checkpoint.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    RunDir(out).prepare()  # the first has ended: the lock is free (its file stays, naming no one alive)


def test_case4_resume_with_no_epochs_left_rewrites_metrics_and_curves(run_copy, capsys):
    run = RunDir(run_copy)
    rows = run.read_metrics()
    assert len(rows) == 3
    # killed just after the final checkpoint: the last row, the curves and the final files never written
    run.write_metrics(rows[:2])
    for f in (run.curves, run.weights, run.summary):
        f.unlink()
    code, out, err = cli(capsys, "train", "--resume", run_copy, "--no-progress")
    assert code == 0, err
    assert run.read_metrics() == rows and run.curves.exists() and run.weights.exists() and run.finished


def test_case12_stale_temporary_files_are_removed(run_copy, capsys):
    stale = [run_copy / ".checkpoint.pt.x1.tmp", run_copy / ".curves.png.x2.tmp"]
    for s in stale:
        s.write_bytes(b"half")
    code, _, err = cli(capsys, "train", "--resume", run_copy, "--no-progress")
    assert code == 0, err
    assert not any(s.exists() for s in stale)
    # anywhere else (export's file, convert's), a writer removes its target's temporary files once they
    # have been left alone for an hour, and never a live writer's
    old, fresh = temps = [run_copy / ".model.onnx.a.tmp", run_copy / ".model.onnx.b.tmp"]
    for t in temps:
        t.write_bytes(b"x")
    os.utime(old, (time.time() - 7200,) * 2)
    write_text(run_copy / "model.onnx", "new")
    assert not old.exists() and fresh.exists()


def test_case12_every_file_gets_the_umask_permissions(finished_run):
    out = finished_run[0]
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # model.safetensors was 0600


def test_case13_killed_before_the_first_checkpoint_starts_again(tmp_path, idx_dir, capsys):
    out = tmp_path / "run"
    (out / RunDir.TENSORBOARD).mkdir(parents=True)
    (out / RunDir.CONFIG).write_text("{}")  # what a run killed in its first epoch leaves
    code, _, err = cli(capsys, "train", "--resume", out, "--no-progress")
    assert_one_line_error(code, err, "ended before its first checkpoint", "without --resume")
    code, _, err = cli(capsys, *train_args(idx_dir, out, epochs=1))  # no --force needed
    assert code == 0, err
    assert RunDir(out).finished


def test_force_refuses_the_current_folder(run_copy, monkeypatch, capsys, idx_dir):
    monkeypatch.chdir(run_copy)
    code, _, err = cli(capsys, *train_args(idx_dir, Path("."), epochs=1), "--force")
    assert_one_line_error(code, err, "--force refuses the current folder")
    assert (run_copy / RunDir.CHECKPOINT).exists() and (run_copy / RunDir.WEIGHTS).exists()


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_case6_resume_on_a_full_or_read_only_folder(kind, finished_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "disk"
    with storage(kind, folder, monkeypatch, fill=finished_run[0]) as how:
        print(f"{kind} folder: {how}")
        before = load_checkpoint(folder / RunDir.CHECKPOINT)["epoch"]
        code, out, err = cli(capsys, "train", "--resume", folder, "--epochs", "4", "--no-progress")
        assert_one_line_error(code, err, str(folder), "what was there is kept")
        if kind == "read-only":
            assert "epoch 4/4" not in out  # refused before training an epoch, not after
        assert load_checkpoint(folder / RunDir.CHECKPOINT)["epoch"] == before
        assert len(read_metrics(folder / RunDir.METRICS)) == 3
        assert not list(folder.glob(".*.tmp"))


def test_case6_evaluate_on_a_read_only_run_keeps_its_result(finished_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "disk"
    with storage("read-only", folder, monkeypatch, fill=finished_run[0]):
        code, out, err = cli(capsys, "evaluate", folder)
        assert_one_line_error(code, err, str(folder), command="evaluate")
        assert "test accuracy" in out  # the result computed is printed, not lost


def test_case6_export_on_a_full_disk(finished_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "disk"
    with storage("full", folder, monkeypatch):
        code, _, err = cli(
            capsys, "export", finished_run[0], "--format", "torchscript", "--out", folder / "m.pt"
        )
        assert_one_line_error(code, err, str(folder), command="export")
        assert not list(folder.glob(".m.pt.*"))  # no temporary file left (it was a 757 KB one, and SIGABRT)


def test_a_killed_trainers_forked_workers_do_not_keep_its_folder_locked(tmp_path):
    """CI found it: a streamed run's decoding workers (forked) outlived the SIGKILLed trainer for a moment,
    and with an flock (shared with forked children) they kept the folder locked against its own --resume."""
    import signal

    folder = tmp_path / "run"
    folder.mkdir()
    code = (
        "import os, sys, time; from resdense.rundir import RunDir; RunDir(sys.argv[1]).lock(); "
        "child = os.fork()\nif child == 0:\n    time.sleep(60); os._exit(0)\n"
        "print(child, flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    child = int(p.stdout.readline())
    try:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        os.kill(child, 0)  # the forked worker is still alive ...
        run = RunDir(folder)
        run.lock()  # ... and the folder is free all the same
        run.unlock()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
