"""PyTorch's own distributed engine, as torchrun sets it up: nothing here is home-made communication.

``torchrun`` exports RANK, WORLD_SIZE and LOCAL_RANK; we then join the process group (NCCL on GPUs, gloo on
CPU), wrap the model in DistributedDataParallel and all-reduce the few figures every rank must agree on.
A dead rank is torchrun's to handle: its elastic agent tears the group down, and the collective timeout
ends any rank left waiting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError


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

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


_STATE = DistState()


def current() -> DistState:
    return _STATE


def setup(device: str = "auto") -> DistState:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a no-op."""
    global _STATE
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _STATE = DistState()
        return _STATE
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto",) or str(device).startswith("cuda")
    if use_cuda:
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
        # share the machine's cores between the local processes instead of oversubscribing them
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    timeout = timedelta(seconds=float(os.environ.get("RESDENSE_DIST_TIMEOUT", "600")))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout)
    _STATE = DistState(True, rank, world, local_rank, dev)
    return _STATE


def teardown() -> None:
    global _STATE
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _STATE = DistState()
