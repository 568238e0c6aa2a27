"""Distributed: the same trainer on N processes under ``torchrun``, through PyTorch's DDP.

torchrun starts one process per device and tells each its RANK, LOCAL_RANK and WORLD_SIZE in the environment; the
CLI (the composition root) reads them into a ``World`` and calls ``join``, which joins the process group (gloo on
the CPU, nccl on CUDA). Every rank builds the same batches from the same seed and takes its share through
``DistributedSampler``; DDP averages the gradients during backward, so every rank holds the same weights. Rank 0
alone writes files and shows progress. Each collective below must be called by every rank, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from chatbot.errors import ChatbotError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; the default is the single process of a plain run."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> World:
        """The world torchrun describes in RANK, LOCAL_RANK and WORLD_SIZE; a plain run when they are absent."""
        try:
            return cls(
                int(environ.get("RANK", 0)), int(environ.get("LOCAL_RANK", 0)), int(environ.get("WORLD_SIZE", 1))
            )
        except ValueError as error:
            raise ChatbotError(f"RANK, LOCAL_RANK and WORLD_SIZE must be integers: {error}") from error

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def join(world: World, device: torch.device) -> torch.device:
    """Join the process group (torchrun's MASTER_ADDR/MASTER_PORT rendezvous) and return this rank's device."""
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)
    return device


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], world: World) -> list[T]:
    """This rank's share of ``items`` (DistributedSampler, in order, the remainder dropped so every rank takes the
    same number of steps — DDP needs all of them in every backward)."""
    if not world.distributed:
        return list(items)
    if len(items) < world.size:
        raise ChatbotError(f"{len(items)} batches cannot feed {world.size} processes; use fewer or smaller batches")
    sampler: DistributedSampler[int] = DistributedSampler(
        items,  # type: ignore[arg-type]  # any sized, indexable sequence serves as its dataset
        num_replicas=world.size,
        rank=world.rank,
        shuffle=False,
        drop_last=True,
    )
    return [items[index] for index in sampler]


def all_sum(values: Sequence[float], world: World) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64 on the CPU, or on the GPU under nccl)."""
    if not world.distributed:
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(value) for value in tensor.tolist()]


def gather(value: Any, world: World) -> list[Any]:
    """Every rank's ``value``, in rank order (any picklable object)."""
    if not world.distributed:
        return [value]
    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def broadcast(value: T, world: World) -> T:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not world.distributed:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    result: T = box[0]
    return result


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
