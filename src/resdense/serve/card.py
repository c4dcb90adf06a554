"""A served model's card: what it is (architecture, classes, preprocessing, how it runs) and what it was
trained on with its stated accuracy, from what its source records (a run's summary and settings, the
shipped weights' metadata). ``GET /model`` returns it and the page shows it."""

from __future__ import annotations

from pathlib import Path

from ..modelfile import read_safetensors
from ..models.pretrained import shipped_path, shipped_source, shipped_tag
from ..rundir import RunDir

__all__ = ["model_card"]

_TRAINING_KEYS = ("recipe", "dataset", "epochs", "data_dir")


def _run_facts(src: Path) -> dict:
    run = RunDir.holding(src)
    if run is None:
        return {}
    facts = {}
    try:
        if run.summary.exists():
            summary = run.read_summary()
            facts.update({k: summary[k] for k in ("test_accuracy", "epochs") if k in summary})
        if run.config.exists():
            cfg = run.read_config()
            facts.update({k: cfg[k] for k in _TRAINING_KEYS if cfg.get(k) is not None and k not in facts})
    except Exception:  # a card is a courtesy: an unreadable summary leaves it shorter, nothing more
        pass
    return facts


def _shipped_facts(tag: str) -> dict:
    tag = shipped_tag(tag)
    extra = read_safetensors(shipped_path(tag)).extra
    cfg = extra.get("config", {})
    facts = {
        "weights": f"fashion-mnist:{tag}",
        "recipe": extra.get("recipe"),
        "dataset": cfg.get("dataset"),
        "epochs": cfg.get("epochs"),
        "test_accuracy": extra.get("test_accuracy"),
        "test_set": extra.get("test_set"),
        "command": extra.get("command"),
    }
    return {k: v for k, v in facts.items() if v is not None}


def model_card(predictor, source: str | Path | None = None) -> dict:
    """The card of ``predictor`` loaded from ``source`` (a run folder, a model file, a weights name)."""
    spec = predictor.spec
    pre = spec.preprocess
    trained: dict = {}
    if source is not None:
        tag = shipped_source(source)
        if tag is not None:
            trained = _shipped_facts(tag)
        elif Path(source).exists():
            trained = _run_facts(Path(source))
    return {
        "model": spec.model,
        "options": spec.options,
        "backend": predictor.backend,
        "source": str(source) if source is not None else None,
        "classes": list(spec.classes),
        "preprocess": {
            "input_size": pre.input_size,
            "resize": pre.resize,
            "fit": pre.fit,
            "in_chans": pre.in_chans,
            "mean": list(pre.mean),
            "std": list(pre.std),
        },
        "tta_flip": spec.tta_flip,
        "trained": trained,
    }
