"""Serving: trained models put to work. One door (:mod:`.load`: :func:`load_predictor` for any source,
:func:`load_source` for a command's model or ``--weights``, :func:`as_predictor` for what the Python API's
look-inside functions take) turns a source into a :class:`Predictor`, whose public methods (``fit_images``,
``forward``, ``predict_fitted``, ``predict_logits``, ``predict_images``, ``predict``) every other module
calls. Beside it: prediction of files and folders (:mod:`.predict`), evaluation (:mod:`.evaluate`:
:func:`evaluate_source` is ``resdense evaluate`` whole), explanations, feature maps and embeddings,
comparison, export, int8 and batch-norm fusion, sharing on the Hugging Face Hub (:mod:`.share`), and the HTTP
service.

Serving needs nothing from training (training uses serving's forward pass for its own evaluation).
"""

from .evaluate import EvalReport, evaluate_source
from .load import as_predictor, load_model, load_predictor, load_source, load_trained
from .predictor import Predictor, predict_logits, tta_forward
from .share import export_hub, push_to_hub

__all__ = [
    "EvalReport",
    "Predictor",
    "as_predictor",
    "evaluate_source",
    "export_hub",
    "load_model",
    "load_predictor",
    "load_source",
    "load_trained",
    "predict_logits",
    "push_to_hub",
    "tta_forward",
]
