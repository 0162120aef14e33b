"""``torchrun`` glue: the process group, the device of each process, unwrapping DDP.

A run started by ``torchrun`` (``WORLD_SIZE`` > 1) joins a process group (NCCL on CUDA, Gloo on
CPU) and puts each process on its ``LOCAL_RANK``'s GPU; a plain ``python`` run is one process,
rank 0, with no process group. Only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig

__all__: list[str] = []


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_hint: str | None) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and (device_hint is None or device_hint.startswith("cuda"))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _pick_device(config: TrainConfig, d: _Dist) -> torch.device:
    if config.device is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        name = config.device
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but CUDA is not available here; use --device cpu")
        if d.world > 1:
            device = torch.device("cuda", d.local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
