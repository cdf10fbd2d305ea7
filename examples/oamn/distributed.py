"""Multi-process training through ``torchrun`` and ``DistributedDataParallel`` (no DataParallel).

``torchrun --nproc_per_node N -m examples.oamn.train ...`` (or ``--nnodes`` / ``--rdzv-*`` for
several machines) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them (``env://``) and picks the ``nccl`` backend on
CUDA (one GPU per process, ``cuda:LOCAL_RANK``) and ``gloo`` on the CPU. Without those variables
the run is a single process and nothing here initialises a process group.

Each rank draws its own ``P x K`` batches (the identity sampler is sharded by rank), so the
global batch is ``WORLD_SIZE * P * K`` images; the learning rate is not rescaled. Only rank 0
writes logs and checkpoints and validates; logged losses are averaged over the ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistributedContext", "init_distributed", "resolve_device"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run.

    Attributes:
        rank: global rank (0 for a single process).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: this process's device.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs and checkpoints (rank 0)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether a process group of several processes is running."""
        return self.world_size > 1

    def wrap(self, model: nn.Module, find_unused_parameters: bool) -> nn.Module:
        """``model`` in ``DistributedDataParallel`` when distributed, else unchanged."""
        if not self.is_distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the ranks (the values themselves when single-process).

        Every rank must pass the same keys in the same order.
        """
        if not self.is_distributed or not values:
            return values
        stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(stacked)
        return dict(zip(values, (stacked / self.world_size).tolist(), strict=True))

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (``value`` itself when single-process); any
        picklable value."""
        if not self.is_distributed:
            return value
        values = [value]
        dist.broadcast_object_list(values, src=0)
        return values[0]

    def barrier(self) -> None:
        """Wait for every rank (no-op when single-process)."""
        if self.is_distributed:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group this context created."""
        if self.is_distributed and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cuda"`` becomes ``cuda:local_rank``.

    Raises:
        ValueError: CUDA asked for but not available.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device (--device) {device!r} asks for CUDA, which is not available here; use "
                "--device cpu"
            )
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank)
    return resolved


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the ``torchrun`` process group described by the environment, if any.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (under ``torchrun``, ``cuda``
            means this process's ``cuda:LOCAL_RANK``).

    Returns:
        The :class:`DistributedContext`; call its :meth:`~DistributedContext.close` at the end.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1:
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, resolved)
