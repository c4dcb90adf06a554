"""CPU serving speed: PyTorch eager fp32, onnxruntime fp32, onnxruntime int8 (resdense's QDQ U8S8
quantization), and PyTorch bf16 where the CPU has bf16 instructions.

    python benchmarks/int8.py [--models resnet20,resnet50,densenet121] [--batches 1,64] [--seconds 20]

For each model and batch size, the backends run in interleaved rounds (eager, ort-fp32, ort-int8, bf16,
eager, ...) until the cell's time budget is spent (at least ``--min-rounds`` rounds); each pass is timed,
and the table gives images/s (batch over the median pass), the p50 and p99 pass latency, and the ratio
to onnxruntime fp32 (what int8 replaces). resnet20 is the shipped Fashion-MNIST model (1x28x28);
resnet50 and densenet121 run at 3x224x224 with random weights (speed does not depend on the weights),
calibrated on random images. The CPU's model and its relevant flags (VNNI, AMX, bf16) head the output.
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
from resdense.serve import load_model
from resdense.serve.export import export_onnx
from resdense.serve.quantize import quantize_onnx

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def cpu() -> tuple[str, list[str]]:
    name, flags = "unknown CPU", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    return name, [f for f in FLAGS if f in flags]


def build(name: str):
    """(model, spec, calibration images) for a benchmark model."""
    if name == "resnet20":
        model, spec = load_model("fashion-mnist", progress=False)
        from resdense.data import load_dataset

        train = load_dataset("fashion-mnist", None).train.images
        g = torch.Generator().manual_seed(0)
        return model, spec, train[torch.randperm(len(train), generator=g)[:256]]
    torch.manual_seed(0)
    model = create_model(name).eval()
    spec = ModelSpec(name, {}, Preprocess(224, (0.5,) * 3, (0.25,) * 3, 3), [f"c{i}" for i in range(1000)])
    g = torch.Generator().manual_seed(0)
    return model, spec, torch.randint(0, 256, (32, 3, 224, 224), generator=g, dtype=torch.uint8)


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x.numpy()})[0]


def runners(model, spec, calibration, folder: Path, threads: int, bf16: bool) -> dict:
    fp32 = export_onnx(model, spec, folder / "fp32.onnx")
    int8 = quantize_onnx(fp32, folder / "int8.onnx", calibration, spec)
    out = {"eager-fp32": model, "ort-fp32": session(fp32, threads), "ort-int8": session(int8, threads)}
    if bf16:
        m16 = create_model(spec.model, **spec.options).eval()
        m16.load_state_dict(model.state_dict())
        m16 = m16.to(torch.bfloat16, memory_format=torch.channels_last)
        out["torch-bf16"] = lambda x: m16(x.to(torch.bfloat16, memory_format=torch.channels_last))
    return out


def measure(run: dict, x: torch.Tensor, seconds: float, min_rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in run}
    with torch.inference_mode():
        for f in run.values():  # warm-up
            f(x)
        start, rounds = time.perf_counter(), 0
        while rounds < min_rounds or time.perf_counter() - start < seconds:
            for key, f in run.items():
                t0 = time.perf_counter()
                f(x)
                times[key].append(time.perf_counter() - t0)
            rounds += 1
    return times


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet20,resnet50,densenet121")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument(
        "--seconds", type=float, default=20.0, help="time budget per model and batch (default 20)"
    )
    ap.add_argument("--min-rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    name, flags = cpu()
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    import onnxruntime

    print(f"CPU: {name}, {os.cpu_count()} vCPUs; flags: {' '.join(flags) or 'none of ' + ', '.join(FLAGS)}")
    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads; "
        f"bf16 {'measured' if bf16 else 'skipped (no bf16 instructions)'}"
    )
    print("| model | input | batch | backend | images/s | p50 ms | p99 ms | vs ort-fp32 | passes |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for model_name in args.models.split(","):
        model, spec, cal = build(model_name.strip())
        pre = spec.preprocess
        size = (pre.in_chans, pre.input_size, pre.input_size)
        with tempfile.TemporaryDirectory() as tmp:
            run = runners(model, spec, pre.fit_images(cal), Path(tmp), args.threads, bf16)
            for batch in (int(b) for b in args.batches.split(",")):
                x = torch.randn(batch, *size)
                times = measure(run, x, args.seconds, args.min_rounds)
                base = statistics.median(times["ort-fp32"])
                for key, t in times.items():
                    med = statistics.median(t)
                    print(
                        f"| {model_name} | {'x'.join(map(str, size))} | {batch} | {key} | {batch / med:,.1f} | "
                        f"{1000 * med:.1f} | {1000 * pct(t, 0.99):.1f} | {base / med:.2f}x | {len(t)} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
