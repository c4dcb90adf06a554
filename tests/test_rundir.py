"""``RunDir``: the run folder's files, how each is written and read, and the one place they are named."""

from pathlib import Path

import pytest
import torch

import resdense
from resdense.errors import UserError
from resdense.rundir import METRIC_COLUMNS, RunDir, load_checkpoint, read_metrics

ROWS = [
    {
        "epoch": 1,
        "train_loss": 1.25,
        "train_acc": 0.5,
        "test_acc": 0.625,
        "lr": 0.1,
        "seconds": 2.5,
        "images_per_s": 1000.0,
    },
    # an epoch that was not scored (--eval-every 2): no test_acc
    {"epoch": 2, "train_loss": 0.75, "train_acc": 0.75, "lr": 0.05, "seconds": 2.25, "images_per_s": 1200.0},
    {
        "epoch": 3,
        "train_loss": 0.5,
        "train_acc": 0.875,
        "test_acc": 0.8125,
        "lr": 0.0,
        "seconds": 2.0,
        "images_per_s": 1250.0,
    },
]


def fill(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("x")


# -- names and paths ---------------------------------------------------------------------------------------


def test_paths_and_state(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.path == tmp_path / "run"
    assert run.config == tmp_path / "run" / "config.json"
    assert run.weights == tmp_path / "run" / RunDir.WEIGHTS
    assert run.file("notes.txt") == tmp_path / "run" / "notes.txt"
    assert Path(run) == run.path  # os.PathLike
    assert "run" in repr(run)
    assert not (tmp_path / "run").exists()  # nothing touched until asked
    assert not run.finished and not run.resumable
    fill(run.path, [RunDir.SUMMARY, RunDir.CHECKPOINT])
    assert run.finished and run.resumable


def test_training_files_are_the_run_files():
    assert set(RunDir.TRAINING_FILES) == {
        RunDir.CONFIG,
        RunDir.CHECKPOINT,
        RunDir.METRICS,
        RunDir.STEPS,
        RunDir.CURVES,
        RunDir.WEIGHTS,
        RunDir.SUMMARY,
        RunDir.BAD_IMAGES,
    }


@pytest.mark.parametrize(
    "attr", ["CONFIG", "CHECKPOINT", "METRICS", "CURVES", "WEIGHTS", "SUMMARY", "BAD_IMAGES"]
)
def test_no_run_file_name_is_spelled_outside_rundir(attr):
    name = getattr(RunDir, attr)
    src = Path(resdense.__file__).parent
    files = sorted(src.rglob("*.py"))
    assert src / "rundir.py" in files and len(files) > 10
    quoted = (f'"{name}"', f"'{name}'")
    spelled = [
        str(f.relative_to(src)) for f in files if any(q in f.read_text(encoding="utf-8") for q in quoted)
    ]
    assert spelled == ["rundir.py"], f"{name!r} spelled as a string literal in {spelled}; use RunDir.{attr}"


# -- prepare -----------------------------------------------------------------------------------------------


def test_prepare_makes_the_folder(tmp_path):
    run = RunDir(tmp_path / "a" / "b")
    run.prepare()
    assert run.path.is_dir()
    run.prepare()  # an empty folder is anyone's
    assert run.path.is_dir()


def test_prepare_refuses_a_folder_holding_another_run(tmp_path):
    fill(tmp_path / "run", [RunDir.CONFIG, RunDir.METRICS])
    run = RunDir(tmp_path / "run")
    with pytest.raises(UserError, match="--force") as e:
        run.prepare()
    assert "--resume" in str(e.value) and "--out" in str(e.value)
    with pytest.raises(UserError, match="--into"):
        run.prepare(option="--into")
    assert (tmp_path / "run" / RunDir.CONFIG).exists()  # nothing removed


def test_prepare_refuses_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        RunDir(tmp_path / "file").prepare()


def test_prepare_force_removes_exactly_the_training_files(tmp_path):
    folder = tmp_path / "run"
    fill(folder, [*RunDir.TRAINING_FILES, *RunDir.EVALUATION_FILES])
    fill(folder / RunDir.TENSORBOARD, ["events.out.tfevents.1"])
    RunDir(folder).prepare(force=True)
    assert sorted(p.name for p in folder.iterdir()) == [RunDir.LOCK]


def test_prepare_force_refuses_a_folder_holding_other_files(tmp_path):
    """Issue 19: --force never deletes what resdense did not write; it refuses the folder, touching nothing."""
    folder = tmp_path / "run"
    fill(folder, [*RunDir.TRAINING_FILES, "notes.txt"])
    fill(folder / "mine", ["data.csv"])
    with pytest.raises(
        UserError, match=r"--force would delete files resdense did not write \(mine, notes.txt\)"
    ):
        RunDir(folder).prepare(force=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*RunDir.TRAINING_FILES, RunDir.LOCK, "mine", "notes.txt"]
    )
    assert (folder / "mine" / "data.csv").exists()


def test_prepare_resume(tmp_path):
    folder = tmp_path / "run"
    fill(folder, [RunDir.CONFIG, RunDir.METRICS])
    with pytest.raises(UserError, match="--resume") as e:
        RunDir(folder).prepare(resume=True)
    assert RunDir.CHECKPOINT in str(e.value)
    with pytest.raises(UserError, match=RunDir.CHECKPOINT):
        RunDir(tmp_path / "nowhere").prepare(resume=True)
    fill(folder, [RunDir.CHECKPOINT])
    RunDir(folder).prepare(resume=True)
    assert {p.name for p in folder.iterdir()} == {
        RunDir.CONFIG,
        RunDir.METRICS,
        RunDir.CHECKPOINT,
        RunDir.LOCK,
    }


# -- metrics -----------------------------------------------------------------------------------------------


def test_metrics_round_trip(tmp_path):
    run = RunDir(tmp_path)
    run.write_metrics(ROWS)
    header = run.metrics.read_text().splitlines()[0].split(",")
    assert tuple(header) == METRIC_COLUMNS
    back = run.read_metrics()
    assert back == ROWS
    assert "test_acc" not in back[1]
    assert isinstance(back[0]["epoch"], int) and isinstance(back[0]["lr"], float)
    assert read_metrics(run.metrics) == back


def test_metrics_val_acc_column_only_when_a_row_has_it(tmp_path):
    run = RunDir(tmp_path)
    rows = [dict(ROWS[0], val_acc=0.6), dict(ROWS[1])]
    run.write_metrics(rows)
    header = run.metrics.read_text().splitlines()[0].split(",")
    assert header == [*METRIC_COLUMNS, "val_acc"]
    back = run.read_metrics()
    assert back[0]["val_acc"] == 0.6 and "val_acc" not in back[1]
    assert back == rows


def test_metrics_floats_written_to_six_digits_and_extra_keys_ignored(tmp_path):
    run = RunDir(tmp_path)
    run.write_metrics([dict(ROWS[0], train_loss=0.123456789, note="ignored")])
    assert "note" not in run.metrics.read_text()
    [row] = run.read_metrics()
    assert row["train_loss"] == 0.123457
    assert "note" not in row


def test_metrics_rewritten_whole(tmp_path):
    run = RunDir(tmp_path)
    run.write_metrics(ROWS)
    run.write_metrics(ROWS[:1])
    assert run.read_metrics() == ROWS[:1]
    run.write_metrics([])
    assert run.read_metrics() == []


# -- checkpoint --------------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    state = {
        "epoch": 3,
        "model": {"conv.weight": torch.randn(2, 1, 3, 3), "bn.num_batches_tracked": torch.tensor(7)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
        "metrics": ROWS,
        "seed": 0,
        "history": [{"epoch": e} for e in (1, 2, 3)],  # what the checkpoint reader checks (issue 19)
        "config": {},
    }
    run.save_checkpoint(state)
    assert run.resumable
    back = run.load_checkpoint()
    assert back["epoch"] == 3 and back["seed"] == 0 and back["metrics"] == ROWS
    assert back["optimizer"] == state["optimizer"]
    for k, v in state["model"].items():
        assert torch.equal(back["model"][k], v)
    assert load_checkpoint(run.checkpoint)["epoch"] == 3
    assert [p.name for p in run.path.iterdir()] == [RunDir.CHECKPOINT]  # no temporary file left


def test_unreadable_checkpoint_names_the_file(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoint.write_bytes(b"this is no checkpoint")
    with pytest.raises(UserError) as e:
        run.load_checkpoint()
    assert str(run.checkpoint) in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_holding_code_is_refused(tmp_path):
    run = RunDir(tmp_path)
    torch.save({"epoch": 1, "fn": Path}, run.checkpoint)  # a pickled class: not weights-only data
    with pytest.raises(UserError, match=RunDir.CHECKPOINT):
        run.load_checkpoint()


# -- JSON files --------------------------------------------------------------------------------------------


def test_config_and_summary_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    config = {"model": "resnet20", "epochs": 3, "preprocess": {"size": 32}, "classes": ["a", "b"]}
    run.write_config(config)
    assert run.read_config() == config
    summary = {"test_accuracy": 0.9, "params": 1234}
    run.write_summary(summary)
    assert run.read_summary() == summary
    assert run.finished


def test_broken_json_is_a_user_error(tmp_path):
    run = RunDir(tmp_path)
    run.config.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON") as e:
        run.read_config()
    assert str(run.config) in str(e.value)
    run.summary.write_text("")
    with pytest.raises(UserError, match=RunDir.SUMMARY):
        run.read_summary()


def test_missing_json_names_the_file(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(UserError, match=RunDir.CONFIG):
        run.read_config()
    with pytest.raises(UserError, match=RunDir.SUMMARY):
        run.read_summary()


# -- finding one -------------------------------------------------------------------------------------------


def test_holding(tmp_path):
    folder = tmp_path / "run"
    fill(folder, [RunDir.WEIGHTS])
    found = RunDir.holding(folder)
    assert isinstance(found, RunDir) and found.path == folder
    found = RunDir.holding(folder / RunDir.WEIGHTS)
    assert found is not None and found.path == folder
    only_config = tmp_path / "configured"
    fill(only_config, [RunDir.CONFIG])
    assert RunDir.holding(only_config).path == only_config
    # elsewhere: not a run
    elsewhere = tmp_path / "elsewhere"
    fill(elsewhere, ["model.onnx", "notes.txt"])
    assert RunDir.holding(elsewhere) is None
    assert RunDir.holding(elsewhere / "model.onnx") is None
    assert RunDir.holding(tmp_path / "nowhere" / "model.safetensors") is None


def test_weights_file(tmp_path):
    folder = tmp_path / "run"
    fill(folder, [RunDir.CONFIG])
    with pytest.raises(UserError, match=RunDir.WEIGHTS) as e:
        RunDir.weights_file(folder)
    assert str(folder) in str(e.value)
    with pytest.raises(UserError, match="no such") as e:
        RunDir.weights_file(tmp_path / "missing.safetensors")
    assert "missing.safetensors" in str(e.value)
    fill(folder, [RunDir.WEIGHTS])
    assert RunDir.weights_file(folder) == folder / RunDir.WEIGHTS
    other = tmp_path / "exported.onnx"
    other.write_bytes(b"x")
    assert RunDir.weights_file(other) == other
    assert RunDir.weights_file(str(other)) == other


# -- read --------------------------------------------------------------------------------------------------


def test_read_a_finished_run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"model": "resnet20"})
    run.write_summary({"test_accuracy": 0.8125})
    run.write_metrics(ROWS)
    d = run.read()
    assert d == {
        "path": str(run.path),
        "summary": {"test_accuracy": 0.8125},
        "config": {"model": "resnet20"},
        "metrics": ROWS,
    }


@pytest.mark.parametrize("missing", [RunDir.SUMMARY, RunDir.CONFIG, RunDir.METRICS])
def test_read_names_the_missing_file(tmp_path, missing):
    run = RunDir(tmp_path / "run")
    run.write_config({"model": "resnet20"})
    run.write_summary({"test_accuracy": 0.8125})
    run.write_metrics(ROWS)
    (run.path / missing).unlink()
    with pytest.raises(UserError, match=missing) as e:
        run.read()
    assert str(run.path) in str(e.value)


def test_read_of_no_folder(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        RunDir(tmp_path / "nowhere").read()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a run folder"):
        RunDir(tmp_path / "file").read()


def test_bad_images_list_takes_any_name(tmp_path) -> None:
    """``--skip-bad-images`` with a file whose name is not UTF-8 (or holds a tab or newline) crashed writing
    bad_images.txt (issue 37): each name is escaped as every output's are, one line per file."""
    import os
    from types import SimpleNamespace

    from resdense.utils.outputs import unescape_name

    names = [os.fsdecode(b"/d/bro\xffken.png"), "/d/two\nlines\t.png"]
    run = RunDir(tmp_path)
    run.write_bad_images([SimpleNamespace(path=n, reason="not an image") for n in names])
    lines = run.bad_images.read_text("utf-8").splitlines()
    assert [unescape_name(line.split("\t")[0]) for line in lines] == names
