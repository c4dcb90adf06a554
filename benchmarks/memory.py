"""Peak training memory of DenseNet-121, plain against ``memory_efficient=True``, measured in one run.

Each variant runs one forward/backward/SGD step (batch 64 of 1x224x224 images by default) in a fresh
subprocess, so one variant's allocations cannot hide the other's. On the CPU the figure is the growth of
the process's peak resident memory during the step (ru_maxrss); on a GPU, torch.cuda.max_memory_allocated.

    python benchmarks/memory.py [--quick] [--model densenet121] [--batch 64] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump, machine  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import torch
from resdense import create_model
model_name, batch, size, efficient, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
torch.manual_seed(0)
model = create_model(model_name, in_chans=1, num_classes=10, memory_efficient=efficient).to(device).train()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(batch, 1, size, size, device=device)
y = torch.randint(0, 10, (batch,), device=device)
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
before = rss_mb()
if device.startswith("cuda"):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
t = time.perf_counter()
loss = torch.nn.functional.cross_entropy(model(x), y)
loss.backward()
opt.step()
secs = time.perf_counter() - t
if device.startswith("cuda"):
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
print(json.dumps({"peak_mb": peak, "seconds": secs}))
"""


def measure(model: str, batch: int, size: int, efficient: bool, device: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model, str(batch), str(size), "1" if efficient else "0", device],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 16 at 1x224x224 (about a minute on 2 vCPUs)")
    ap.add_argument("--model", default="densenet121")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    batch = args.batch or (16 if args.quick else 64)
    print(
        f"machine: {machine()}; {args.model}, batch {batch} of 1x{args.size}x{args.size}, one training step"
    )
    plain = measure(args.model, batch, args.size, False, args.device)
    eff = measure(args.model, batch, args.size, True, args.device)
    ratio = eff["peak_mb"] / plain["peak_mb"]
    print(f"plain:            peak {plain['peak_mb']:8.0f} MiB, step {plain['seconds']:6.1f} s")
    print(f"memory_efficient: peak {eff['peak_mb']:8.0f} MiB, step {eff['seconds']:6.1f} s")
    print(
        f"ratio (efficient / plain): {ratio:.2f} (target <= 0.50); time cost {eff['seconds'] / plain['seconds']:.2f}x"
    )
    dump(
        args.json,
        {
            "machine": machine(),
            "model": args.model,
            "batch": batch,
            "size": args.size,
            "plain": plain,
            "memory_efficient": eff,
            "ratio": ratio,
        },
    )


if __name__ == "__main__":
    main()
