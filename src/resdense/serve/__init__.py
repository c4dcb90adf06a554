"""Serving: trained models put to work. One door (:func:`load_predictor`) turns any source into a
:class:`Predictor`; evaluation, prediction, comparison, export and batch-norm fusion sit beside it.

Serving needs nothing from training (training uses serving's forward pass for its own evaluation).
"""

from .load import load_model, load_predictor, load_trained
from .predictor import Predictor, predict_logits, tta_forward

__all__ = ["Predictor", "load_model", "load_predictor", "load_trained", "predict_logits", "tta_forward"]
