"""Data-parallel training under ``torchrun`` (torch.distributed).

``torchrun --nproc_per_node N -m recsys.cli train ...`` starts ``N`` copies of
``recsys train``; each reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` /
``MASTER_ADDR`` from its environment and joins one process group (NCCL on
CUDA, gloo on CPU). Every rank holds the whole model and adjacency (the
full-graph propagation is what makes a step exact), draws the same epoch
order of positives and trains on its own disjoint slice of each batch, with
negatives from its own seeded generator; the gradients are then averaged.

Why not ``DistributedDataParallel``: the loop calls the model outside its
``forward`` (layer 0 of the batch, the feature projections of the cold-start
loss), which DDP's forward-bound reducer does not follow without
``find_unused_parameters``; one all-reduce of all gradients, flattened into a
single buffer, is what DDP would do with one bucket, and is plainly correct.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing here does anything
and training runs exactly as in a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from recsys.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: ``rank`` of ``world_size`` (1: no distribution)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates, writes checkpoints, tracks and publishes; the others only train."""
        return self.rank == 0

    def device(self, requested: str) -> str:
        """The device of this rank: ``cuda`` becomes ``cuda:<local_rank>`` under torchrun."""
        if self.enabled and requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested

    def all_reduce_gradients(self, params: Iterable[Tensor]) -> None:
        """Average every parameter's gradient over the ranks (a missing one counts as zero)."""
        if not self.enabled:
            return
        ps = [p for p in params if p.requires_grad]
        for p in ps:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in ps if p.grad is not None])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for p in ps:
            assert p.grad is not None
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over the ranks."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.tolist()]

    def sum_tensor(self, values: Tensor) -> Tensor:
        """Element-wise sum of a tensor over the ranks (a new tensor; itself without DDP)."""
        if not self.enabled:
            return values
        out = values.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def broadcast_flag(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's ``flag`` on every rank (e.g. its early-stopping decision)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def from_env() -> Distributed:
    """The job layout torchrun put in the environment (a single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Distributed(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_distributed(device: str) -> Distributed:
    """Join torchrun's process group when there is one: NCCL on CUDA, gloo on CPU."""
    ctx = from_env()
    if not ctx.enabled or dist.is_initialized():
        return ctx
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    log.info(
        "data-parallel training: rank %d of %d (%s)", ctx.rank, ctx.world_size, dist.get_backend()
    )
    return ctx


def shutdown(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
