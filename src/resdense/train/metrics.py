"""metrics.csv: one row per epoch, rewritten whole (atomically) after each epoch."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..utils.io import write_text

COLUMNS = ("epoch", "train_loss", "train_acc", "test_acc", "lr", "seconds", "images_per_s")


class MetricsLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write_all(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        # val_acc only for runs with a validation split (--val-split)
        cols = COLUMNS + (("val_acc",) if any("val_acc" in r for r in rows) else ())
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        write_text(self.path, buf.getvalue())


def read_metrics(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        # an empty cell is an epoch that was not scored (--eval-every): the key is left out, as in training
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]
