"""torchrun's environment → this process's rank, world size and device; process-group setup.

The same ``domainbert pretrain`` command runs alone or under ``torchrun --nproc-per-node N`` (and
multi-node through torchrun's rendezvous): torchrun sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; the process group uses NCCL on GPUs and gloo on the CPU. Only rank 0 writes logs and
checkpoints; each rank reads its own disjoint part of the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from domainbert.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device.index >= count:
            raise ConfigError(f"--device {device} is not on this machine ({count} CUDA device(s)"
                              f"{'' if torch.cuda.is_available() else '; this torch has no CUDA or no GPU is visible'}"
                              "): use --device cpu or auto")
    elif device.type not in ("cpu", "mps"):
        raise ConfigError(f"--device {device} is not supported: use auto, cpu or cuda[:N]")
    return device


def compiling(mode: str, device: torch.device) -> bool:
    """Whether ``--compile`` ``mode`` (auto, on, off) compiles the encoder on ``device``: auto means on a CUDA
    GPU only (on the CPU the first steps' compile time is not won back in a short run)."""
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"compile {mode!r} is not one of auto, on, off")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, local, world, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over all ranks (a copy; the input is left alone)."""
    if not dist.is_initialized():
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()
