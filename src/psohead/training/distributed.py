"""Data-parallel plumbing: one process per GPU (or CPU process), started by ``torchrun``.

Instead of wrapping the networks in ``DistributedDataParallel`` the loop all-reduces the
gradients itself after each phase (the official StyleGAN/EG3D scheme): the R1 penalty needs a
double backward through D, and the G and D phases run different sub-graphs, both of which DDP's
bucketed hooks handle poorly. Every rank starts from rank 0's weights, averages gradients (and
the ``w_avg`` trackers, which no gradient updates) and therefore keeps bit-identical weights.
NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's env vars (RANK, WORLD_SIZE, ...).

    Without those variables (or WORLD_SIZE=1) this is a single process and nothing is set up.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, dev)


def shutdown(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not info.active:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def reduce_gradients(params, info: DistInfo) -> None:
    """Average gradients over ranks; NaN -> 0 and +-inf -> +-1e5 (official sanitising)."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    if info.active:
        dist.all_reduce(flat)
        flat /= info.world
    torch.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5, out=flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def average_running_means(module: torch.nn.Module, info: DistInfo) -> None:
    """Average the mapping networks' ``w_avg`` trackers over ranks.

    Each rank updates them from its own latents (not through gradients), so without this the
    ranks' buffers drift apart; the average is the running mean over the whole batch.
    """
    if not info.active:
        return
    for name, buf in module.named_buffers():
        if name.endswith("w_avg"):
            dist.all_reduce(buf)
            buf /= info.world


def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """All-reduce mean of a tensor (for logging)."""
    value = value.detach().clone()
    if info.active:
        dist.all_reduce(value)
        value /= info.world
    return value


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (picklable), in rank order; [obj] in a single process."""
    if not info.active:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()
