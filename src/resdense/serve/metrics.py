"""Classification metrics beyond top-1: top-5, per-class precision/recall/F1, macro-F1 and the expected
calibration error (ECE) with its reliability bins.

Hand-written in torch from the logits rather than taken from scikit-learn or torchmetrics: the figures need
a few sums over tensors already in hand, and those libraries would be a heavy dependency for them. The
definitions are scikit-learn's (``precision_recall_fscore_support``, ``f1_score(average="macro")``: a
class never predicted has precision 0, one never present recall 0, and the macro mean runs over the
classes present in the labels or the predictions) and Guo et al. 2017's ECE (15 equal-width bins of the
top-1 confidence, each ``(lo, hi]``; the weighted mean gap between accuracy and confidence).

Everything is kept as :class:`Tally` sums (O(classes), never a classes x classes matrix), so a run under
torchrun adds its processes' tallies and the metrics come out as if one process had scored them all, and
a data set with tens of thousands of classes costs a few vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["ECE_BINS", "TOP_K", "Tally", "classification_metrics", "expected_calibration_error"]

ECE_BINS = 15  # Guo et al. 2017's bin count
TOP_K = 5  # top-5 is reported where there are more classes than this


@dataclass
class Tally:
    """Sums from which every metric here follows; :meth:`add` a batch of logits at a time."""

    true_pos: torch.Tensor  # (classes,) images of the class predicted as it
    support: torch.Tensor  # (classes,) images of the class
    predicted: torch.Tensor  # (classes,) images predicted as the class
    top_k: torch.Tensor  # () images whose class is among the TOP_K highest logits
    bin_count: torch.Tensor  # (ECE_BINS,) images whose confidence falls in the bin
    bin_correct: torch.Tensor  # (ECE_BINS,) of which correct
    bin_confidence: torch.Tensor  # (ECE_BINS,) the sum of their confidences (float64)

    @classmethod
    def empty(cls, num_classes: int, device=None) -> Tally:
        def z(n=None, dtype=torch.long):
            return torch.zeros(() if n is None else n, dtype=dtype, device=device)

        return cls(
            z(num_classes),
            z(num_classes),
            z(num_classes),
            z(),
            z(ECE_BINS),
            z(ECE_BINS),
            z(ECE_BINS, torch.float64),
        )

    @property
    def n(self) -> int:
        return int(self.support.sum())

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> Tally:
        """Count one batch in (``logits`` (n, classes), ``labels`` (n,)); returns self."""
        k = self.support.numel()
        labels = labels.to(self.support.device).long()
        logits = logits.to(self.support.device).float()
        # softmax in fp32: bf16/fp16 logits would put whole groups of confidences on one bin edge
        conf, pred = logits.softmax(1).max(1)
        correct = pred == labels
        self.true_pos += torch.bincount(labels[correct], minlength=k)
        self.support += torch.bincount(labels, minlength=k)
        self.predicted += torch.bincount(pred, minlength=k)
        if k > TOP_K:
            self.top_k += (logits.topk(TOP_K, 1).indices == labels[:, None]).any(1).sum()
        # bin b holds (b/B, (b+1)/B]: ceil(conf * B) - 1, a confidence of exactly 0 in the first bin
        b = (conf.double() * ECE_BINS).ceil().long().sub(1).clamp(0, ECE_BINS - 1)
        self.bin_count += torch.bincount(b, minlength=ECE_BINS)
        self.bin_correct += torch.bincount(b[correct], minlength=ECE_BINS)
        self.bin_confidence += torch.bincount(b, weights=conf.double(), minlength=ECE_BINS)
        return self

    def reduced(self, reduce_sum) -> Tally:
        """This tally with every sum passed through ``reduce_sum`` (torchrun's all-reduce)."""
        return Tally(**{f.name: reduce_sum(getattr(self, f.name)) for f in fields(self)})

    def metrics(self, classes: list[str]) -> dict:
        """The metrics as ``resdense evaluate --json`` and a run's summary hold them."""
        tp, support, predicted = (t.double().cpu() for t in (self.true_pos, self.support, self.predicted))
        precision = tp / predicted.clamp(min=1)  # 0 where never predicted (scikit-learn's zero_division=0)
        recall = tp / support.clamp(min=1)
        denom = precision + recall
        f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(denom))
        seen = (support > 0) | (predicted > 0)
        n = self.n
        out: dict = {}
        if len(classes) > TOP_K:
            out["top5_accuracy"] = int(self.top_k) / max(1, n)
        out["macro_f1"] = float(f1[seen].mean()) if bool(seen.any()) else 0.0
        ece, bins = self._calibration()
        out["ece"] = ece
        out["calibration"] = {"bins": ECE_BINS, "reliability": bins}
        out["per_class"] = {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        }
        return out

    def _calibration(self) -> tuple[float, list[dict]]:
        count = self.bin_count.double().cpu()
        correct = self.bin_correct.double().cpu()
        confidence = self.bin_confidence.double().cpu()
        n = float(count.sum())
        rows, ece = [], 0.0
        for b in range(ECE_BINS):
            c = float(count[b])
            acc = float(correct[b]) / c if c else None
            conf = float(confidence[b]) / c if c else None
            if c:
                ece += c / n * abs(acc - conf)
            rows.append(
                {
                    "lo": b / ECE_BINS,
                    "hi": (b + 1) / ECE_BINS,
                    "count": int(c),
                    "accuracy": acc,
                    "confidence": conf,
                }
            )
        return ece, rows


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Top-5 (more than 5 classes), per-class precision/recall/F1, macro-F1 and the ECE of ``logits``."""
    return Tally.empty(len(classes), logits.device).add(logits, labels).metrics(classes)


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Guo et al.'s ECE over ``ECE_BINS`` equal-width bins of the top-1 softmax confidence."""
    return (
        Tally.empty(logits.shape[1], logits.device).add(logits, labels).metrics([""] * logits.shape[1])["ece"]
    )
