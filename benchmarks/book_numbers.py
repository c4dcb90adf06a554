"""The book's 10-epoch numbers, reproduced: a d2l recipe in fp32 and under bf16 autocast, several seeds each,
run as a user runs it (``resdense train --recipe R --amp no|yes --seed S``).

Why: a d2l recipe may follow ``--amp auto`` only once bf16 is shown to keep the book's numbers (issue 20):
the last epoch's training loss and training accuracy within the seed-to-seed spread of the runs. The table gives
each run's final training loss, training accuracy and test accuracy beside the book's
(``resdense.train.recipes.BOOK_RESULTS``), the mean of each precision, bf16 - fp32, the spread, and the
verdict by that rule: for both training figures, |mean(bf16) - mean(fp32)| <= the spread, where the spread is
the widest max - min between seeds of one precision (so at least one precision needs two seeds).

Accuracy does not depend on wall time, so runs may share the machine: ``--jobs 2`` runs two at a time, each
with its share of the cores (the wall times then mean nothing). A finished run folder under ``--out`` is
read, not rerun, and an unfinished one is resumed: the script can be stopped and started again, or pointed
at runs made by hand under the same names (``OUT/fp32-s0``, ``OUT/bf16-s1``, ...).

    python benchmarks/book_numbers.py [--recipe d2l-densenet] [--seeds 0,1] [--amp no,yes] [--jobs 1]
                                      [--runs no:0,yes:0,yes:1] [--out runs/book/RECIPE] [--json F]
                                      [--extra "--train-subset 512"]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump, machine  # noqa: E402
from resdense.rundir import RunDir  # noqa: E402
from resdense.train.recipes import BOOK_RESULTS  # noqa: E402
from resdense.utils.amp import AMP_MODES, cpu_flags, decide_amp  # noqa: E402

FORCED = tuple(m for m in AMP_MODES if m != "auto")  # the --amp values that fix the precision: no, yes
COMPARED = ("train_loss", "train_acc")  # the figures bf16 must keep; test accuracy is shown, not judged
# (with a constant lr of 0.1 and no momentum, the book's last-epoch test accuracy swings by points between
# re-runs of the same code; its training figures hardly move)


def precision(amp: str) -> str:
    """'fp32' or 'bf16' for a forced ``--amp`` value: the decision training itself makes (utils/amp.py)."""
    return decide_amp(amp, torch.device("cpu")).dtype


def run_folder(out: Path, amp: str, seed: int) -> Path:
    return out / f"{precision(amp)}-s{seed}"


def train_command(recipe: str, amp: str, seed: int, folder: Path, extra: list[str]) -> list[str]:
    """The user's command for one run; a folder with a checkpoint is resumed instead (its own settings)."""
    if RunDir(folder).resumable:
        return [sys.executable, "-m", "resdense", "train", "--resume", str(folder), "--no-progress"]
    return [
        sys.executable,
        "-m",
        "resdense",
        "train",
        "--recipe",
        recipe,
        "--amp",
        amp,
        "--seed",
        str(seed),
        "--out",
        str(folder),
        "--no-progress",
        *extra,
    ]


def ensure_run(recipe: str, amp: str, seed: int, out: Path, extra: list[str], threads: int | None) -> Path:
    folder = run_folder(out, amp, seed)
    if RunDir(folder).finished:
        return folder
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads: the jobs share the cores
    log = out / f"{folder.name}.log"
    with open(log, "w") as f:
        rc = subprocess.call(
            train_command(recipe, amp, seed, folder, extra), stdout=f, stderr=subprocess.STDOUT, env=env
        )
    if rc != 0 or not RunDir(folder).finished:
        raise SystemExit(f"book_numbers: the run {folder} failed (exit {rc}); see {log}")
    return folder


def read_run(folder: Path) -> dict:
    """The last epoch's figures of a finished run, and what it computed in."""
    run = RunDir(folder).read()
    last = run["metrics"][-1]
    return {
        "folder": str(folder),
        "amp": run["summary"]["amp"],
        "seed": run["config"]["seed"],
        "epochs": last["epoch"],
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "test_acc": run["summary"]["test_accuracy"],
        "seconds": run["summary"]["seconds"],
    }


