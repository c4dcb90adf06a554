"""PyTorch's own distributed engine, as torchrun sets it up: nothing here is home-made communication.

``torchrun`` exports RANK, WORLD_SIZE and LOCAL_RANK; we then join the process group (NCCL on GPUs, gloo on
CPU), wrap the model in DistributedDataParallel and all-reduce the few figures every rank must agree on.
A dead rank is torchrun's to handle: its elastic agent tears the group down, and the collective timeout
(``$RESDENSE_DIST_TIMEOUT`` seconds, default 600) ends any rank left waiting on a peer that hangs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError
from ..utils.device import local_world_size

TIMEOUT_ENV = "RESDENSE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


@dataclass
class DistState:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def convert_sync_bn(self, model: nn.Module) -> nn.Module:
        """Batch norm with statistics over the global batch (``--sync-bn``); a no-op in one process."""
        if not self.enabled:
            return model
        if self.device.type != "cuda":
            # PyTorch's SyncBatchNorm only runs on GPUs; say so before training rather than mid-step
            raise UserError(
                "--sync-bn needs GPUs (PyTorch's SyncBatchNorm does not run on CPU); on CPU drop it, and "
                "each process normalises with its own share of the batch"
            )
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (batch-norm running statistics).

        DDP broadcasts them at the start of each forward, but the last training step leaves each rank
        with statistics updated from its own share of the batch; rank 0's are the ones saved.
        """
        if self.enabled:
            for b in model.buffers():
                dist.broadcast(b, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


_STATE = DistState()


def current() -> DistState:
    return _STATE


def collective_timeout() -> timedelta:
    """How long a collective may wait on a silent peer before it fails (``$RESDENSE_DIST_TIMEOUT``)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        secs = float(text)
    except ValueError:
        secs = -1.0
    if not secs > 0:
        raise UserError(f"${TIMEOUT_ENV}: expected a positive number of seconds, got {text!r}")
    return timedelta(seconds=secs)


_THREADS: list[int] = []  # the caller's torch thread count while a run shares the cores out


def setup(device: str = "auto") -> DistState:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a no-op."""
    global _STATE
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _STATE = DistState()
        return _STATE
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = (device == "auto" and torch.cuda.is_available()) or str(device).startswith("cuda")
    if use_cuda:
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine")
        gpus = torch.cuda.device_count()
        if local_rank >= gpus:
            raise UserError(
                f"local rank {local_rank} has no GPU of its own: this machine has {gpus}; "
                f"use torchrun --nproc_per_node={gpus} (one process per GPU) or --device cpu"
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
        # share the machine's cores between the local processes instead of oversubscribing them
        _THREADS.append(torch.get_num_threads())  # given back by teardown()
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size(default=world)))
    timeout = collective_timeout()
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout)
    _STATE = DistState(True, rank, world, local_rank, dev)
    return _STATE


def teardown() -> None:
    global _STATE
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if _THREADS:
        torch.set_num_threads(_THREADS.pop())
    _STATE = DistState()
