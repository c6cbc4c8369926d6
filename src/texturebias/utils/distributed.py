"""Distributed setup shared by training and dataset builders (``torchrun`` compatible)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes shared outputs (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Read rank and world size from the environment ``torchrun`` sets (defaults: one process)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_distributed(backend: str | None = None) -> DistInfo:
    """Initialise ``torch.distributed`` when launched by ``torchrun`` with more than one process.

    Uses NCCL when CUDA is available and gloo otherwise, unless ``backend`` is given. Safe to call twice.
    """
    info = dist_info()
    if info.distributed and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def barrier() -> None:
    """Synchronise all ranks (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard(items: list, info: DistInfo | None = None) -> list:
    """The disjoint share of ``items`` that this rank handles (round-robin, deterministic)."""
    info = info or dist_info()
    return items[info.rank :: info.world_size]
