"""Sharing a run (serve/share.py, issue 35): the Hub folder ``resdense export --format hub`` writes, read back
offline by resdense and by timm from a cache laid out as huggingface_hub lays it out; the upload with
huggingface_hub's API stood in for; the model card's figures; the ONNX file's self-description, and the
docs' onnxruntime-only example against ``resdense evaluate``. Never touches the network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import resdense
from resdense.cli import main
from resdense.serve import export_hub, load_model, load_predictor, push_to_hub
from resdense.serve.evaluate import evaluate_source
from tests.train.conftest import isolated, main_quiet, shared_finished_run, shared_idx_dir, train_args  # noqa: F401

REV = "0123456789abcdef0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parents[2]


def as_cached_repo(folder: Path, cache: Path, repo: str) -> None:
    """``folder`` as huggingface_hub's cache holds ``repo`` after a download (snapshots/REV, refs/main)."""
    base = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, base / "snapshots" / REV)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(REV)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline Hub cache that resdense (which reads the environment) and timm (huggingface_hub's
    constants, read when it was imported) both use."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture(scope="module")
def r18_run(tmp_path_factory) -> Path:
    """A one-epoch ResNet-18 run (a family timm has) on the tiny 4-class set, with flip TTA."""
    out = tmp_path_factory.mktemp("r18") / "run"
    argv = train_args(shared_idx_dir(tmp_path_factory), out, "--tta-flip", epochs=1)
    argv[argv.index("resnet20")] = "resnet18"
    del argv[argv.index("--model-options") : argv.index("--model-options") + 2]
    argv.remove("--no-tta-flip")
    code, stdout = main_quiet(argv)
    assert code == 0, stdout
    return out


def card_header(folder: Path) -> dict:
    return huggingface_hub.ModelCard.load(folder / "README.md").data.to_dict()


def test_hub_folder_of_a_timm_family_reads_back_in_resdense_and_timm(r18_run, hub_cache, tmp_path):
    import timm

    folder = export_hub(r18_run, tmp_path / "hub", repo_id="me/r18")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "confusion.png", "curves.png", "mistakes.png", "model.safetensors", "reliability.png",
    ]  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["format"] == "pt"
    config = json.loads((folder / "config.json").read_text())
    _, spec = load_model(r18_run)
    assert config["architecture"] == "resnet18" and config["num_classes"] == 4 == len(config["label_names"])
    assert config["num_features"] == 512 and config["model_args"] == {"in_chans": 1}
    pc = config["pretrained_cfg"]
    assert pc["input_size"] == [1, 28, 28] and pc["mean"] == list(spec.preprocess.mean)
    assert pc["crop_mode"] == "squash" and pc["crop_pct"] == 1.0 and pc["interpolation"] == "bilinear"
    assert card_header(folder)["library_name"] == "timm"

    as_cached_repo(folder, hub_cache, "me/r18")
    images = torch.randint(
        0, 256, (6, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    own = load_predictor(r18_run).predict_logits(images)
    hub = load_predictor("hf-hub:me/r18", weights=True).predict_logits(images)
    assert torch.equal(own, hub)  # the run's own predictions, exactly (its spec travels in the file)
    # timm builds the same net from config.json and gives the same logits on the same input
    net = timm.create_model("hf-hub:me/r18", pretrained=True).eval()
    assert net.pretrained_cfg["label_names"] == spec.classes
    x = spec.preprocess(images)
    ours, _ = load_model(r18_run)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ours.eval()(x), rtol=0, atol=1e-6)


def test_card_renders_the_saved_models_figures(r18_run, tmp_path, capsys):
    assert main(["export", str(r18_run), "--format", "hub", "--out", str(tmp_path / "hub")]) == 0
    assert "wrote" in capsys.readouterr().out
    card = (tmp_path / "hub" / "README.md").read_text()
    header = card_header(tmp_path / "hub")
    own = evaluate_source(r18_run, tta="auto")
    plain = evaluate_source(r18_run, tta="none")
    assert header["pipeline_tag"] == "image-classification" and header["metrics"] == ["accuracy"]
    assert header["license"] == "apache-2.0"
    [result] = header["model-index"][0]["results"]
    assert result["metrics"][0]["type"] == "accuracy"
    assert result["metrics"][0]["value"] == round(own.result.accuracy, 4)
    assert f"| flip (the model's own) | {own.result.accuracy:.4f} |" in card
    assert f"| none | {plain.result.accuracy:.4f} |" in card
    for name, acc in own.result.per_class.items():
        assert f"| {name} | {acc:.4f} |" in card
    summary = json.loads((r18_run / "summary.json").read_text())
    assert summary["cpu"] in card and f"{summary['seconds']:,.1f} s" in card
    for fig in ("curves.png", "confusion.png", "reliability.png", "mistakes.png"):
        assert f"]({fig})" in card
    assert 'timm.create_model("hf-hub:ORG/NAME", pretrained=True)' in card
    assert "| `epochs` | `1` |" in card and "data_dir" not in card  # settings, not local paths
    # an existing folder is not replaced without --force; with it, it is
    assert main(["export", str(r18_run), "--format", "hub", "--out", str(tmp_path / "hub")]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(r18_run), "--format", "hub", "--out", str(tmp_path / "hub"), "--force"]) == 0


