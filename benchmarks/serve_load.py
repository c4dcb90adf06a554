"""``resdense serve`` under load and abuse, on loopback: N concurrent clients send a fixed count of requests.

    python benchmarks/serve_load.py [--model fashion-mnist] [--clients 16] [--requests 2000] [--abuse 0.1]

Starts ``resdense serve`` as a child process (with and without request batching, ``--no-batching``; the
two runs alternate, ``--repeats`` times each), waits for ``/health``, and lets ``--clients`` asyncio
clients share ``--requests`` POST /predict requests: one image each (a Fashion-MNIST test image as PNG),
and a fraction ``--abuse`` of bad ones cycled through every kind the service must refuse (empty body,
non-image, truncated JPEG, decompression bomb, wrong content type, over --max-upload-mb, over
--max-batch). Reports throughput, p50/p99 latency of the good requests, errors (a good request that was
not a 200, a bad one that was not its 4xx, or a failed connection: the goal is zero) and the server's
resident memory before the load (after a warm-up), after it, and after the same load once more (goal: no
growth; the second load's errors are not counted).

    python benchmarks/serve_load.py --worst [--model fashion-mnist]

measures instead the peak resident memory (VmHWM) of a fresh ``resdense serve`` at its default limits
for each of the heaviest requests those limits allow (issue 37): the issue's 16 blank 9000x9000 PNGs in
one request, the largest single image Pillow reads (9400x9400, grey and RGB), 64 images at the pixel cap,
and four such RGB requests at once. Each runs on its own server process, after one small request; the
figure is the peak minus the RSS before the request. Run it with ``PYTHONPATH`` pointing at an older
``src`` to measure the same requests there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve.live import bomb_png, jpeg_bytes, noise, png_bytes  # noqa: E402  (the tests' images)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

MAX_UPLOAD_MB, MAX_BATCH = 1, 8


def good_images(n: int = 64) -> list[bytes]:
    from resdense.data import load_dataset

    test = load_dataset("fashion-mnist", None).test.images
    return [png_bytes(np.kron(test[i, 0].numpy(), np.ones((4, 4), dtype=np.uint8))) for i in range(n)]


def bad_requests() -> list[tuple[dict, int]]:
    tiny = png_bytes(noise(2, 2, 1))
    raw = lambda data, ctype: {"content": data, "headers": {"Content-Type": ctype}}  # noqa: E731
    return [
        (raw(b"", "image/png"), 400),
        (raw(b"not an image at all" * 10, "image/png"), 422),
        (raw(jpeg_bytes(noise(64, 64, 3))[:600], "image/jpeg"), 422),
        (raw(bomb_png(), "image/png"), 422),
        (raw(b"{}", "application/json"), 415),
        (raw(b"\0" * (MAX_UPLOAD_MB * 2**20 + 1), "image/png"), 413),
        ({"files": [("f", (f"{i}.png", tiny, "image/png")) for i in range(MAX_BATCH + 1)]}, 413),
    ]


def start(model: str, batching: bool, threads: int, defaults: bool = False) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "resdense", "serve", "--port", "0"]
    # the load test's small limits, so that its abuse cases are cheap; --worst takes the defaults (and no
    # access log, which would interleave with its table)
    small = ["--max-upload-mb", str(MAX_UPLOAD_MB), "--max-batch", str(MAX_BATCH)]
    cmd += ["--access-log", "none"] if defaults else small
    cmd += [] if batching else ["--no-batching"]
    cmd += ["--weights", model] if not Path(model).exists() else [model]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    m = re.search(r"at (http://\S+?)/ ", proc.stdout.readline())
    if not m:
        proc.kill()
        raise SystemExit("resdense serve did not start")
    return proc, m.group(1)


async def load(url: str, clients: int, requests: int, abuse: float, good: list[bytes], bad) -> dict:
    every = round(1 / abuse) if abuse > 0 else 0
    jobs = iter(range(requests))
    latencies, errors, refused, kinds = [], 0, 0, {}

    async def client(c: httpx.AsyncClient):
        nonlocal errors, refused
        for i in jobs:
            if every and i % every == every - 1:
                kwargs, status = bad[(i // every) % len(bad)]
                refused += 1
            else:
                kwargs, status = (
                    {"content": good[i % len(good)], "headers": {"Content-Type": "image/png"}},
                    200,
                )
            t0 = time.perf_counter()
            try:
                r = await c.post(url + "/predict", **kwargs)
                ok = r.status_code == status and (status != 200 or r.json()["predictions"][0]["top"])
                kind = f"{r.status_code} for an expected {status}"
            except httpx.HTTPError as e:
                ok, kind = False, f"{type(e).__name__} for an expected {status}"
            if not ok:
                kinds[kind] = kinds.get(kind, 0) + 1
            if status == 200:
                latencies.append(time.perf_counter() - t0)
            errors += not ok

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(c) for _ in range(clients)])
        wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "wall": wall,
        "good": len(lat),
        "refused": refused,
        "errors": errors,
        "kinds": kinds,
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))],
    }


def rss_mb(proc) -> float:
    return psutil.Process(proc.pid).memory_info().rss / 2**20


def peak_mb(proc) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc: --worst needs Linux")


def blank_png(side: int, channels: int) -> bytes:
    shape = (side, side, channels) if channels > 1 else (side, side)
    return png_bytes(np.zeros(shape, np.uint8))  # deflate makes it tiny: the body's bytes bound nothing


def worst_requests() -> list[tuple[str, list[dict]]]:
    """(what, the requests sent at once), each a heavy request the default limits allow (or the issue's)."""
    files = lambda data, n: {"files": [("f", (f"{i}.png", data, "image/png")) for i in range(n)]}  # noqa: E731
    grey9000, grey9400, rgb9400 = blank_png(9000, 1), blank_png(9400, 1), blank_png(9400, 3)
    return [
        ("16 grey PNGs of 9000x9000 (issue 37)", [files(grey9000, 16)]),
        ("1 grey PNG of 9400x9400", [files(grey9400, 1)]),
        ("1 RGB PNG of 9400x9400", [files(rgb9400, 1)]),
        ("64 grey PNGs of 1250x1250", [files(blank_png(1250, 1), 64)]),
        ("4 requests at once, each 1 RGB PNG of 9400x9400", [files(rgb9400, 1)] * 4),
    ]


async def send_all(url: str, requests: list[dict]) -> list[int]:
    async with httpx.AsyncClient(timeout=600) as c:
        answers = await asyncio.gather(*[c.post(url + "/predict", **kw) for kw in requests])
    return [a.status_code for a in answers]


def worst(model: str) -> int:
    print("| request | body MB | answers | server RSS before MB | peak MB | peak - before MB | seconds |")
    print("|---|---|---|---|---|---|---|", flush=True)
    small = {"content": good_images(1)[0], "headers": {"Content-Type": "image/png"}}
    for what, requests in worst_requests():
        proc, url = start(model, True, 1, defaults=True)
        try:
            asyncio.run(send_all(url, [small]))  # the first request's one-time allocations are not counted
            before = rss_mb(proc)
            t0 = time.perf_counter()
            codes = asyncio.run(send_all(url, requests))
            seconds = time.perf_counter() - t0
            peak = peak_mb(proc)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        body = sum(len(f[1][1]) for r in requests for f in r["files"]) / 2**20
        print(
            f"| {what} | {body:.2f} | {', '.join(map(str, codes))} | {before:.0f} | {peak:.0f} | "
            f"{peak - before:.0f} | {seconds:.1f} |",
            flush=True,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="fashion-mnist", help="--weights source or a model file/run folder")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--abuse", type=float, default=0.1, help="fraction of bad requests (default 0.1)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each mode, alternating (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads (default 1)")
    ap.add_argument("--worst", action="store_true", help="peak memory of the heaviest requests allowed")
    args = ap.parse_args(argv)
    if args.worst:
        print(f"CPU: {machine()}; server: {args.model} at its default limits", flush=True)
        return worst(args.model)
    good, bad = good_images(), bad_requests()
    import platform

    cpu = next(
        (
            l.split(":", 1)[1].strip()
            for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")
        ),
        platform.processor(),
    )
    print(
        f"CPU: {cpu}, {os.cpu_count()} vCPUs; server: {args.model}, {args.threads} torch thread(s); "
        f"{args.clients} clients, {args.requests} requests each run, {args.abuse:.0%} bad"
    )
    print(
        "| run | batching | requests/s | p50 ms | p99 ms | good | bad (4xx as expected) | errors | "
        "RSS MB: before, after 1x, after 2x |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for rep in range(args.repeats):
        for batching in (True, False) if rep % 2 == 0 else (False, True):
            proc, url = start(args.model, batching, args.threads)
            try:
                asyncio.run(load(url, args.clients, 200, args.abuse, good, bad))  # warm-up
                before = rss_mb(proc)
                r = asyncio.run(load(url, args.clients, args.requests, args.abuse, good, bad))
                mid = rss_mb(proc)
                asyncio.run(load(url, args.clients, args.requests, args.abuse, good, bad))  # again: growth?
                after = rss_mb(proc)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            print(
                f"| {rep + 1} | {'yes' if batching else 'no'} | {args.requests / r['wall']:,.0f} | "
                f"{1000 * r['p50']:.1f} | {1000 * r['p99']:.1f} | {r['good']} | {r['refused']} | {r['errors']} | "
                f"{before:.0f}, {mid:.0f}, {after:.0f} |",
                flush=True,
            )
            if r["kinds"]:
                print(f"  errors: {r['kinds']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
