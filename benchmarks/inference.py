"""CPU inference throughput: PyTorch eager, PyTorch with batch norm folded into the convs, onnxruntime.

    python benchmarks/inference.py [--quick] [--models resnet50,resnet20@1x28x28] [--batches 1,64]

All three backends are measured in the same run, in interleaved rounds (eager, fused, onnxruntime, eager,
...), and each throughput is the batch size over the median time of one forward pass, so that a noisy
shared machine biases the backends alike; the ratios to eager are what to read. Models have random weights
(nothing is downloaded). ``NAME@CxHxW`` sets a model's input size; without it the model's default is used.
The default list is ResNet-50 on 3x224x224 ImageNet-sized images and a CIFAR ResNet-20 on 1x28x28
Fashion-MNIST-sized ones (standing in for a small trained model). ``--quick`` runs fewer rounds and, for
inputs of 224x224 or more, batch 8 instead of 64 (under a minute on a 2-vCPU machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from resdense.modelfile import ModelSpec
from resdense.models import create_model
from resdense.preprocess import Preprocess
from resdense.serve.export import export_onnx
from resdense.serve.fuse import count_batchnorms, fuse_bn

DEFAULT_MODELS = "resnet50,resnet20@1x28x28"


def parse_model(item: str) -> tuple[str, tuple[int, int, int] | None]:
    name, _, size = item.partition("@")
    if not size:
        return name, None
    c, h, w = (int(v) for v in size.lower().split("x"))
    return name, (c, h, w)


def build(name: str, size: tuple[int, int, int] | None):
    model = create_model(name, **({"in_chans": size[0]} if size else {})).eval()
    size = size or tuple(model.default_cfg.input_size)
    return model, size


def onnx_session(model, size, folder: Path, threads: int):
    import onnxruntime as ort

    c, h, _ = size
    spec = ModelSpec("benchmark", {}, Preprocess(h, (0.0,) * c, (1.0,) * c, c), [])
    path = export_onnx(model, spec, folder / "model.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def measure(runners: dict, x: torch.Tensor, rounds: int, per_round: int, warmup: int) -> dict[str, float]:
    """Median seconds per forward pass of each runner, measured in interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    with torch.inference_mode():
        for run in runners.values():
            for _ in range(warmup):
                run(x)
        for _ in range(rounds):
            for key, run in runners.items():
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    run(x)
                    times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--models", default=DEFAULT_MODELS, help=f"comma-separated NAME[@CxHxW] (default {DEFAULT_MODELS})"
    )
    ap.add_argument("--batches", default="1,64", help="comma-separated batch sizes (default 1,64)")
    ap.add_argument(
        "--quick", action="store_true", help="fewer rounds; batch 8 instead of 64 for 224px inputs"
    )
    ap.add_argument("--rounds", type=int, help="measurement rounds per backend (default 5, quick 2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all)")
    args = ap.parse_args(argv)

    threads = max(1, args.threads or 1)
    torch.set_num_threads(threads)
    rounds = args.rounds or (2 if args.quick else 5)
    batches = [int(b) for b in args.batches.split(",")]
    print(
        f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs; "
        f"{'quick' if args.quick else 'full'} run, {rounds} rounds; images/s (median pass)",
        flush=True,
    )
    header = (
        f"{'model':<12} {'input':<10} {'batch':>5}  {'backend':<12} {'images/s':>10}  {'vs eager':>8}  "
        f"{'max|diff|':>9}"
    )
    print(header, flush=True)
    print("-" * len(header), flush=True)
    for item in args.models.split(","):
        name, size = parse_model(item.strip())
        torch.manual_seed(0)
        model, size = build(name, size)
        fused = fuse_bn(model, torch.randn(1, *size))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            session = onnx_session(model, size, Path(tmp), threads)
            print(
                f"# {name}: {count_batchnorms(model)} BatchNorm2d, {count_batchnorms(fused)} after fusion; "
                f"ONNX export and session {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            runners = {"eager": model, "fused-bn": fused, "onnxruntime": session}
            for batch in batches:
                if args.quick and batch > 8 and size[1] * size[2] >= 224 * 224:
                    batch = 8
                x = torch.randn(batch, *size)
                with torch.inference_mode():
                    ref = model(x)
                    diffs = {k: (run(x) - ref).abs().max().item() for k, run in runners.items()}
                # per round, about a quarter second of work on the slowest backend, at least one pass
                t0 = time.perf_counter()
                with torch.inference_mode():
                    model(x)
                one = time.perf_counter() - t0
                budget, cap = (0.25, 20) if args.quick else (1.0, 50)
                per_round = max(1 if args.quick else 2, min(cap, int(budget / max(one, 1e-6))))
                secs = measure(runners, x, rounds, per_round, warmup=1 if args.quick else 2)
                size_s = "x".join(map(str, size))
                for key, s in secs.items():
                    row = (
                        f"{name:<12} {size_s:<10} {batch:>5}  {key:<12} {batch / s:>10.1f}  "
                        f"{secs['eager'] / s:>7.2f}x  {diffs[key]:>9.1e}"
                    )
                    print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