def test_resdense_only_family_says_so(tmp_path_factory, tmp_path, hub_cache):
    run, _ = shared_finished_run(tmp_path_factory)  # resnet20 with 4/8/16 channels: not a timm model
    folder = export_hub(run, tmp_path / "hub")
    assert card_header(folder)["library_name"] == "resdense"
    assert "timm.create_model" not in (folder / "README.md").read_text()
    assert json.loads((folder / "config.json").read_text())["model_args"]["widths"] == [4, 8, 16]
    as_cached_repo(folder, hub_cache, "me/r20")
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(
        load_predictor(run).predict_logits(images),
        load_predictor("hf-hub:me/r20", weights=True).predict_logits(images),
    )


class FakeApi:
    """huggingface_hub.HfApi stood in for: records what would be sent."""

    calls: list = []
    fail: Exception | None = None

    def __init__(self, *a, **k):
        pass

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))
        if FakeApi.fail is not None:
            raise FakeApi.fail

    def create_branch(self, repo_id, **kw):
        FakeApi.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        files = sorted(p.name for p in Path(kw["folder_path"]).iterdir())
        card = (Path(kw["folder_path"]) / "README.md").read_text()
        FakeApi.calls.append(("upload_folder", files, card, kw))
        return huggingface_hub.CommitInfo(
            commit_url=f"https://huggingface.co/{kw['repo_id']}/commit/abc",
            commit_message=kw["commit_message"],
            commit_description="",
            oid="abc",
        )


@pytest.fixture
def fake_api(monkeypatch):
    FakeApi.calls, FakeApi.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    return FakeApi


