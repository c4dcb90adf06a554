"""Downloads for the data sets: the implementation lives in :mod:`resdense.utils.download` (models use it too)."""

from ..utils.download import download, format_progress

__all__ = ["download", "format_progress"]
