"""Share a trained run: a folder the Hugging Face Hub shows and other tools read, and its upload.

``export_hub(run, out)`` writes, for the run's saved model:

* ``model.safetensors``: the run's model file as it is (its resdense spec inside, so ``--weights
  hf-hub:ORG/NAME`` gives the run's own predictions), with safetensors' ``format: pt`` key;
* ``config.json`` shaped as timm's (``architecture``, ``num_classes``, ``num_features``, ``model_args``,
  ``pretrained_cfg`` with mean/std, input size, interpolation and crop, ``label_names``): what
  ``timm.create_model("hf-hub:ORG/NAME", pretrained=True)`` reads for the families timm has;
* ``README.md``: the model card, from the run's summary and settings and a fresh scoring of the saved model
  on the run's test split (with and without its test-time views, per class), with the Hub's YAML metadata;
* the run's curves and the test's confusion matrix and worst mistakes as figures the card shows.

``push_to_hub(run, repo_id)`` uploads that folder through ``huggingface_hub`` (the token from its usual
places: ``HF_TOKEN``, the login cache), in one commit.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..modelfile import ModelSpec, read_safetensors
from ..models.registry import get_model_info
from ..rundir import RunDir
from ..utils.io import atomic_path
from .evaluate import evaluate_source

__all__ = [
    "DEFAULT_LICENSE",
    "HUB_DATASETS",
    "HUB_FORMAT",
    "export_hub",
    "hub_config",
    "push_to_hub",
    "timm_can_load",
]

CARD = "README.md"
HUB_FORMAT = "hub"  # resdense export --format hub
DEFAULT_LICENSE = "apache-2.0"  # the card's license unless told (resdense's own)
# the data sets resdense trains on, by their Hugging Face Hub ids (the card's ``datasets`` metadata)
HUB_DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist", "cifar10": "uoft-cs/cifar10"}
DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
# builder options timm's models take under the same names; a run with any other option (widths, depth of
# the CIFAR nets) is a resdense-only architecture
TIMM_OPTIONS = {"num_classes", "in_chans"}
FIGURES = (RunDir.CURVES, RunDir.CONFUSION, RunDir.RELIABILITY, RunDir.MISTAKES)


def timm_can_load(spec: ModelSpec) -> bool:
    """Whether timm builds this architecture under the same name and key names: torchvision's ResNets,
    ResNeXts, wide ResNets and DenseNets with no option beyond the classes and input channels."""
    try:
        info = get_model_info(spec.model)
    except Exception:
        return False
    return info.source.startswith("torchvision") and set(spec.options) <= TIMM_OPTIONS


def hub_config(spec: ModelSpec, num_features: int | None = None) -> dict:
    """timm's ``config.json`` for a model of ``spec``: how to build it and how to feed it."""
    pre = spec.preprocess
    side = pre.input_size
    n = len(spec.classes) or int(spec.options.get("num_classes", 0))
    cfg = {
        "input_size": [pre.in_chans, side, side] if side else [pre.in_chans, None, None],
        "interpolation": pre.interpolation,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "crop_pct": pre.crop_pct,
        "crop_mode": pre.crop_mode,
        "num_classes": n,
        "first_conv": None,
        "classifier": None,
    }
    cfg = {k: v for k, v in cfg.items() if v is not None}
    model_args = {k: v for k, v in spec.options.items() if k != "num_classes"}
    model_args.setdefault("in_chans", pre.in_chans)
    config = {
        "architecture": spec.model,
        "num_classes": n,
        "num_features": num_features,
        "model_args": model_args,
        "pretrained_cfg": cfg,
        "label_names": list(spec.classes),
        "library": "resdense",
        "test_time_views": "flip" if spec.tta_flip else "none",
    }
    return {k: v for k, v in config.items() if v is not None}


def _run_files(run: str | Path) -> tuple[RunDir, dict, dict]:
    path = Path(run)
    rd = RunDir(path)
    if not path.is_dir() or not rd.weights.exists():
        raise UserError(f"{run}: not a finished resdense run (no {RunDir.WEIGHTS} in it)")
    summary = rd.read_summary() if rd.summary.exists() else {}
    config = rd.read_config() if rd.config.exists() else {}
    return rd, summary, config


