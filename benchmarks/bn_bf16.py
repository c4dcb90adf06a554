"""Does bf16 autocast itself spoil the batch-norm running statistics of a constant-learning-rate run?

Two checks on a finished run folder of a d2l recipe (constant lr, plain SGD: nothing but the weights and the
statistics carries from one step to the next, so a run can be continued from its saved model alone):

1. its statistics re-estimated from the same training images (``--bn-recalibrate``'s way, train/tricks.py)
   in fp32 and under bf16 autocast, each then scored on the test set: does computing them in bf16 cost?
2. ``--steps`` more training steps from its saved model in fp32, under bf16 autocast, and under bf16 with
   every batch norm run in fp32 (its input cast up, autocast off inside it), the same batches for all three;
   every 10 steps from step 20 on, the test accuracy with the running statistics as they stand (on
   ``--test-images`` test images): does a bf16 step leave the momentum average worse off?

Why: RESULTS section 21 found the bf16 runs of ``d2l-densenet`` 3-4 test points under fp32's as trained, all of
it in the running statistics, and guessed at batch norm computing in bf16; this tested the guess and found it
wrong (section 22: both checks give bf16 what fp32 gets; a third bf16 seed ended above all three fp32 ones).

    python benchmarks/bn_bf16.py RUN [RUN ...] [--steps 60] [--images 5000] [--test-images 2000] [--json F]
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump, machine  # noqa: E402
from bn_stats import reestimate, runs_parser  # noqa: E402
from resdense.data import load_dataset  # noqa: E402
from resdense.rundir import RunDir  # noqa: E402
from resdense.serve.load import load_predictor  # noqa: E402

VARIANTS = ("fp32", "bf16", "bf16, batch norm in fp32")


def _bn_in_fp32(self, x):
    with torch.autocast("cpu", enabled=False):
        return nn.BatchNorm2d.forward(self, x.float())


@contextlib.contextmanager
def batch_norm_in_fp32(model: nn.Module, on: bool):
    """Every ``BatchNorm2d`` of ``model`` runs in fp32 under autocast while inside (its instances' forward
    replaced, the class untouched)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)] if on else []
    for m in norms:
        m.forward = _bn_in_fp32.__get__(m)
    try:
        yield
    finally:
        for m in norms:
            del m.forward


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def continued(predictor, base: dict, data, variant: str, steps: int, lr: float, batch: int, tx, ty) -> list:
    model = predictor.model
    model.load_state_dict(base)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))  # one order for all
    scores = []
    for s in range(steps):
        idx = order[s * batch : (s + 1) * batch]
        x = predictor.spec.preprocess(data.train.images[idx]).contiguous(memory_format=torch.channels_last)
        with (
            batch_norm_in_fp32(model, variant == VARIANTS[2]),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant != "fp32"),
        ):
            loss = F.cross_entropy(model(x).float(), data.train.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s + 1 >= 20 and (s + 1) % 10 == 0:
            scores.append(accuracy(model, tx, ty))
    return scores


def main() -> None:
    ap = runs_parser(__doc__, 5000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--test-images", type=int, default=2000, help="test images scored in check 2")
    args = ap.parse_args()
    print(machine())
    data = load_dataset("fashion-mnist", progress=False)
    rows = []
    for run in args.runs:
        t = time.perf_counter()
        config = RunDir(run).read_config()
        if config["schedule"] != "constant" or config["momentum"] or config["optimizer"] != "sgd":
            sys.exit(
                f"{run}: not a constant-lr plain-SGD run (a d2l recipe); its continuation needs more state"
            )
        predictor = load_predictor(run, progress=False)
        model, base = predictor.model, copy.deepcopy(predictor.model.state_dict())
        tx = predictor.spec.preprocess(data.test.images[: args.test_images])
        tx, ty = tx.contiguous(memory_format=torch.channels_last), data.test.labels[: args.test_images]
        row = {
            "run": run,
            "test_as_saved": accuracy(model.eval(), tx, ty),
            "reestimated": {},
            "continued": {},
        }
        for precision in ("fp32", "bf16"):
            model.load_state_dict(base)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                reestimate(predictor, data.train, args.images, config["batch_size"])
            row["reestimated"][precision] = accuracy(model, tx, ty)
        for variant in VARIANTS:
            scores = continued(
                predictor, base, data, variant, args.steps, config["lr"], config["batch_size"], tx, ty
            )
            row["continued"][variant] = {"scores": scores, "mean": statistics.mean(scores)}
        rows.append(row)
        cont = "; ".join(
            f"{v}: mean {r['mean']:.4f} ({', '.join(f'{a:.3f}' for a in r['scores'])})"
            for v, r in row["continued"].items()
        )
        print(
            f"{run}: test acc ({args.test_images} images) as saved {row['test_as_saved']:.4f}; statistics "
            f"re-estimated in fp32 {row['reestimated']['fp32']:.4f}, under bf16 {row['reestimated']['bf16']:.4f}; "
            f"{args.steps} more steps, as they stand every 10 from 20: {cont} ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    dump(args.json, {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
