"""The console's closing lines: a test accuracy far below the training accuracy comes with its likely cause."""

from types import SimpleNamespace

from resdense.record import EpochRecord
from resdense.train.callbacks import Console, running_stats_hint


def _finish(train_acc, test_acc):
    said = []
    t = SimpleNamespace(
        history=[EpochRecord(2, train_acc=train_acc)], total_steps=22, out_dir="runs/x", say=said.append
    )
    Console().on_train_end(t, {"test_accuracy": test_acc, "images_per_s": 100.0, "seconds": 3.0})
    return said


def test_a_short_run_far_below_its_training_accuracy_is_explained():
    # the d2l reader's run: --epochs 2 --train-subset 3000 ended at 0.155 test against 0.73 train
    said = _finish(0.73, 0.155)
    assert said[0].startswith("done: test accuracy 0.1550")
    assert len(said) == 2 and "running statistics" in said[1] and "22 training steps" in said[1]


def test_no_note_when_test_and_train_agree():
    assert _finish(0.93, 0.91) == [_finish(0.93, 0.91)[0]]
    assert running_stats_hint(0.80, 0.60, 100) == ""
