"""One epoch of a run, as one typed record: :class:`EpochRecord`, the only place that knows a history row's
fields. The trainer makes one per epoch; the callbacks, the run folder's files (checkpoint, metrics.csv,
steps.csv), the figures and ``compare`` read it by attribute.

On disk a record is the plain mapping it always was (``to_dict``: the same keys, a score left out when the
epoch was not scored), so checkpoints stay ``weights_only`` data and older run folders load
(``from_dict``). A record is also a read-only mapping of those keys, so code written against the rows as
dicts (``row["test_acc"]``, ``"val_acc" in row``) reads it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

__all__ = ["EpochRecord"]


@dataclass(frozen=True, eq=False)  # equal to a mapping of the same keys and values (Mapping's __eq__)
class EpochRecord(Mapping):
    epoch: int  # 1-based
    train_loss: float = float("nan")
    train_acc: float = float("nan")
    lr: float = float("nan")  # at the epoch's last step
    seconds: float = 0.0  # training time (and its scoring)
    images_per_s: float = 0.0
    # the training loss and accuracy within the epoch: ``[step, loss, acc, lr]`` per window of steps
    curve: tuple = ()
    test_acc: float | None = None  # None: not scored this epoch (--eval-every, progressive resizing)
    val_acc: float | None = None  # None: no validation split (or not scored)

    @classmethod
    def from_dict(cls, row: Mapping) -> EpochRecord:
        """A record from a history row (a checkpoint's, or a metrics.csv row); keys it lacks take their
        defaults, keys it does not know are ignored."""
        if isinstance(row, EpochRecord):
            return row
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in known}
        if "curve" in values:
            values["curve"] = tuple(tuple(p) for p in values["curve"])
        return cls(**values)

    def to_dict(self) -> dict:
        """The row as history and metrics files hold it: a score left out when there is none."""
        return dict(self.items())

    def _keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    # -- the mapping view ----------------------------------------------------------------------------------
    def __getitem__(self, key: str):
        if key not in self._keys():
            raise KeyError(key)
        value = getattr(self, key)
        return [list(p) for p in value] if key == "curve" else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())
