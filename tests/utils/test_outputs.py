"""``utils.outputs``: one check for every output path, one name escaping, spreadsheet-safe CSV cells, pairs
written both or neither; and property tests (Hypothesis) of every writer that takes names: random file and
class names (bytes that are not UTF-8, newlines, formula prefixes, unicode) through CSV, text lists and JSON,
read back and compared."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resdense.errors import UserError
from resdense.serve.embed import Embeddings, write_embeddings
from resdense.serve.mistakes import Mistake, write_mistakes_csv
from resdense.serve.predict import Prediction, write_predictions
from resdense.utils.outputs import (
    FORMULA_STARTS,
    check_output,
    csv_cell,
    escape_name,
    read_csv_cell,
    unescape_name,
    write_together,
)

# few examples, reproducible: the suite's time and CI's verdict stay the same run to run
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# names as the file system gives them: any bytes but NUL and "/", decoded as os.fsdecode does (bytes that
# are not UTF-8 become surrogate escapes), with the nasty ones made likely
_nasty = st.sampled_from(["=", "+", "-", "@", "\t", "\r", "\n", "\\", "'", "\\n", "\\x41", "é", "😀", " "])
_raw = st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"\0", b"").replace(b"/", b"") or b"x")
NAMES = st.lists(st.one_of(_nasty, _raw.map(os.fsdecode), st.text(max_size=6)), min_size=1, max_size=4).map(
    "".join
)


# -- the check ---------------------------------------------------------------------------------------------


def test_check_output_refuses_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "old.csv").write_text("kept")
    cases = {
        "": "empty",
        str(tmp_path): "a folder",
        str(tmp_path / "out") + "/": "a folder",
        str(tmp_path / "missing" / "p.csv"): "does not exist",
        str(tmp_path / "file" / "p.csv"): "is a file, not a folder",
        str(tmp_path / "p.txt"): "expected a .csv or .json file name",
        str(tmp_path / "old.csv"): "exists; use --force",
    }
    for path, says in cases.items():
        with pytest.raises(UserError, match=says):
            check_output(path, suffixes=(".csv", ".json"))
    assert (tmp_path / "old.csv").read_text() == "kept"
    assert check_output(tmp_path / "old.csv", suffixes=(".csv",), force=True) == tmp_path / "old.csv"
    assert check_output(tmp_path / "new.json", suffixes=(".csv", ".json")) == tmp_path / "new.json"


def test_check_output_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="a file, not a folder"):
        check_output(tmp_path / "file", kind="folder")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output(tmp_path / "file" / "sub", kind="folder")
    assert check_output(tmp_path / "new" / "deeper", kind="folder") == tmp_path / "new" / "deeper"


# -- names and cells ---------------------------------------------------------------------------------------


def test_escape_name_cases() -> None:
    bad = os.fsdecode(b"caf\xe9.png")  # Latin-1, not UTF-8: a surrogate escape
    assert escape_name(bad) == "caf\\xe9.png"
    assert escape_name("a\nb\\c\rd") == "a\\nb\\\\c\\rd"
    assert escape_name("é😀") == "é😀" and escape_name("a\tb\x0bc") == "a\\u0009b\\u000bc"
    for name in (bad, "a\nb\\c\rd", "\\x41", "x\\n"):
        assert unescape_name(escape_name(name)) == name


def test_csv_cells_are_spreadsheet_safe() -> None:
    for start in FORMULA_STARTS:
        cell = csv_cell(f"{start}HYPERLINK(1)")
        # a tab or carriage return is escaped before the cell is made safe; the others get the quote
        assert cell.startswith("'" if start not in "\t\r" else "\\")
        assert read_csv_cell(cell) == f"{start}HYPERLINK(1)"
    assert csv_cell("'=x") == "''=x" and read_csv_cell("''=x") == "'=x"
    assert csv_cell("shoe.png") == "shoe.png" and csv_cell("'a") == "'a"


def _unsafe(cell: str) -> bool:
    return cell.startswith(FORMULA_STARTS)


@PROPERTY
@given(name=NAMES)
def test_property_escape_round_trip(name: str) -> None:
    text = escape_name(name)
    text.encode("utf-8")  # always valid UTF-8
    assert len(text.splitlines()) <= 1 and "\n" not in text  # one line for any reader
    assert unescape_name(text) == name
    cell = csv_cell(name)
    assert not _unsafe(cell) and read_csv_cell(cell) == name


# -- every writer ------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))


@PROPERTY
@given(names=st.lists(NAMES, min_size=1, max_size=4), cls=NAMES)
def test_property_predictions_csv_and_json(tmp_path: Path, names: list[str], cls: str) -> None:
    results = [Prediction(n, [(cls, 0.75)]) for n in names]
    rows = _read_csv(write_predictions(results, tmp_path / "p.csv"))
    assert [read_csv_cell(r["path"]) for r in rows] == names
    assert all(read_csv_cell(r["class"]) == cls for r in rows)
    assert not any(_unsafe(v) for r in rows for v in r.values())
    back = json.loads(write_predictions(results, tmp_path / "p.json").read_text("utf-8"))
    assert [unescape_name(r["path"]) for r in back] == names
    assert all(unescape_name(r["top"][0]["class"]) == cls for r in back)


@PROPERTY
@given(files=st.lists(NAMES, min_size=1, max_size=4), true=NAMES, wrong=NAMES)
def test_property_mistakes_csv(tmp_path: Path, files: list[str], true: str, wrong: str) -> None:
    mistakes = [Mistake(i, f, true, wrong, 0.9, 0.1) for i, f in enumerate(files)]
    rows = _read_csv(write_mistakes_csv(mistakes, tmp_path))
    assert [read_csv_cell(r["file"]) for r in rows] == files
    assert all(read_csv_cell(r["true"]) == true and read_csv_cell(r["predicted"]) == wrong for r in rows)
    assert not any(_unsafe(v) for r in rows for v in r.values())
    assert [unescape_name(json.loads(json.dumps(m.to_json()))["file"]) for m in mistakes] == files


@PROPERTY
@given(names=st.lists(NAMES, min_size=1, max_size=5))
def test_property_embed_file_list(tmp_path: Path, names: list[str]) -> None:
    result = Embeddings(np.zeros((len(names), 3), np.float32), names, "pooled")
    npy, txt = write_embeddings(result, tmp_path / "f", force=True)
    lines = txt.read_text("utf-8").splitlines()
    # one line per row, whatever the names hold
    assert len(lines) == np.load(npy).shape[0] and [unescape_name(x) for x in lines] == names


@PROPERTY
@given(names=st.lists(NAMES, min_size=1, max_size=4))
def test_property_bad_images_list(tmp_path: Path, names: list[str]) -> None:
    from types import SimpleNamespace

    from resdense.rundir import RunDir

    run = RunDir(tmp_path)
    run.write_bad_images([SimpleNamespace(path=n, reason=f"bad {n}") for n in names])
    rows = [line.split("\t") for line in run.bad_images.read_text("utf-8").splitlines()]
    assert [(unescape_name(p), unescape_name(r)) for p, r in rows] == [(n, f"bad {n}") for n in names]


# -- pairs -------------------------------------------------------------------------------------------------


def test_pair_written_both_or_neither(tmp_path: Path) -> None:
    def fails(tmp: Path) -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError):
        write_together([(tmp_path / "a.npy", lambda t: t.write_bytes(b"1")), (tmp_path / "a.txt", fails)])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    write_together(
        [(tmp_path / "a.npy", lambda t: t.write_bytes(b"1")), (tmp_path / "a.txt", lambda t: None)]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.txt"]


def test_embed_pair_is_both_or_neither(tmp_path: Path, monkeypatch) -> None:
    """The file list failing to write (a full disk; a name the old code could not encode) left the .npy
    without its .txt: now neither is written, and an old pair is kept whole."""
    result = Embeddings(np.zeros((1, 2), np.float32), ["a.png"], "pooled")

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(UserError, match="No space left"):  # one line naming the folder (utils.io)
        write_embeddings(result, tmp_path / "f")
    assert list(tmp_path.iterdir()) == []


def test_embed_out_folder_refused(tmp_path: Path) -> None:
    """``embed --out out/`` wrote ./out.npy."""
    result = Embeddings(torch.zeros(1, 2).numpy(), ["a.png"], "pooled")
    with pytest.raises(UserError, match="a folder"):
        write_embeddings(result, str(tmp_path / "out") + "/")
    assert list(tmp_path.iterdir()) == []
