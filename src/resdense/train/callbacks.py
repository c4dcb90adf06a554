"""What happens around an epoch: small callbacks the training loop calls on the main process.

The loop calls ``on_train_start(trainer)`` once, ``on_epoch_end(trainer, row)`` after each epoch (``row`` is
the epoch's :class:`~resdense.record.EpochRecord`, already appended to ``trainer.history``) and ``on_train_end(trainer, summary)`` once.
The run folder's files, the console lines, the live notebook figure and TensorBoard are each one callback;
the last two import their libraries only when used, so a terminal user pays nothing for them.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch

from ..errors import UserError
from ..modelfile import unwrap, write_safetensors
from ..plots import curves_figure, save_figure
from ..record import EpochRecord


class Callback:
    """Override what you need; every hook does nothing by default."""

    def on_train_start(self, trainer) -> None:
        pass

    def on_epoch_end(self, trainer, row: EpochRecord) -> None:
        pass

    def on_train_end(self, trainer, summary: dict) -> None:
        pass


def _title(trainer) -> str:
    return f"{trainer.cfg.model} on {trainer.dataset.name}"


class RunFiles(Callback):
    """The run folder (:class:`~resdense.rundir.RunDir`): the checkpoint, the metrics and the curves each
    epoch; the weights and the summary at the end. Every file is written atomically. A resumed run rewrites
    the metrics and the curves from its checkpoint first: a kill between the checkpoint and them loses
    nothing, even when no epoch is left to train."""

    def on_train_start(self, trainer) -> None:
        if trainer.history:
            self._derived(trainer)

    def on_epoch_end(self, trainer, row: EpochRecord) -> None:
        trainer.run.save_checkpoint(trainer.state(row.epoch))
        self._derived(trainer)

    def _derived(self, trainer) -> None:
        run = trainer.run
        run.write_metrics(trainer.history)
        run.write_steps(trainer.history)
        save_figure(curves_figure(trainer.history, _title(trainer)), run.curves)

    def on_train_end(self, trainer, summary: dict) -> None:
        write_safetensors(trainer.run.weights, trainer.served_model(), trainer.spec)
        trainer.run.write_summary(summary)


class Console(Callback):
    """One line when training starts, one per epoch, one at the end (stdout; the bar is on stderr)."""

    def on_train_start(self, t) -> None:
        t.say(
            f"training {t.cfg.model} ({t.params:,} params, {t.macs / 1e6:,.1f} M MACs/image) on "
            f"{t.dataset.name} ({len(t.train_set):,} train / {len(t.test_set):,} test) "
            f"on {t.device_label()} ({t.amp.dtype}: {t.amp.reason}) for {t.cfg.epochs} epochs; "
            f"run folder {t.out_dir}"
        )

    def on_epoch_end(self, t, row: EpochRecord) -> None:
        t.say(
            f"epoch {row.epoch}/{t.cfg.epochs}: loss {row.train_loss:.4f}, train acc {row.train_acc:.4f}, "
            + (f"test acc {row.test_acc:.4f}, " if row.test_acc is not None else "")
            + (f"val acc {row.val_acc:.4f}, " if row.val_acc is not None else "")
            + f"{row.images_per_s:,.0f} img/s, {row.seconds:.1f}s"
        )

    def on_train_end(self, t, summary: dict) -> None:
        if "kept_because" in summary:  # --keep / --patience (train/keep.py): which weights are saved, and why
            t.say(f"kept: the weights of epoch {summary['kept_epoch']}, {summary['kept_because']}")
        t.say(
            f"done: test accuracy {summary['test_accuracy']:.4f}, {summary['images_per_s']:,.0f} images/s, "
            f"{summary['seconds']:.1f}s ({t.out_dir})"
        )
        if t.history:
            hint = running_stats_hint(t.history[-1].train_acc, summary["test_accuracy"], t.total_steps)
            if hint:
                t.say(hint)


# How far test accuracy may fall below training accuracy before the console says why it may have.
TRAIN_TEST_GAP = 0.25


def running_stats_hint(train_acc: float, test_acc: float, steps: int) -> str:
    """A note when test accuracy is far below training accuracy ("" otherwise).

    A short run's usual cause is batch norm, not overfitting: training uses each batch's own statistics,
    testing the running averages, which move by ``momentum`` (0.1) per step and lag far behind the weights
    after a few dozen steps (d2l's recipes cut to 2 epochs of 3,000 images: 0.72 train, 0.155 test).
    """
    if not train_acc - test_acc > TRAIN_TEST_GAP:
        return ""
    return (
        f"note: test accuracy {test_acc:.4f} is far below training accuracy {train_acc:.4f}. After {steps:,} "
        "training steps the batch norms' running statistics (used at test time) may not have settled: train "
        "for more steps (more --epochs or a larger --train-subset, or a smaller --batch-size) before reading "
        "the test figure"
    )


class LiveFigure(Callback):
    """d2l's Animator, done right: in a notebook, one figure output redrawn in place after every epoch."""

    def on_train_start(self, trainer) -> None:
        from ..utils.notebook import LiveImage

        self.image = LiveImage()

    def on_epoch_end(self, trainer, row: EpochRecord) -> None:
        self.image.update(curves_figure(trainer.history, _title(trainer), epochs=trainer.cfg.epochs))


# TensorBoard's tag for each metrics column: grouped as TensorBoard shows them (loss/..., accuracy/...);
# any other numeric column (a future one) is logged under its own name.
TB_TAGS = {
    "train_loss": "loss/train",
    "train_acc": "accuracy/train",
    "test_acc": "accuracy/test",
    "val_acc": "accuracy/val",
    "val_loss": "loss/val",
    "lr": "lr",
    "images_per_s": "images_per_s",
}
TB_SKIP = ("epoch", "seconds")


def summary_writer_class():
    """torch's SummaryWriter, or a one-line UserError when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "--tensorboard needs the tensorboard package: pip install 'resdense[tensorboard]'"
        ) from None
    return SummaryWriter


class TensorBoard(Callback):
    """Scalars per epoch (step = epoch number), plus the model graph and sample images once, into
    ``<run>/tensorboard``: ``tensorboard --logdir runs`` shows every run. A resumed run appends to the same
    folder and purges whatever a killed run logged after its checkpoint, so every epoch appears once."""

    def __init__(self, samples: int = 16):
        self.writer_class = summary_writer_class()  # fails here, before any data is read
        self.samples = samples

    def on_train_start(self, trainer) -> None:
        log_dir = trainer.run.tensorboard
        first = not any(log_dir.glob("events.out.tfevents.*"))
        # epochs after the checkpoint (start_epoch) may have been logged before a crash: TensorBoard's reader
        # drops events from step purge_step on that precede this session's start marker
        purge = trainer.start_epoch + 1 if not first else None
        self.writer = self.writer_class(log_dir=str(log_dir), purge_step=purge)
        if first:
            self._graph_and_images(trainer)
        self.writer.flush()

    def _graph_and_images(self, trainer) -> None:
        images = trainer.train_set.sample(self.samples)  # in memory or streamed alike
        self.writer.add_images("samples", images.cpu(), 0, dataformats="NCHW")
        x = trainer.preprocess(images[:2])
        # traced on an eval-mode copy: tracing the training model would update its batch-norm statistics
        model = copy.deepcopy(unwrap(trainer.model)).eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter says nothing about the model
            try:
                self.writer.add_graph(model, x.contiguous())
            except Exception as e:  # a model the tracer cannot follow still gets its scalars
                trainer.say(f"tensorboard: no model graph ({type(e).__name__}: {str(e).splitlines()[0]})")

    def on_epoch_end(self, trainer, row: EpochRecord) -> None:
        for key, value in row.items():
            if key not in TB_SKIP and isinstance(value, int | float):
                self.writer.add_scalar(TB_TAGS.get(key, key), value, row.epoch)
        self.writer.flush()  # on disk before the checkpoint: a crash cannot lose a checkpointed epoch

    def on_train_end(self, trainer, summary: dict) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


def default_callbacks(*, progress: bool = True, tensorboard: bool = False) -> list[Callback]:
    """The run's own callbacks, in order: TensorBoard first (flushed before the checkpoint is written), the
    run folder, the console lines, and in a notebook (when ``progress``) the live figure."""
    from ..utils.notebook import in_notebook

    callbacks: list[Callback] = [TensorBoard()] if tensorboard else []
    callbacks += [RunFiles(), Console()]
    if progress and in_notebook():
        callbacks.append(LiveFigure())
    return callbacks
