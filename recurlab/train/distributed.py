"""Data-parallel training under ``torchrun``: set up from the environment, or run alone.

``torchrun --nproc_per_node N ...`` sets RANK, LOCAL_RANK and WORLD_SIZE; then
the trainer joins a process group (gloo on CPU, nccl on GPU), wraps the model
in DistributedDataParallel and gives each process its slice of every batch.
Without those variables everything runs in one process, unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | torch.device | None = None) -> Runtime:
    """Join the torchrun process group if there is one; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return Runtime(rank, world, device)


def broadcast_flag(flag: bool, runtime: Runtime) -> bool:
    """Rank 0's decision, for everyone (e.g. early stopping)."""
    if not runtime.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=runtime.device if runtime.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def sum_over_processes(value: torch.Tensor, runtime: Runtime) -> float:
    """The sum of a scalar over all processes (itself when alone)."""
    if runtime.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value.item()


def teardown() -> None:
    """Leave the process group, all processes together: a barrier first, so that no process destroys the
    group while another still uses it (a known cause of hangs at exit), then destroy it."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
