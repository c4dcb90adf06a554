"""Runs side by side: the d2l chapter's ResNet-versus-DenseNet comparison as a table and one plot."""

from __future__ import annotations

from pathlib import Path

from ..rundir import RunDir

COLUMNS = ("run", "model", "params", "MACs", "test acc", "best acc", "img/s", "wall time")


def read_run(path: str | Path) -> dict:
    """The summary, settings and metrics of a finished run folder."""
    return RunDir(path).read()


# settings that differ between any two runs without being a choice: where they ran, what they were called,
# and what the run settled from its settings ("plan": the device, precision, sizes; train/plan.py)
_NOT_SETTINGS = {"out", "torch", "data_source", "device", "preprocess", "plan"}


def differing_settings(runs: list[dict]) -> dict[str, list]:
    """The settings (config.json's keys) whose values are not the same in every run: name -> the runs'
    values, in order (None where a run lacks the setting, as an older run may)."""
    configs = [r.get("config", {}) for r in runs]
    keys = sorted({k for c in configs for k in c} - _NOT_SETTINGS)
    out = {}
    for k in keys:
        values = [c.get(k) for c in configs]
        if any(v != values[0] for v in values[1:]):
            out[k] = values
    return out


def format_seconds(seconds: float) -> str:
    """Under a minute in seconds, else in minutes (a 40-second run is not "0.7 min")."""
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def format_settings(diff: dict[str, list], names: list[str]) -> str:
    """One line per differing setting: ``lr: a 0.1 | b 0.05``; or a line saying there are none."""
    if not diff:
        return "settings: the same in every run"
    lines = ["settings that differ:"]
    for k, values in diff.items():
        lines.append(f"  {k}: " + " | ".join(f"{n} {v}" for n, v in zip(names, values)))
    return "\n".join(lines)


def table_rows(runs: list[dict]) -> list[dict]:
    rows = []
    diff = differing_settings(runs) if len(runs) > 1 else {}
    for i, r in enumerate(runs):
        s = r["summary"]
        rows.append(
            {
                "run": Path(r["path"]).name,
                "model": s["model"],
                "params": s["params"],
                "macs": s.get("macs", 0),
                "test_accuracy": s["test_accuracy"],
                "best_test_accuracy": s["best_test_accuracy"],
                "images_per_s": s["images_per_s"],
                "seconds": s["seconds"],
                "epochs": s["epochs"],
                "device": s.get("device", ""),
                "settings": {k: v[i] for k, v in diff.items()},  # those that differ from another run's
            }
        )
    return rows


def format_table(rows: list[dict], markdown: bool = False) -> str:
    cells = [
        (
            r["run"],
            r["model"],
            f"{r['params'] / 1e6:.2f} M",
            f"{r['macs'] / 1e6:,.1f} M",
            f"{r['test_accuracy']:.4f}",
            f"{r['best_test_accuracy']:.4f}",
            f"{r['images_per_s']:,.0f}",
            format_seconds(r["seconds"]),
        )
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(x) for x in col) for col in zip(COLUMNS, *cells)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*COLUMNS)] + [fmt.format(*c) for c in cells])


def compare(paths: list[str | Path], plot: str | Path | None = None) -> list[dict]:
    """Read the runs, write the test-accuracy plot (if ``plot``), return the table rows.

    In a notebook the plot is shown inline too."""
    runs = [read_run(p) for p in paths]
    if plot:
        from ..plots import compare_figure, save_figure
        from ..utils.notebook import show_figure

        fig = compare_figure([(Path(r["path"]).name, r["metrics"]) for r in runs])
        save_figure(fig, plot)
        show_figure(fig)
    return table_rows(runs)
