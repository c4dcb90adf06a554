"""A served model's card: what it is (architecture, classes, preprocessing, how it runs) and what it was
trained on with its stated accuracy, from what its source records (a run's summary and settings, the
shipped weights' metadata). ``GET /model`` returns it and the page shows it."""

from __future__ import annotations

from pathlib import Path

from ..modelfile import read_safetensors
from ..models.pretrained import shipped_path, shipped_source, shipped_tag
from ..rundir import RunDir

__all__ = ["hub_card", "model_card"]

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


# -- the Hub's model card (README.md of an exported folder: serve/share.py) -----------------------------------

# settings that say where files were on the training machine, not how the model was trained
_LOCAL_SETTINGS = {"out", "data_dir", "data_source", "resume", "config", "tensorboard"}


def hub_card(
    spec,
    *,
    summary: dict,
    config: dict,
    accuracy: float,
    accuracy_plain: float,
    views: str,
    per_class: dict[str, float],
    n_test: int,
    figures: list[str],
    library: str,
    hub_dataset: str | None,
    dataset_name: str,
    license: str,
    repo_id: str | None = None,
) -> str:
    """The model card of an exported run: the Hub's YAML metadata (through huggingface_hub's
    ``ModelCardData``, so the keys and the ``model-index`` are spelled as the Hub reads them) and a body that
    says what was trained on what, how well the saved model scores, what it took and how to load it."""
    from huggingface_hub import EvalResult, ModelCardData

    from ..version import __version__

    repo = repo_id or "ORG/NAME"
    name = repo.split("/")[-1] if repo_id else f"{spec.model}-{config.get('dataset') or 'images'}"
    data = ModelCardData(
        library_name=library,
        pipeline_tag="image-classification",
        license=license,
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=["accuracy"],
        tags=sorted(
            {"resdense", "image-classification", spec.model} | ({"timm"} if library == "timm" else set())
        ),
        model_name=name,
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type=hub_dataset or "imagefolder",
                dataset_name=dataset_name,
                dataset_split="test",
                metric_type="accuracy",
                metric_value=round(float(accuracy), 4),
                metric_name=f"accuracy (test-time views: {views})",
            )
        ],
    )
    settings = {
        k: v
        for k, v in config.items()
        if k not in _LOCAL_SETTINGS
        and v not in (None, "", [], {})
        and isinstance(v, str | int | float | bool)
    }
    pre = spec.preprocess.describe()
    lines = [
        f"# {name}",
        "",
        f"A `{spec.model}` trained with [resdense](https://pypi.org/project/resdense/) {__version__} on "
        f"{dataset_name} ({len(spec.classes)} classes), recipe `{config.get('recipe') or summary.get('recipe')}`, "
        f"{summary.get('epochs', config.get('epochs'))} epochs.",
        "",
        f"## Results: the saved model on the test split ({n_test:,} images)",
        "",
        "| test-time views | accuracy |",
        "|---|---|",
        f"| {views} (the model's own) | {accuracy:.4f} |",
    ]
    if views != "none":
        lines.append(f"| none | {accuracy_plain:.4f} |")
    lines += ["", "Per class (the model's own views):", "", "| class | accuracy |", "|---|---|"]
    lines += [f"| {_cell(c)} | {a:.4f} |" for c, a in per_class.items()]
    titles = {
        RunDir.CURVES: "training curves",
        RunDir.CONFUSION: "confusion matrix",
        RunDir.RELIABILITY: "reliability diagram (calibration)",
        RunDir.MISTAKES: "worst mistakes",
    }
    if figures:
        lines += [""] + [f"![{titles.get(f, f)}]({f})" for f in figures]
    lines += ["", "## Training", ""]
    took = [f"{summary['seconds']:,.1f} s" if isinstance(summary.get("seconds"), int | float) else None]
    if summary.get("device"):
        took.append(f"on {summary['device']}" + (f", {summary['cpu']}" if summary.get("cpu") else ""))
    if summary.get("images_per_s"):
        took.append(f"{summary['images_per_s']:,.0f} images/s")
    if summary.get("amp"):
        took.append(f"precision {summary['amp']}")
    lines.append("Training took " + ", ".join(t for t in took if t) + ".")
    if summary.get("params"):
        lines.append(
            f"The model has {summary['params']:,} parameters ({summary.get('macs', 0):,} MACs per image)."
        )
    lines += ["", "| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | `{_cell(v)}` |" for k, v in sorted(settings.items())]
    lines += [
        "",
        "## How to use",
        "",
        "With resdense (`pip install resdense[hub]`):",
        "",
        "```bash",
        f"resdense predict my-image.png --weights hf-hub:{repo}",
        "```",
        "",
        "```python",
        "import resdense",
        f'model = resdense.create_model("{spec.model}", weights="hf-hub:{repo}").eval()',
        "```",
    ]
    if library == "timm":
        lines += [
            "",
            "With timm (the same weights, the same logits):",
            "",
            "```python",
            "import timm",
            f'model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()',
            "```",
        ]
    lines += [
        "",
        "The input: 8-bit pixels times "
        f"{pre['pixel_scale']}, color mode {pre['color_mode']}, resize {pre['resize_mode']}"
        + (f" to {pre['resize']} ({pre['interpolation']})" if pre["resize"] else "")
        + (f", centre crop {pre['crop']}" if pre["crop"] else "")
        + f", then (x - mean) / std with mean {pre['mean']} and std {pre['std']}; the classes, in output "
        f"order: {', '.join(spec.classes)}.",
        "",
        "## Intended use and limits",
        "",
        f"A model of the {dataset_name} classes above, for learning, teaching and comparing architectures; its "
        "accuracy holds for images like its training set's (the same kind, size and framing) and says nothing "
        "of others. Not for decisions about people. "
        f"License: {license}.",
        "",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


def _cell(value) -> str:
    """A value as a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")
