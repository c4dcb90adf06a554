"""A finished run's summary (``summary.json``): what was trained, the saved model's scores and how they
were obtained, what it took, on which machine, and which weights were kept."""

from __future__ import annotations

from ..serve.predictor import tta_views
from ..utils.device import cpu_model

__all__ = ["run_summary", "val_summary"]


def run_summary(t, test_acc: float, val_acc: float | None = None) -> dict:
    """The run's result. ``test_accuracy`` (and ``val_accuracy``) are the saved model's, scored as
    ``resdense evaluate`` scores it (``test_accuracy_from``); the earlier epochs' scores in the history are the
    training model's, in the training precision (``epoch_scores``); ``best_test_accuracy`` is the best of
    the history's."""
    h = t.history
    train_secs = sum(r.seconds for r in h)
    images = sum(r.seconds * r.images_per_s for r in h)
    return {
        "model": t.cfg.model,
        "recipe": t.cfg.recipe,
        "test_accuracy": test_acc,
        "test_accuracy_from": f"saved model, fp32, test-time views {tta_views(t.spec.tta_flip)}",
        "best_test_accuracy": max((r.test_acc for r in h if r.test_acc is not None), default=0.0),
        "epoch_scores": f"training model, {t.amp.dtype} (the last epoch: the saved model's)",
        **val_summary(t, val_acc),
        # top-5, per-class precision/recall/F1, macro-F1, ECE: the saved model's, from the logits it was scored on
        **t.saved_metrics.get("test", {}),
        "epochs": len(h),
        "seconds": round(t.elapsed, 2),
        "images_per_s": images / train_secs if train_secs else 0.0,
        "params": t.params,
        "macs": t.macs,
        "device": t.device_label(),
        "cpu": cpu_model(),  # the machine the time above was measured on (a model card says it)
        "amp": t.amp.dtype,
        "amp_reason": t.amp.reason,
        "world_size": t.dist.world_size,
        **(t.keeper.summary(len(h)) if t.keeper is not None else {}),
    }


def val_summary(t, val_acc: float | None) -> dict:
    if t.val_set is None or val_acc is None:
        return {}
    return {"val_accuracy": val_acc, "val_images": len(t.val_set)}
