"""``resdense evaluate``, ``predict`` and ``compare`` on runs trained here, through ``resdense.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from resdense.data import fashion_mnist
from resdense.data.fashion_mnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from resdense.data.idx import read_idx_bytes, write_idx_images, write_idx_labels
from resdense.errors import UserError
from tests.cli.conftest import cli
from tests.train.conftest import (
    assert_one_line_error,
    main_quiet,
    pattern_images,
    train_args,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
TINY_DENSENET = [
    "--model",
    "d2l_densenet",
    "--model-options",
    '{"growth_rate": 4, "num_convs_in_dense_blocks": [1, 1]}',
]


@pytest.fixture(scope="module")
def mirror_set(tmp_path_factory) -> Path:
    """Classes told apart by *columns*: a mirror image looks like another class (0 <-> 3, 1 <-> 2), so
    test-time flipping changes the predictions, and a scorer that forgets it gets another accuracy."""
    folder = tmp_path_factory.mktemp("mirror")
    g = torch.Generator().manual_seed(4)
    for split, n in (("train", 256), ("t10k", 64)):
        labels = torch.randint(0, 4, (n,), generator=g) if split == "train" else torch.arange(n) % 4
        images = pattern_images(labels, seed=n).transpose(1, 2).contiguous()
        write_idx_images(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx_labels(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="module")
def densenet_run(mirror_set, tmp_path_factory) -> Path:
    """A second, different run: a tiny d2l DenseNet, 2 epochs, evaluated with test-time flips."""
    out = tmp_path_factory.mktemp("runs") / "densenet-run"
    args = train_args(mirror_set, out, epochs=2)
    args[1:5] = TINY_DENSENET
    code, stdout = main_quiet([*args, "--tta-flip"])
    assert code == 0, stdout
    return out


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# -- evaluate ---------------------------------------------------------------------------------------------


# The densenet run is trained with --tta-flip on data whose mirror images look like another class:
# evaluate must apply the same flips to match the run's own figure.
@pytest.mark.parametrize("which", ["resnet", "densenet"])
def test_evaluate_matches_the_runs_summary_exactly(capsys, which, finished_run, densenet_run, tmp_path):
    run = finished_run[0] if which == "resnet" else densenet_run
    figures = tmp_path / "figs"
    code, out, err = cli(capsys, "evaluate", run, "--json", "--out", figures)
    assert code == 0, err
    d = json.loads(out)
    assert d["accuracy"] == summary(run)["test_accuracy"]  # exactly: same data, same preprocessing
    assert d["n"] == 64
    assert list(d["per_class_accuracy"]) == ["0", "1", "2", "3"] == d["classes"]
    for name in ("confusion.png", "mistakes.png"):
        assert (figures / name).read_bytes().startswith(PNG_MAGIC)
        assert str(figures / name) in d["figures"]
    confusion = torch.tensor(d["confusion"])
    assert confusion.shape == (4, 4) and confusion.sum() == 64
    assert confusion.trace().item() / 64 == pytest.approx(d["accuracy"])
    per_class = {c: (confusion[i, i] / confusion[i].sum()).item() for i, c in enumerate(d["classes"])}
    assert d["per_class_accuracy"] == pytest.approx(per_class)


def test_evaluate_writes_figures_beside_the_run_and_prints_a_table(capsys, finished_run):
    run, _ = finished_run
    code, out, err = cli(capsys, "evaluate", run)
    assert code == 0, err
    assert out.startswith(f"{run}: test accuracy {summary(run)['test_accuracy']:.4f} on 64 images")
    assert (run / "confusion.png").exists() and (run / "mistakes.png").exists()


def test_evaluate_is_the_python_apis_evaluate_source(capsys, finished_run, tmp_path):
    """The command only parses its options: its JSON and its text are evaluate_source's report, and the
    Python call writes the same files."""
    from resdense.serve import EvalReport, evaluate_source

    run, _ = finished_run
    code, out, err = cli(capsys, "evaluate", run, "--json", "--out", tmp_path / "cli")
    assert code == 0, err
    report = evaluate_source(run, out=tmp_path / "api")
    assert isinstance(report, EvalReport)
    assert report.result.accuracy == summary(run)["test_accuracy"]
    from_cli = json.loads(out)
    from_api = report.to_json()
    assert [Path(f).name for f in from_cli.pop("figures")] == [Path(f).name for f in from_api.pop("figures")]
    assert from_api == from_cli
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == [
        "confusion.png",
        "mistakes.csv",
        "mistakes.png",
        "reliability.png",  # the calibration figure (serve.metrics)
    ]
    code, out, err = cli(capsys, "evaluate", run, "--out", tmp_path / "api")
    assert code == 0, err
    assert out.splitlines() == report.lines()
    with pytest.raises(UserError, match="--test-subset"):
        evaluate_source(run, test_subset=-1)


def test_evaluate_not_a_run_is_one_line(capsys, tmp_path):
    code, _, err = cli(capsys, "evaluate", tmp_path / "nothing-here")
    assert_one_line_error(code, err, "nothing-here", command="evaluate")


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch) -> Path:
    """A tiny set in Fashion-MNIST's files that passes its checks (counts and checksums patched to it)."""
    folder = tmp_path / "fmnist"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    train_labels, test_labels = torch.randint(0, 10, (64,), generator=g), torch.arange(20) % 10
    write_idx_images(folder / f"{TRAIN_IMAGES}.gz", torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8))
    write_idx_labels(folder / f"{TRAIN_LABELS}.gz", train_labels)
    write_idx_images(folder / f"{TEST_IMAGES}.gz", torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8))
    write_idx_labels(folder / f"{TEST_LABELS}.gz", test_labels)
    import hashlib

    sums = {s: hashlib.sha256(read_idx_bytes(folder / f"{s}.gz")).hexdigest() for s in fashion_mnist.FILES}
    monkeypatch.setattr(fashion_mnist, "SHA256", sums)
    monkeypatch.setattr(fashion_mnist, "COUNTS", {"train": 64, "test": 20})
    return folder


