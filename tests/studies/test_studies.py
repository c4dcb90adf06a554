"""Each study end to end at its --quick size on the real Fashion-MNIST: runs, table, figures, report."""

import json
from pathlib import Path

import pytest

from resdense.cli import main
from resdense.errors import UserError
from resdense.serve.compare import compare
from resdense.serve.evaluate import evaluate
from resdense.studies import degradation, efficiency, identity

PNG = b"\x89PNG\r\n\x1a\n"


def check_folder(result, figures: int, rows: int) -> dict:
    out = Path(result.out_dir)
    table = json.loads((out / "table.json").read_text())
    assert table == json.loads(json.dumps(result.table)) and len(table) == rows
    csv_lines = (out / "table.csv").read_text().splitlines()
    assert len(csv_lines) == rows + 1 and csv_lines[0].split(",") == list(table[0])
    assert len(result.figures) == figures
    for f in result.figures:
        assert f.read_bytes().startswith(PNG)
    report = result.report.read_text()
    # the verdict is the one the numbers gave, and the report says it; --quick never decides a claim
    assert result.outcome == "inconclusive" and "too small to decide" in result.inconclusive
    assert f"**Result: inconclusive.** {result.inconclusive}" in report
    assert result.verdict in report
    for f in result.figures:
        assert f"]({f.name})" in report
    runs = sorted(p for p in (out / "runs").iterdir())
    assert runs and all((r / "summary.json").exists() for r in runs)
    return {r.name: r for r in runs}


def test_degradation_quick(real_fashion_mnist_dir, real_fashion_mnist, tmp_path, capsys):
    out = tmp_path / "deg"
    r = degradation(out, quick=True, data_dir=real_fashion_mnist_dir)
    runs = check_folder(r, figures=1, rows=4)
    assert set(runs) == {"plain20-seed0", "plain32-seed0", "resnet20-seed0", "resnet32-seed0"}
    for row in r.table:
        hist = json.loads((runs[row["model"] + "-seed0"] / "summary.json").read_text())
        assert row["params"] == hist["params"]
        assert 0 <= row["train_error"] <= 1 and 0 <= row["test_error"] <= 1
    # the runs are ordinary run folders
    assert len(compare([runs["plain20-seed0"], runs["resnet20-seed0"]], plot=tmp_path / "c.png")) == 2
    scored = evaluate(runs["resnet32-seed0"], test_set=real_fashion_mnist.test.subset(500))
    # the curve against iterations: steps.csv of every run, plotted from it
    assert all((p / "steps.csv").exists() for p in runs.values())
    assert scored.n == 500 and 0 <= scored.accuracy <= 1

    # started again: every finished run is reused (no training), the same table comes out
    before = {n: (p / "model.safetensors").stat().st_mtime_ns for n, p in runs.items()}
    capsys.readouterr()
    again = degradation(out, quick=True, data_dir=real_fashion_mnist_dir)
    assert capsys.readouterr().out.count("reusing the finished run") == 4
    assert {n: (p / "model.safetensors").stat().st_mtime_ns for n, p in runs.items()} == before
    assert again.table == r.table
    # ... but never for other settings
    with pytest.raises(UserError, match="epochs"):
        degradation(out, quick=True, data_dir=real_fashion_mnist_dir, epochs=3)


def test_identity_quick(real_fashion_mnist_dir, tmp_path):
    r = identity(tmp_path / "id", quick=True, data_dir=real_fashion_mnist_dir)
    runs = check_folder(r, figures=1, rows=2)
    assert set(runs) == {"resnet20", "plain20", "resnet32-from-resnet20", "plain32-from-plain20"}
    res, plain = r.table
    # the deepened ResNet is checked to be the same function, so it starts at the same accuracy
    assert res["identical_outputs"] is True and res["max_abs_diff"] == 0.0
    assert res["deepened_start_test_acc"] == res["shallow_test_acc"]
    assert plain["identical_outputs"] is False and plain["max_abs_diff"] > 0
    # the continued run trained the deepened net (its config names the deep model)
    cfg = json.loads((runs["resnet32-from-resnet20"] / "config.json").read_text())
    assert cfg["model"] == "resnet32" and cfg["epochs"] == 1