def export_hub(
    run: str | Path,
    out: str | Path,
    *,
    force: bool = False,
    license: str = DEFAULT_LICENSE,
    repo_id: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Write the Hub folder of the finished run ``run`` to ``out`` and return it.

    Args:
        run: a finished run folder (``resdense train``'s ``--out``).
        out: the folder to write; it must not exist, or be an earlier export when ``force``.
        force: replace an existing ``out`` (only one that holds an export: a ``config.json`` and card).
        license: the card's license (an SPDX id the Hub knows).
        repo_id: the Hub repository the card's loading examples name (default: a placeholder ORG/NAME).
        say: where progress lines go (default: nowhere).

    The folder is written beside ``out`` and renamed into place: an interrupted export leaves nothing half
    written."""
    rd, summary, config = _run_files(run)
    out = Path(out)
    if out.exists():
        held = out.is_dir() and (out / CARD).exists() and (out / RunDir.CONFIG).exists()
        if not force or not held:
            raise UserError(
                f"{out}: already exists" + (" (use --force to replace this export)" if held else "")
            )
    if not out.parent.is_dir():
        raise UserError(f"{out}: its folder {out.parent} does not exist")
    say = say or (lambda _msg: None)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_folder(rd, summary, config, stage, license, repo_id, say)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            stage.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def _write_folder(
    rd: RunDir, summary: dict, config: dict, stage: Path, license: str, repo_id: str | None, say
) -> None:
    from .card import hub_card
    from .load import load_model

    model, spec = load_model(rd.weights)
    _copy_with_format(rd.weights, stage / RunDir.WEIGHTS)
    (stage / RunDir.CONFIG).write_text(
        json.dumps(hub_config(spec, getattr(model, "num_features", None)), indent=2) + "\n", "utf-8"
    )
    # the card's figures are the saved model's, scored now on the run's own test split (its subset too)
    subset = int(config.get("test_subset") or 0)
    say(f"scoring {rd.path} on its test split (the card's figures)")
    plain = evaluate_source(rd.path, tta="none", test_subset=subset, out=stage)
    own = evaluate_source(rd.path, tta="auto", test_subset=subset, out=stage) if spec.tta_flip else plain
    (stage / RunDir.MISTAKES_CSV).unlink(missing_ok=True)  # the card shows the figure; the list stays local
    if (rd.path / RunDir.CURVES).exists():
        shutil.copyfile(rd.path / RunDir.CURVES, stage / RunDir.CURVES)
    figures = [name for name in FIGURES if (stage / name).exists()]
    card = hub_card(
        spec,
        summary=summary,
        config=config,
        accuracy=own.result.accuracy,
        accuracy_plain=plain.result.accuracy,
        views=own.views,
        per_class=own.result.per_class,
        n_test=own.result.n,
        figures=figures,
        library="timm" if timm_can_load(spec) else "resdense",
        hub_dataset=HUB_DATASETS.get(str(config.get("dataset"))),
        dataset_name=DATASET_NAMES.get(str(config.get("dataset")), str(config.get("dataset") or "images")),
        license=license,
        repo_id=repo_id,
    )
    (stage / CARD).write_text(card, "utf-8")


def _copy_with_format(src: Path, dst: Path) -> None:
    """The model file with safetensors' ``format: pt`` key (files written before resdense set it lack it):
    the tensors and every other key unchanged, the spec's digest still valid (it covers the spec only)."""
    from safetensors import safe_open
    from safetensors.torch import save

    state = read_safetensors(src).state_dict  # read whole: its digest checked before anything is shared
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") == "pt":
        shutil.copyfile(src, dst)
        return
    with atomic_path(dst) as tmp:
        tmp.write_bytes(save(state, metadata={"format": "pt", **meta}))


def push_to_hub(
    run: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    say: Callable[[str], None] | None = None,
) -> str:
    """Export the run ``run`` (:func:`export_hub`) and upload it to the Hub repository ``repo_id`` in one
    commit; returns the commit's URL.

    Args:
        run: a finished run folder.
        repo_id: ``ORG/NAME`` on the Hugging Face Hub (created if it does not exist).
        private: create the repository private (an existing one keeps its visibility).
        revision: the branch to commit to (created from the default branch if missing); default: main.
        commit_message: the commit's message (default: one naming the run and its test accuracy).
        say: where progress lines go (default: nowhere).

    The token comes from huggingface_hub's usual places (``HF_TOKEN``, the cache ``hf auth login`` writes);
    it is never printed. Offline, unauthorised and missing-repository cases are one-line ``UserError``s."""
    from ..models.hf_hub import hf_source

    hf_source(f"hf-hub:{repo_id}")  # the Hub's rule for repository ids, as for --weights hf-hub:
    try:
        import huggingface_hub as hf
    except ImportError:
        raise UserError("resdense push needs huggingface_hub: pip install 'resdense[hub]'") from None
    if not hf.get_token():
        raise UserError(
            f"{repo_id}: no Hugging Face token (set HF_TOKEN, or log in once with `hf auth login`)"
        )
    rd, summary, _config = _run_files(run)
    with tempfile.TemporaryDirectory(prefix="resdense-push-") as tmp:
        folder = export_hub(rd.path, Path(tmp) / "hub", repo_id=repo_id, say=say)
        acc = summary.get("test_accuracy")
        message = commit_message or (
            f"resdense: {rd.path.name}" + (f" (test accuracy {acc:.4f})" if isinstance(acc, float) else "")
        )
        api = hf.HfApi()
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="model",
                revision=revision,
                commit_message=message,
            )
        except Exception as e:  # huggingface_hub's and the HTTP client's errors, said in one line
            raise UserError(f"{repo_id}: cannot push ({hub_error(e)})") from None
    return str(getattr(info, "commit_url", info))


def hub_error(e: BaseException) -> str:
    """One line for an error of huggingface_hub or its HTTP client: offline, unauthorised, or its own."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status in (401, 403):
        return f"unauthorised (HTTP {status}): check the token's write access to this repository"
    name = type(e).__name__
    if (
        "Offline" in name
        or "Connect" in name
        or "Timeout" in name
        or isinstance(e, ConnectionError | OSError)
    ):
        return "cannot reach the Hugging Face Hub (offline?)"
    text = str(e).strip().splitlines()
    return (text[0] if text else name)[:200]
