"""Training images/s of this checkout against another commit's, paired and interleaved: a speed regression
check for a change that should not change speed.

The other commit is checked out into a temporary git worktree; each round runs throughput.py's own
``--side ours`` measurement (a fresh process, ``--steps`` warm-up and timed steps) once from each tree, in
alternating order, so a noisy neighbour hits both alike. The ratio is this checkout's speed over the other's,
per round (the rounds pair up), with the median and the range.

    python benchmarks/regression.py --against HEAD~1 [--recipes d2l-resnet,d2l-densenet,fast] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402


def measure(tree: Path, recipe: str, steps: int, device: str) -> float:
    cmd = [
        sys.executable,
        str(tree / "benchmarks" / "throughput.py"),
        "--side",
        "ours",
        "--recipes",
        recipe,
        "--steps",
        str(steps),
        "--device",
        device,
    ]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}  # that tree's resdense, not the installed one
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if out.returncode:
        raise SystemExit(f"{tree} {recipe} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="HEAD~1", help="the commit to compare with (default HEAD~1)")
    ap.add_argument("--recipes", default="d2l-resnet,d2l-densenet,fast")
    ap.add_argument("--steps", type=int, default=4, help="warm-up steps and timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.against], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    print(
        f"machine: {machine()}; this checkout against {rev}; {args.steps} warm-up + {args.steps} timed "
        f"steps, {args.repeats} interleaved rounds",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), rev], cwd=ROOT, check=True)
        try:
            speeds: dict[tuple[str, str], list[float]] = {}
            for rnd in range(args.repeats):
                for recipe in args.recipes.split(","):
                    order = [("this", ROOT), ("other", other)]
                    for label, tree in order if rnd % 2 == 0 else order[::-1]:
                        v = measure(tree, recipe, args.steps, args.device)
                        speeds.setdefault((recipe, label), []).append(v)
                        print(f"  round {rnd + 1} {recipe:<13} {label:<6} {v:8.1f} img/s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
    print(f"\n{'recipe':<13} {'this img/s':>10} {'other':>10}  this / other, median [range]")
    for recipe in args.recipes.split(","):
        a, b = speeds[(recipe, "this")], speeds[(recipe, "other")]
        r = [x / y for x, y in zip(a, b)]
        print(
            f"{recipe:<13} {statistics.median(a):10.1f} {statistics.median(b):10.1f}  "
            f"{statistics.median(r):.3f}x [{min(r):.3f}-{max(r):.3f}]"
        )


if __name__ == "__main__":
    main()