def test_gradients_quick_from_the_command_line(real_fashion_mnist_dir, tmp_path, capsys):
    out = tmp_path / "grad"
    code = main(["study", "gradients", "--quick", "--data-dir", real_fashion_mnist_dir, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and f"report: {out / 'report.md'}" in printed
    table = json.loads((out / "table.json").read_text())
    # every conv and the classifier of a 20-layer net, input side first, four measurements each
    assert len(table) == 20 and table[0]["layer"] == "conv1" and table[-1]["layer"] == "fc"
    assert all(v > 0 for row in table for k, v in row.items() if k.startswith(("plain_", "resnet_")))
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["net"], s["seed"], s["when"]) for s in summary] == [
        ("plain20", 0, "init"),
        ("plain20", 0, "epoch 1"),
        ("resnet20", 0, "init"),
        ("resnet20", 0, "epoch 1"),
    ]
    assert (out / "gradients.png").read_bytes().startswith(PNG)
    assert "claim inconclusive" in printed and "claim held" not in printed and "NOT held" not in printed
    # at depth 20 the setting itself cannot show the claim, and the report says so
    assert "at depth 20" in (out / "report.md").read_text()


def test_efficiency_quick(real_fashion_mnist_dir, tmp_path):
    r = efficiency(tmp_path / "eff", quick=True, data_dir=real_fashion_mnist_dir)
    check_folder(r, figures=3, rows=2)
    by = {row["model"]: row for row in r.table}
    assert by["resnet20"]["family"] == "ResNet" and by["densenet_bc_40"]["family"] == "DenseNet"
    assert all(row["params"] > 0 and row["macs"] > 0 and row["train_seconds"] > 0 for row in r.table)
    report = r.report.read_text()
    assert "accuracy_vs_params.png" in report and "accuracy_vs_time.png" in report


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["degradation", "--depths", "20,21"], "--depths"),
        (["degradation", "--depth", "20"], "--depth does not apply"),
        (["identity", "--deep-depth", "20"], "--deep-depth"),
        (["efficiency", "--models", "resnet20,nope"], "unknown model 'nope'"),
        (["efficiency", "--models", "resnet20,resnet32"], "DenseNet"),
        (["gradients", "--epochs", "0"], "--epochs"),
        (["identity", "--widths", "16,32"], "--widths"),
        (["identity", "--seeds", "0,1"], "--seeds: the identity study trains one seed"),
        (["degradation", "--seeds", "0,0"], "--seeds"),
        (["degradation", "--seed", "1", "--seeds", "0,1"], "--seed and --seeds"),
        (["identity", "--paper"], "--paper"),
    ],
)
def test_bad_study_options_are_one_line_errors(capsys, tmp_path, argv, fragment):
    code = main(["study", *argv, "--quick", "--out", str(tmp_path / "s"), "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_a_net_near_chance_makes_degradation_inconclusive():
    """The degradation --quick said "NOT held" at 64-89% training error (chance: 90%)."""
    import importlib

    deg = importlib.import_module("resdense.studies.degradation")  # the module, not the function

    def rows(errors):
        kinds = ("plain", "plain", "residual", "residual")
        return [{"kind": k, "depth": d, "train_error": e} for k, d, e in zip(kinds, (20, 32) * 2, errors)]

    untrained = rows((0.64, 0.89, 0.70, 0.80))
    assert deg.judge(untrained)[0] is False  # the numbers alone would say "not held"
    assert "near chance" in deg.undecided(untrained, quick=False)
    assert "64%" in deg.undecided(untrained, quick=False)
    trained = rows((0.10, 0.20, 0.09, 0.08))
    assert deg.undecided(trained, quick=False) == ""
    assert "too small to decide" in deg.undecided(trained, quick=True)


def deg_rows(errors: dict) -> list[dict]:
    """Degradation table rows from {(kind, depth): [per-seed training errors]}, as the study writes them."""
    return [
        {"kind": k, "depth": d, "train_error": sum(e) / len(e), "train_errors": " ".join(map(str, e))}
        for (k, d), e in errors.items()
    ]


def test_degradation_is_judged_on_the_seeds_means_against_their_spread():
    import importlib

    deg = importlib.import_module("resdense.studies.degradation")
    clear = {
        ("plain", 20): [0.10, 0.11, 0.09],
        ("plain", 56): [0.20, 0.22, 0.21],
        ("residual", 20): [0.08, 0.09, 0.085],
        ("residual", 56): [0.07, 0.075, 0.08],
    }
    held, verdict = deg.judge(deg_rows(clear))
    assert held, verdict
    # a plain rise smaller than its noise is not a rise
    noisy = {**clear, ("plain", 56): [0.05, 0.20, 0.12]}
    held, verdict = deg.judge(deg_rows(noisy))
    assert not held and "does not clearly rise" in verdict
    # a residual net that ends clearly worse with depth fails part 2; within its noise it passes
    worse = {**clear, ("residual", 56): [0.12, 0.121, 0.122]}
    held, verdict = deg.judge(deg_rows(worse))
    assert not held and "(worse)" in verdict
    within = {**clear, ("residual", 56): [0.07, 0.10, 0.105]}
    held, verdict = deg.judge(deg_rows(within))
    assert held and "within the noise" in verdict
    # one seed: the numbers may say held, but there is no spread to weigh them against
    one = {k: v[:1] for k, v in clear.items()}
    assert "one seed" in deg.undecided(deg_rows(one), quick=False, seeds=(0,))
    assert deg.undecided(deg_rows(clear), quick=False, seeds=(0, 1, 2)) == ""


def test_gradients_are_judged_per_seed_against_the_literatures_bounds():
    import importlib

    grad = importlib.import_module("resdense.studies.gradients")

    def rows(plain_init, plain_trained, res_init, res_trained):
        out = []
        for net, when, ratios in (
            ("plain56", "init", plain_init),
            ("plain56", "epoch 2", plain_trained),
            ("resnet56", "init", res_init),
            ("resnet56", "epoch 2", res_trained),
        ):
            out += [
                {"net": net, "seed": i, "when": when, "early_late_ratio": r} for i, r in enumerate(ratios)
            ]
        return out

    held, verdict = grad.judge(rows([150, 120, 200], [0.3, 0.5, 0.4], [0.6, 0.7, 0.5], [0.6, 0.5, 0.7]))
    assert held, verdict
    # the plain net's trained gradients vanish (below 1/10): the paper's "healthy norms" fails
    held, verdict = grad.judge(rows([150, 120, 200], [0.01, 0.02, 0.015], [0.6, 0.7, 0.5], [0.6, 0.5, 0.7]))
    assert not held and "vanish (not clearly above 1/10x)" in verdict
    # an explosion in only one seed of three is not one the seeds agree on
    held, verdict = grad.judge(rows([300, 2, 3], [0.3, 0.5, 0.4], [0.6, 0.7, 0.5], [0.6, 0.5, 0.7]))
    assert not held and "do not clearly explode" in verdict


def test_study_settings_are_checked_by_the_training_declarations():
    """A study's shared settings (epochs, lr, schedule, ...) obey the same declarations as training's."""
    from resdense.studies.base import StudySettings, check_positive

    check_positive(StudySettings())
    for overrides, message in [
        ({"lr": -1.0}, "--lr must be positive, got -1"),
        ({"epochs": 0}, "--epochs must be >= 1, got 0"),
        ({"schedule": "sometimes"}, "--schedule: expected one of constant"),
        ({"warmup_epochs": float("nan")}, "--warmup-epochs must be a finite number"),
        ({"seeds": (0, -1)}, "--seeds must be >= 0, got -1"),
        ({"seeds": (1, 1)}, "--seeds: give distinct seeds"),
    ]:
        with pytest.raises(UserError) as e:
            check_positive(StudySettings().with_overrides(**overrides))
        assert message in str(e.value)
