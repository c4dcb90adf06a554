"""A live uvicorn server on loopback for the HTTP tests: the real server, in a thread of the test process,
on a free port; and the images the tests send."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
import zlib

import numpy as np


@contextlib.contextmanager
def live_server(app):
    """``app`` served by uvicorn on 127.0.0.1 (a free port) until the block ends: yields (base URL, server)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def bomb_png(side: int = 40_000) -> bytes:
    """A valid PNG header claiming ``side`` x ``side`` grey pixels (1.6 G at 40,000: over Pillow's limit),
    with hardly any data: opening it is what a decompression bomb does to a careless server."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def noise(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    shape = (h, w, c) if c > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


class PredictorStandIn:
    """A predictor's face for the service (spec, backend, batch size, views) over ``inner``, whose model call
    a test replaces by defining ``predict_images``."""

    def __init__(self, inner):
        self.inner = inner
        self.spec, self.backend, self.batch_size, self.views = (
            inner.spec,
            inner.backend,
            inner.batch_size,
            inner.views,
        )
