"""``resdense list`` and ``resdense inspect``, through ``resdense.cli.main`` and the installed entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resdense.cli import main
from resdense.models import list_models

SHAPES = ["(64, 56, 56)", "(128, 28, 28)", "(256, 14, 14)", "(512, 7, 7)", "(512, 1, 1)", "(512)", "(10)"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_prints_the_books_shapes(capsys):
    code, out, err = run(capsys, "inspect", "d2l_resnet18", "--input-size", "1", "224", "224")
    assert code == 0 and err == ""
    assert out.splitlines()[0].startswith("d2l_resnet18")
    for shape in SHAPES:
        assert shape in out
    assert "11,178,378" in out
    assert "MACs" in out


def test_inspect_json(capsys):
    code, out, err = run(capsys, "inspect", "d2l_resnet18", "--input-size", "1", "224", "224", "--json")
    assert code == 0 and err == ""
    d = json.loads(out)
    assert set(d) == {"model", "input_size", "layers", "total_params", "macs", "feature_info"}
    assert d["model"] == "d2l_resnet18"
    # the feature points: the book's b1..b5, each map's side the input's over its reduction
    assert [(f["module"], f["num_chs"], 224 // f["reduction"]) for f in d["feature_info"]] == [
        ("0", 64, 56),
        ("1", 64, 56),
        ("2", 128, 28),
        ("3", 256, 14),
        ("4", 512, 7),
    ]
    assert d["input_size"] == [1, 224, 224]
    assert d["total_params"] == 11_178_378
    assert isinstance(d["macs"], int) and d["macs"] > 1e9
    assert [row["output_shape"] for row in d["layers"]] == [
        [64, 56, 56],
        [64, 56, 56],
        [128, 28, 28],
        [256, 14, 14],
        [512, 7, 7],
        [512, 1, 1],
        [512],
        [10],
    ]
    for row in d["layers"]:
        assert {"name", "type", "output_shape", "params"} <= set(row)
    assert sum(row["params"] for row in d["layers"]) == d["total_params"]


def test_inspect_options(capsys):
    code, out, _ = run(capsys, "inspect", "resnet20", "--num-classes", "100", "--depth", "2", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["input_size"] == [3, 32, 32]  # the model's own default
    assert d["layers"][-1]["output_shape"] == [100]
    assert "layer1.0" in [row["name"] for row in d["layers"]]


def test_inspect_input_channels_build_the_model_for_them(capsys):
    code, out, _ = run(capsys, "inspect", "resnet18", "--input-size", "1", "64", "64", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["input_size"] == [1, 64, 64]
    assert d["layers"][0]["params"] == 64 * 1 * 7 * 7


def _one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"resdense {command}: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_unknown_model_exits_2_with_close_matches(capsys):
    code, out, err = run(capsys, "inspect", "resnt18")
    assert code == 2
    assert out == ""
    line = _one_line_error(err, "inspect")
    assert "resnt18" in line and "resnet18" in line


def test_input_too_small_exits_2(capsys):
    code, out, err = run(capsys, "inspect", "d2l_densenet", "--input-size", "1", "28", "28")
    assert code == 2
    assert out == ""
    line = _one_line_error(err, "inspect")
    assert "too small" in line and "(1, 28, 28)" in line


@pytest.mark.parametrize(
    "argv", [["--depth", "0"], ["--input-size", "0", "32", "32"]], ids=["depth", "input-size"]
)
def test_bad_options_exit_2(capsys, argv):
    code, _, err = run(capsys, "inspect", "resnet20", *argv)
    assert code == 2
    _one_line_error(err, "inspect")


def test_list_prints_every_model_with_parameter_counts(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["model", "params"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert list(rows) == list_models()
    assert rows["d2l_resnet18"] == "11,178,378"
    assert rows["d2l_densenet"] == "758,226"
    assert rows["resnet18"] == "11,689,512"
    assert rows["resnet20"] == "269,722"
    assert rows["densenet121"] == "7,978,856"


def test_list_pattern_and_json(capsys):
    code, out, _ = run(capsys, "list", "resnet[2-5]*", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list_models("resnet[2-5]*")
    assert [r["name"] for r in rows] == [
        "resnet34",
        "resnet50",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
    ]
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet56"]["params"] == 853_018
    assert by_name["resnet56"]["input_size"] == [3, 32, 32]
    assert by_name["resnet50"]["family"] == "resnet"


def test_list_without_matches_exits_2(capsys):
    code, out, err = run(capsys, "list", "nothing*")
    assert code == 2
    _one_line_error(err, "list")


def _entry_point() -> list[str]:
    script = Path(sys.executable).with_name("resdense")
    return [str(script)] if script.exists() else [sys.executable, "-m", "resdense"]


def test_real_entry_point():
    """The installed ``resdense`` script (or ``python -m resdense``) runs and exits 0."""
    ok = subprocess.run(
        [*_entry_point(), "inspect", "d2l_resnet18", "--input-size", "1", "224", "224"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1", **os.environ},
    )
    assert ok.returncode == 0, ok.stderr
    for shape in SHAPES:
        assert shape in ok.stdout


def test_output_into_a_closed_pipe_ends_quietly():
    """`resdense list | head`: the reader is gone before resdense writes; no traceback, exit 141.

    (`list 'resnet2*'` builds one small model only: the point is the closed pipe, not the listing.)"""
    import subprocess
    import sys

    p = subprocess.Popen(
        [sys.executable, "-m", "resdense", "list", "resnet2*"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    p.stdout.close()  # closed long before the child (importing torch) prints anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert err == ""


def test_inspect_weights_of_a_cropped_run_reports_the_crop(tmp_path, capsys) -> None:
    """A run trained on centre crops of resized images is fed the crop: inspect says so and walks that size."""
    import resdense
    from resdense.modelfile import ModelSpec, write_safetensors
    from resdense.preprocess import Preprocess
    from resdense.rundir import RunDir

    options = {"num_classes": 3, "in_chans": 1, "widths": [4, 8, 16]}
    model = resdense.create_model("resnet20", **options)
    spec = ModelSpec("resnet20", options, Preprocess(40, (0.5,), (0.25,), 1, crop=32), ["a", "b", "c"])
    run = RunDir(tmp_path / "run")
    write_safetensors(run.weights, model, spec)
    assert main(["inspect", "resnet20", "--weights", str(run.path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input_size"] == [1, 32, 32]
    assert out["weights"]["input_size"] == [1, 32, 32] and out["weights"]["resize"] == 40
    assert main(["inspect", "resnet20", "--weights", str(run.path)]) == 0
    text = capsys.readouterr().out
    assert "input (1, 32, 32)" in text and "resize 40 (square), centre crop 32" in text