def test_push_sends_one_commit_and_never_prints_the_token(r18_run, fake_api, capsys):
    code = main(
        [
            "push",
            str(r18_run),
            "--repo",
            "me/r18",
            "--private",
            "--revision",
            "v1",
            "--commit-message",
            "first",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "hf_secret_token_value" not in out + err
    assert [c[0] for c in fake_api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert fake_api.calls[0][1] == "me/r18" and fake_api.calls[0][2]["private"] is True
    _, files, card, kw = fake_api.calls[2]
    assert files == [
        "README.md",
        "config.json",
        "confusion.png",
        "curves.png",
        "mistakes.png",
        "model.safetensors",
        "reliability.png",
    ]
    assert kw["repo_id"] == "me/r18" and kw["revision"] == "v1" and kw["commit_message"] == "first"
    assert "hf-hub:me/r18" in card  # the card's loading lines name the repository
    assert "https://huggingface.co/me/r18" in out
    # the default message names the run and its accuracy
    fake_api.calls.clear()
    assert push_to_hub(r18_run, "me/r18").endswith("/commit/abc")
    assert re.match(r"resdense: run \(test accuracy 0\.\d{4}\)", fake_api.calls[-1][3]["commit_message"])


def test_push_errors_are_one_line(r18_run, fake_api, monkeypatch, capsys):
    import httpx

    response = httpx.Response(401, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
    fake_api.fail = huggingface_hub.errors.HfHubHTTPError("401 Client Error", response=response)
    assert main(["push", str(r18_run), "--repo", "me/r18"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unauthorised" in err and "me/r18" in err
    fake_api.fail = ConnectionError("Name or service not known")
    assert main(["push", str(r18_run), "--repo", "me/r18"]) == 2
    assert "offline" in capsys.readouterr().err
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["push", str(r18_run), "--repo", "me/r18"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err
    assert main(["push", str(r18_run), "--repo", "not a repo"]) == 2
    assert "ORG/NAME" in capsys.readouterr().err


def docs_example() -> str:
    text = (ROOT / "docs" / "deploy.md").read_text()
    return text.split("<!-- onnxruntime-example -->\n```python\n", 1)[1].split("```", 1)[0]


def test_onnx_metadata_and_the_docs_onnxruntime_example_match_evaluate(tmp_path_factory, tmp_path, capsys):
    """The docs' script, run where resdense cannot be imported, prints resdense evaluate's accuracy."""
    import onnx

    run, _ = shared_finished_run(tmp_path_factory)
    onnx_file = tmp_path / "m.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    _, spec = load_model(run)
    assert float(meta["pixel_scale"]) == 1 / 255 and meta["resize_mode"] == "squash"
    assert meta["interpolation"] == "bilinear" and json.loads(meta["classes"]) == spec.classes
    assert json.loads(meta["mean"]) == list(spec.preprocess.mean) and meta["tta"] == "none"
    # the run's test images as a folder of CLASS/IMAGE.png, scored by resdense evaluate and by the script
    data = tmp_path / "data"
    test = resdense.data.load_dataset("idx", str(shared_idx_dir(tmp_path_factory))).test
    for split in ("train", "test"):
        for i, (image, label) in enumerate(zip(test.images, test.labels.tolist())):
            folder = data / split / spec.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy()).save(folder / f"{i:03d}.png")
    capsys.readouterr()
    assert main(["evaluate", str(onnx_file), "--dataset", "folder", "--data-dir", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    script = tmp_path / "example.py"
    script.write_text(docs_example())
    blocker = tmp_path / "no-resdense"
    (blocker / "resdense").mkdir(parents=True)
    (blocker / "resdense" / "__init__.py").write_text("raise ImportError('resdense must not be needed')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script), str(onnx_file), str(data / "test")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"accuracy {report['accuracy']:.4f} on {len(test.labels)} images"
    assert len(docs_example().strip().splitlines()) <= 20


def test_torchscript_metadata_file(tmp_path_factory, tmp_path):
    run, _ = shared_finished_run(tmp_path_factory)
    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    extra = {"metadata.json": ""}
    torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    meta = json.loads(extra["metadata.json"])
    assert meta["color_mode"] == "L" and meta["layout"] == "NCHW" and float(meta["pixel_scale"]) == 1 / 255
    assert np.isclose(json.loads(meta["std"])[0], load_model(run)[1].preprocess.std[0])


def doc_commands(page: str, prefix: str) -> list[list[str]]:
    """The shell lines of ``docs/PAGE`` that start with ``prefix``, comments cut, split as a shell would."""
    import shlex

    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [
        shlex.split(line, comments=True) for b in blocks for line in b.splitlines() if line.startswith(prefix)
    ]


def test_the_share_and_deploy_pages_commands_run_as_written(r18_run, tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    shutil.copytree(r18_run, tmp_path / "runs" / "fast")
    monkeypatch.chdir(tmp_path)
    commands = doc_commands("share.md", "resdense export") + doc_commands("deploy.md", "resdense export")
    assert len(commands) == 4
    for argv in commands:
        assert main(argv[1:]) == 0, argv
    assert (tmp_path / "fast-hub" / "README.md").exists()
    for name in ("model.onnx", "model.pt", "model.int8.onnx"):
        assert (tmp_path / "runs" / "fast" / name).exists(), name


def test_export_names_the_repository_and_license_and_the_top_level_api(tmp_path_factory, tmp_path, capsys):
    run, _ = shared_finished_run(tmp_path_factory)
    argv = [
        "export",
        str(run),
        "--format",
        "hub",
        "--out",
        str(tmp_path / "hub"),
        "--repo",
        "me/r20",
        "--license",
        "mit",
    ]
    assert main(argv) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "--weights hf-hub:me/r20" in card and card_header(tmp_path / "hub")["license"] == "mit"
    assert (
        main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--repo", "me/x"])
        == 2
    )
    assert "--format hub only" in capsys.readouterr().err
    # the default license said explicitly is still an option onnx does not take
    argv = [
        "export",
        str(run),
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "m.onnx"),
        "--license",
        "apache-2.0",
    ]
    assert main(argv) == 2 and "--format hub only" in capsys.readouterr().err
    assert resdense.export_hub is export_hub and resdense.push_to_hub is push_to_hub
