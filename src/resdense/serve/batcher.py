"""Requests batched together under load: one inference thread runs everything that is waiting as one batch.

No timer and no waiting for company: an idle server answers a lone request at once, and while the model
is busy, the requests that arrive queue up and go together in the next pass. The batch amortises the
per-call overhead (PyTorch eager runs resnet20 about 5.7x faster per image at batch 64 than at batch 1;
onnxruntime 1.4x; benchmarks/RESULTS.md, section 6). One thread also means the model is never run
concurrently from several request threads, which would only make their CPU threads fight.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

import torch

__all__ = ["MicroBatcher"]


def _settle(fut: asyncio.Future, value=None, error: BaseException | None = None) -> None:
    if fut.done():  # the request went away (client disconnected): nobody waits for it
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


class MicroBatcher:
    """``await submit(images)`` -> the logits of those images, computed by ``run(list of images)`` (logits
    in the same order) in batches of up to ``max_images`` images gathered from every waiting request."""

    def __init__(self, run: Callable[[list[torch.Tensor]], torch.Tensor], max_images: int = 64):
        self._run = run
        self.max_images = max(1, max_images)
        self._queue: queue.Queue = queue.Queue()
        self.batches = 0  # passes run, and the requests they served: how much batching happened
        self.requests = 0
        self._thread = threading.Thread(target=self._loop, name="resdense-batcher", daemon=True)
        self._thread.start()

    async def submit(self, images: list[torch.Tensor]) -> torch.Tensor:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((images, fut, loop))
        return await fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _take(self) -> tuple[list, bool]:
        """The next batch of waiting requests (at least one) and whether the batcher was told to stop."""
        item = self._queue.get()
        if item is None:
            return [], True
        batch, n = [item], len(item[0])
        while n < self.max_images:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            n += len(item[0])
        return batch, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take()
            if not batch:
                break
            images = [im for imgs, _, _ in batch for im in imgs]
            try:
                logits = self._run(images)
                error = None
            except BaseException as e:  # handed to every request of the batch; the thread lives on
                logits, error = None, e
            self.batches += 1
            self.requests += len(batch)
            start = 0
            for imgs, fut, loop in batch:
                part = None if logits is None else logits[start : start + len(imgs)]
                start += len(imgs)
                loop.call_soon_threadsafe(_settle, fut, part, error)