def test_evaluate_fashion_mnist_run_names_the_real_classes(capsys, fake_fashion, tmp_path):
    run = tmp_path / "fm-run"
    args = train_args(fake_fashion, run, epochs=1)
    args[args.index("idx")] = "fashion-mnist"
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    code, out, err = cli(capsys, "evaluate", run, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert list(d["per_class_accuracy"]) == FASHION_CLASSES
    assert d["n"] == 20 and d["accuracy"] == summary(run)["test_accuracy"]
    code, out, _ = cli(capsys, "evaluate", run)
    assert "Ankle boot" in out and "T-shirt/top" in out


# -- predict ----------------------------------------------------------------------------------------------


def band_image(k: int, size: tuple[int, int], mode: str) -> Image.Image:
    """The class-k pattern of the training set, as a ``mode`` image of (width, height) ``size``."""
    grey = pattern_images(torch.tensor([k]), seed=9)[0].numpy()
    return Image.fromarray(grey, mode="L").resize(size, Image.BILINEAR).convert(mode)


def test_predict_odd_sizes_and_a_bad_file(capsys, finished_run, tmp_path):
    run, _ = finished_run
    a, b, c = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.txt"
    band_image(1, (37, 53), "RGB").save(a)  # 37x53 colour PNG of class 1
    band_image(3, (200, 90), "L").save(b, quality=95)  # 200x90 grey JPEG of class 3
    c.write_text("not an image\n")
    code, out, err = cli(capsys, "predict", run, a, b, c, "--json")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resdense predict: error:") and str(c) in lines[0]
    results = json.loads(out)
    assert [r["path"] for r in results] == [str(a), str(b), str(c)]
    for r in results[:2]:
        probs = [t["probability"] for t in r["top"]]
        assert len(probs) == 3 and all(0 <= p <= 1 for p in probs)
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert {t["class"] for t in r["top"]} <= {"0", "1", "2", "3"}
    # the images were preprocessed as in training: the model recognises the patterns
    assert results[0]["top"][0]["class"] == "1"
    assert results[1]["top"][0]["class"] == "3"
    assert "error" in results[2] and "top" not in results[2]


def test_predict_text_output_and_top(capsys, finished_run, tmp_path):
    run, _ = finished_run
    a = tmp_path / "a.png"
    band_image(2, (28, 28), "L").save(a)
    code, out, err = cli(capsys, "predict", run, a, "--top", "2")
    assert code == 0 and err == ""
    assert out.startswith(f"{a}: 2 ") and out.count(",") == 1
    code, _, err = cli(capsys, "predict", run, a, "--top", "0")
    assert_one_line_error(code, err, "--top", command="predict")


# -- compare ----------------------------------------------------------------------------------------------


def test_compare_two_runs(capsys, finished_run, densenet_run, tmp_path):
    run1, _ = finished_run
    plot = tmp_path / "cmp.png"
    code, out, err = cli(capsys, "compare", run1, densenet_run, "--plot", plot)
    assert code == 0, err
    lines = out.strip().splitlines()
    header = lines[0]
    for col in ("model", "params", "MACs", "test acc", "img/s", "wall time"):
        assert col in header
    rows = {line.split()[0]: line for line in lines[1:3]}
    assert set(rows) == {run1.name, densenet_run.name}
    for run, model in ((run1, "resnet20"), (densenet_run, "d2l_densenet")):
        s, row = summary(run), rows[run.name]
        assert model in row
        assert f"{s['params'] / 1e6:.2f} M" in row and f"{s['test_accuracy']:.4f}" in row
        wall = f"{s['seconds']:.1f} s" if s["seconds"] < 60 else f"{s['seconds'] / 60:.1f} min"
        assert f"{s['images_per_s']:,.0f}" in row and wall in row
    assert "settings that differ:" in out and "  model: " in out  # resnet20 against d2l_densenet
    assert plot.read_bytes().startswith(PNG_MAGIC)

    code, out, _ = cli(capsys, "compare", run1, densenet_run, "--json", "--plot", tmp_path / "p2.png")
    d = json.loads(out)
    assert [r["model"] for r in d] == ["resnet20", "d2l_densenet"]
    for r, run in zip(d, (run1, densenet_run)):
        s = summary(run)
        assert (r["params"], r["macs"], r["test_accuracy"]) == (s["params"], s["macs"], s["test_accuracy"])
        assert r["images_per_s"] == s["images_per_s"] and r["seconds"] == s["seconds"]


def test_compare_refuses_a_folder_that_is_not_a_run(capsys, finished_run, tmp_path):
    not_a_run = tmp_path / "photos"
    not_a_run.mkdir()
    (not_a_run / "a.png").write_bytes(b"")
    code, _, err = cli(capsys, "compare", finished_run[0], not_a_run, "--plot", tmp_path / "c.png")
    assert_one_line_error(code, err, str(not_a_run), command="compare")
    assert not (tmp_path / "c.png").exists()
    code, _, err = cli(capsys, "compare", tmp_path / "missing", "--plot", tmp_path / "c.png")
    assert_one_line_error(code, err, "missing", command="compare")


# -- test-time views (--tta) --------------------------------------------------------------------------------


def test_evaluate_tta_reproduces_the_runs_figure_and_other_views_are_its_choice(
    capsys, densenet_run, finished_run
):
    """--tta (the model file's own views: the flip the densenet run was scored with) gives the run's own test
    accuracy exactly; --tta none leaves the flip out, on data where mirror images look like another class."""
    code, out, err = cli(capsys, "evaluate", densenet_run, "--tta", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["tta"] == "flip" and d["accuracy"] == summary(densenet_run)["test_accuracy"]
    code, out, _ = cli(capsys, "evaluate", densenet_run, "--tta", "none", "--json")
    plain = json.loads(out)
    assert plain["tta"] == "none" and plain["accuracy"] != d["accuracy"]
    code, out, err = cli(capsys, "evaluate", finished_run[0], "--tta", "flip-translate")
    assert code == 0, err
    assert "(test-time views: flip-translate)" in out.splitlines()[0]
    with pytest.raises(SystemExit):
        cli(capsys, "evaluate", densenet_run, "--tta", "rotate")
    assert "invalid choice: 'rotate'" in capsys.readouterr().err


def test_predict_tta_changes_what_is_averaged(capsys, densenet_run, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(pattern_images(torch.tensor([1]), seed=3)[0].T.contiguous().numpy()).save(img)
    probs = {}
    for views in ("auto", "flip", "none"):
        code, out, err = cli(capsys, "predict", densenet_run, img, "--tta", views, "--json", "--top", "4")
        assert code == 0, err
        probs[views] = {t["class"]: t["probability"] for t in json.loads(out)[0]["top"]}
    assert probs["auto"] == probs["flip"] != probs["none"]


def test_evaluate_test_subset_scores_the_first_n_with_a_bar(capsys, finished_run, tmp_path, monkeypatch):
    """``--test-subset`` on ``evaluate``, as ``train``, ``study`` and the notebook have it; scoring has a bar."""
    from resdense.serve import evaluate as evaluate_module

    bars = []

    class Recorder:
        def __init__(self, total, desc="", enabled=True, **_):
            self.total, self.desc, self.enabled, self.done = total, desc, enabled, []
            bars.append(self)

        def update(self, done, postfix=""):
            self.done.append(done)

        def close(self):
            pass

    monkeypatch.setattr(evaluate_module, "ProgressBar", Recorder)
    run, _ = finished_run
    code, out, err = cli(capsys, "evaluate", run, "--test-subset", "20", "--out", tmp_path)
    assert code == 0, err
    assert " on 20 images" in out.splitlines()[0]
    assert [(b.desc, b.total, b.enabled, b.done[-1]) for b in bars] == [("scoring", 20, True, 20)]
    code, _, err = cli(capsys, "evaluate", run, "--test-subset", "-2")
    assert_one_line_error(code, err, "--test-subset", command="evaluate")
