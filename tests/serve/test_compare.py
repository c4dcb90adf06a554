"""``resdense.serve.compare``: finished runs side by side, as a table and a plot."""

import pytest

from resdense.errors import UserError
from resdense.rundir import RunDir
from resdense.serve.compare import COLUMNS, compare, format_table, read_run, table_rows

PNG = b"\x89PNG\r\n\x1a\n"


def metrics(accs: list[float | None]) -> list[dict]:
    """One metrics row per epoch; None: an epoch that was not scored."""
    rows = []
    for epoch, acc in enumerate(accs, 1):
        row = {
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            "train_acc": 0.5,
            "lr": 0.1,
            "seconds": 1.5,
            "images_per_s": 100.0,
        }
        if acc is not None:
            row["test_acc"] = acc
        rows.append(row)
    return rows


def summary(model: str, **kw) -> dict:
    s = {
        "model": model,
        "params": 1_234_567,
        "macs": 40_500_000,
        "test_accuracy": 0.91234,
        "best_test_accuracy": 0.92345,
        "images_per_s": 12_345.6,
        "seconds": 90.0,
        "epochs": 3,
        "device": "cpu",
    }
    s.update(kw)
    return s


def make_run(folder, summary_: dict, accs=(0.5, None, 0.75)):
    run = RunDir(folder)
    run.write_summary(summary_)
    run.write_config({"model": summary_["model"], "epochs": len(accs)})
    run.write_metrics(metrics(list(accs)))
    return folder


@pytest.fixture
def runs(tmp_path):
    resnet = make_run(tmp_path / "resnet", summary("resnet20"))
    densenet = make_run(
        tmp_path / "densenet",
        summary("densenet_bc_100", params=800_000, macs=1_234_500_000, test_accuracy=0.9, seconds=3600.0),
        accs=(0.6, 0.7, 0.8),
    )
    return [resnet, densenet]


def test_read_run(runs):
    r = read_run(runs[0])
    assert r["path"] == str(runs[0])
    assert r["summary"]["model"] == "resnet20"
    assert r["config"] == {"model": "resnet20", "epochs": 3}
    assert [m["epoch"] for m in r["metrics"]] == [1, 2, 3]
    assert "test_acc" not in r["metrics"][1]


def test_table_rows():
    runs = [
        {"path": "/somewhere/run-a", "summary": summary("resnet20")},
        {
            "path": "/elsewhere/run-b",
            "summary": {k: v for k, v in summary("x").items() if k not in ("macs", "device")},
        },
    ]
    a, b = table_rows(runs)
    assert a == {
        "run": "run-a",
        "model": "resnet20",
        "params": 1_234_567,
        "macs": 40_500_000,
        "test_accuracy": 0.91234,
        "best_test_accuracy": 0.92345,
        "images_per_s": 12_345.6,
        "seconds": 90.0,
        "epochs": 3,
        "device": "cpu",
        "settings": {},  # no config.json here: no setting differs
    }
    assert b["run"] == "run-b" and b["macs"] == 0 and b["device"] == ""
    assert table_rows([]) == []


def test_format_table_plain():
    rows = table_rows(
        [
            {"path": "r/short", "summary": summary("resnet20")},
            {
                "path": "r/a-much-longer-run-name",
                "summary": summary("densenet_bc_100", macs=1_234_500_000, images_per_s=999.4, seconds=3600.0),
            },
        ]
    )
    text = format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == [
        "run",
        "model",
        "params",
        "MACs",
        "test",
        "acc",
        "best",
        "acc",
        "img/s",
        "wall",
        "time",
    ]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    first = lines[1]
    assert first.startswith("short ")
    for cell in ("resnet20", "1.23 M", "40.5 M", "0.9123", "0.9234", "12,346", "1.5 min"):
        assert cell in first, cell
    second = lines[2]
    assert second.startswith("a-much-longer-run-name  densenet_bc_100")
    for cell in ("1,234.5 M", "999", "60.0 min"):
        assert cell in second, cell
    # numbers are right-aligned: every line ends at the same column
    assert lines[1].endswith("1.5 min") and lines[2].endswith("60.0 min")


def test_format_table_markdown():
    rows = table_rows([{"path": "x/run", "summary": summary("resnet20")}])
    lines = format_table(rows, markdown=True).splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    assert lines[1] == "|" + "---|" * len(COLUMNS)
    assert lines[2] == "| run | resnet20 | 1.23 M | 40.5 M | 0.9123 | 0.9234 | 12,346 | 1.5 min |"
    assert len(lines) == 3


def test_format_table_of_no_runs():
    assert format_table([]).splitlines()[0].split()[:2] == ["run", "model"]
    assert len(format_table([], markdown=True).splitlines()) == 2


def test_compare_with_plot(runs, tmp_path):
    plot = tmp_path / "plots" / "accuracy.png"
    rows = compare(runs, plot=plot)
    assert [r["run"] for r in rows] == ["resnet", "densenet"]  # in the order given
    assert rows == table_rows([read_run(p) for p in runs])
    assert rows[1]["model"] == "densenet_bc_100" and rows[1]["macs"] == 1_234_500_000
    assert plot.read_bytes()[:8] == PNG


def test_compare_without_plot(runs, tmp_path):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rows = compare([str(p) for p in reversed(runs)])
    assert [r["run"] for r in rows] == ["densenet", "resnet"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_compare_an_unfinished_run(runs, tmp_path):
    unfinished = tmp_path / "unfinished"
    RunDir(unfinished).write_config({"model": "resnet20"})
    RunDir(unfinished).write_metrics(metrics([0.5]))
    with pytest.raises(UserError, match=RunDir.SUMMARY) as e:
        compare([*runs, unfinished], plot=tmp_path / "p.png")
    assert "unfinished" in str(e.value)
    assert not (tmp_path / "p.png").exists()
    with pytest.raises(UserError, match="not a run folder"):
        compare([tmp_path / "nowhere"])


def test_differing_settings_and_seconds_under_a_minute():
    from resdense.serve.compare import differing_settings, format_seconds, format_settings

    runs = [
        {"config": {"model": "resnet20", "lr": 0.1, "epochs": 3, "out": "a"}},
        {"config": {"model": "resnet20", "lr": 0.05, "epochs": 3, "out": "b", "balance": "loss"}},
    ]
    diff = differing_settings(runs)
    assert diff == {"balance": [None, "loss"], "lr": [0.1, 0.05]}  # "out" is where, not a setting
    text = format_settings(diff, ["a", "b"])
    assert "lr: a 0.1 | b 0.05" in text and "balance: a None | b loss" in text
    assert format_settings({}, ["a", "b"]) == "settings: the same in every run"
    assert format_seconds(42.04) == "42.0 s" and format_seconds(90) == "1.5 min"
