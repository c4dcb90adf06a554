"""The typed epoch record (resdense.record): the one owner of a history row's fields; on disk the rows
keep their keys, and rows written before the record existed load."""

from __future__ import annotations

import json

import pytest

from resdense.plots import compare_figure, curves_figure
from resdense.record import EpochRecord
from resdense.rundir import RunDir, read_metrics

ROW = {
    "epoch": 2,
    "train_loss": 0.5,
    "train_acc": 0.8,
    "lr": 0.1,
    "seconds": 1.5,
    "images_per_s": 100.0,
    "curve": [[10, 0.6, 0.7, 0.1], [20, 0.4, 0.9, 0.1]],
    "test_acc": 0.75,
}


def test_round_trip_keeps_the_keys():
    r = EpochRecord.from_dict(ROW)
    assert r.epoch == 2 and r.test_acc == 0.75 and r.val_acc is None and r.curve[1] == (20, 0.4, 0.9, 0.1)
    assert r.to_dict() == ROW and json.loads(json.dumps(r.to_dict())) == ROW  # plain data, as before
    assert EpochRecord.from_dict(r) is r


def test_reads_as_the_mapping_it_was():
    r = EpochRecord.from_dict(ROW)
    assert r["test_acc"] == 0.75 and "test_acc" in r and "val_acc" not in r and r.get("val_acc") is None
    assert r == ROW and dict(r) == ROW
    with pytest.raises(KeyError):
        r["val_acc"]
    unscored = EpochRecord.from_dict({k: v for k, v in ROW.items() if k != "test_acc"})
    assert unscored.test_acc is None and "test_acc" not in unscored.to_dict()


def test_an_old_row_loads():
    # a checkpoint from before the within-epoch curve, with a key no version knows: loaded, key ignored
    r = EpochRecord.from_dict({"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.4, "other": 3})
    assert r.curve == () and r.test_acc == 0.4 and "other" not in r


def test_run_files_from_records_and_old_rows(tmp_path):
    run = RunDir(tmp_path)
    records = [EpochRecord.from_dict({**ROW, "epoch": 1}), EpochRecord.from_dict({**ROW, "val_acc": 0.7})]
    run.write_metrics(records)
    rows = read_metrics(run.metrics)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_acc"] == 0.7 and "curve" not in rows[0]
    run.write_steps(records)
    assert [s["step"] for s in run.read_steps()] == [10, 20, 10, 20]
    # metrics.csv rows read back (an older run folder's) draw as the records do
    curves_figure(rows, "old run")
    compare_figure([("old", rows), ("new", records)])