def verdict(runs: list[dict]) -> dict:
    """Means per precision, bf16 - fp32 and the seed spread for each figure; ``keeps`` is True/False by the
    rule in the module's docstring, None where it cannot be told (a precision missing, or no two seeds)."""
    groups: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    for r in runs:
        groups[r["amp"]].append(r)  # the summary's amp: what the run computed in (AmpDecision.dtype)
    out: dict = {"n": {p: len(g) for p, g in groups.items()}, "figures": {}}
    keeps: bool | None = True
    for key in (*COMPARED, "test_acc"):
        vals = {p: [r[key] for r in g] for p, g in groups.items() if g}
        spreads = [max(v) - min(v) for v in vals.values() if len(v) >= 2]
        fig = {f"mean_{p}": statistics.fmean(v) for p, v in vals.items()}
        fig["spread"] = max(spreads) if spreads else None
        if len(vals) == 2:
            fig["bf16_minus_fp32"] = fig["mean_bf16"] - fig["mean_fp32"]
        out["figures"][key] = fig
        if key in COMPARED:
            if "bf16_minus_fp32" not in fig or fig["spread"] is None:
                keeps = None
            elif keeps is not None and abs(fig["bf16_minus_fp32"]) > fig["spread"]:
                keeps = False
    out["keeps"] = keeps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="d2l-densenet", choices=sorted(BOOK_RESULTS))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--amp", default="no,yes", help="which precisions: no (fp32), yes (bf16), or both")
    ap.add_argument("--runs", help="instead of --seeds x --amp: these AMP:SEED runs, e.g. no:0,yes:0,yes:1")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, each with its share of the cores")
    ap.add_argument("--out", type=Path, help="where the run folders go (default runs/book/RECIPE)")
    ap.add_argument(
        "--extra", default="", help="more `resdense train` options for every run (tests: a subset)"
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    amps = args.amp.split(",")
    if any(a not in FORCED for a in amps):
        raise SystemExit(f"--amp {args.amp!r}: expected no, yes or no,yes")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds {args.seeds!r}: expected whole numbers separated by commas") from None
    jobs = max(1, args.jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    plan = [(a, s) for s in seeds for a in amps]
    if args.runs:  # an explicit list instead of every seed in every precision
        try:
            plan = [(a, int(s)) for a, s in (item.split(":") for item in args.runs.split(","))]
        except ValueError:
            raise SystemExit(
                f"--runs {args.runs!r}: expected AMP:SEED pairs, e.g. no:0,yes:0,yes:1"
            ) from None
        if any(a not in FORCED for a, _ in plan):
            raise SystemExit(f"--runs {args.runs!r}: each AMP is no (fp32) or yes (bf16)")
    try:
        extra = shlex.split(args.extra)
    except ValueError as e:
        raise SystemExit(f"--extra {args.extra!r}: {e}") from None
    out = args.out or Path("runs/book") / args.recipe
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; bf16 flags: {', '.join(cpu_flags()) or 'none'}", flush=True)
    with ThreadPoolExecutor(jobs) as pool:
        folders = list(pool.map(lambda p: ensure_run(args.recipe, *p, out, extra, threads), plan))
    runs = [read_run(f) for f in folders]
    book = BOOK_RESULTS[args.recipe]
    print(
        f"\n{args.recipe}, the last epoch of each run (book: loss {book['train_loss']:.3f}, "
        f"train acc {book['train_acc']:.3f}, test acc {book['test_acc']:.3f})"
    )
    print("| run | epochs | train loss | train acc | test acc |\n|---|---|---|---|---|")
    print(f"| the book | 10 | {book['train_loss']:.3f} | {book['train_acc']:.3f} | {book['test_acc']:.3f} |")
    for r in runs:
        print(
            f"| {r['amp']} seed {r['seed']} | {r['epochs']} | {r['train_loss']:.4f} | "
            f"{r['train_acc']:.4f} | {r['test_acc']:.4f} |"
        )
    v = verdict(runs)
    for key, fig in v["figures"].items():
        parts = [
            f"{k} {x:+.4f}" if k == "bf16_minus_fp32" else f"{k} {x:.4f}"
            for k, x in fig.items()
            if x is not None
        ]
        print(f"{key}: " + ", ".join(parts))
    said = {
        True: "bf16 keeps the book's training figures (within the seed spread)",
        False: "bf16 moves a training figure by more than the seed spread",
        None: "cannot tell: it needs both precisions and two seeds of one",
    }[v["keeps"]]
    print(f"verdict: {said}")
    dump(
        args.json,
        {
            "machine": machine(),
            "flags": cpu_flags(),
            "recipe": args.recipe,
            "book": book,
            "extra": args.extra,
            "runs": runs,
            "verdict": v,
        },
    )


if __name__ == "__main__":
    main()
