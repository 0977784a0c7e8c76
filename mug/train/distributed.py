"""The process group of a torchrun/torchx launch, or a single process when there is none."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mug.device import pick_device


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> DistEnv:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on GPU)."""
    device = pick_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None
        )
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistEnv(rank, world_size, device)


def all_reduce_mean(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.active:
        dist.all_reduce(values)
        values = values / env.world_size
    return values


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.active:
        dist.all_reduce(values)
    return values


def all_gather_objects(value: object, env: DistEnv) -> list[object]:
    if not env.active:
        return [value]
    out: list[object] = [None] * env.world_size
    dist.all_gather_object(out, value)
    return out


class _ScaleGrad(torch.autograd.Function):
    """The identity forward; the gradient times `factor` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def gather_with_local_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` [N, ...] concatenated in rank order [W * N, ...]; only this rank's rows carry gradient.

    For a contrastive loss over the global batch (open_clip's `gather_features` with `local_loss=False`): each rank
    computes the whole loss L on the gathered features, and its backward reaches its own rows only, with their
    full dL/dx. DDP then averages the ranks' parameter gradients, which would give dL/dtheta / W; so this rank's
    rows carry W times their gradient, and the average is exactly one process's gradient of L on the
    concatenated batch. Parameters that enter L outside `x` (CLIP's logit scale) get the whole dL on every rank
    and need no factor. Without a process group (or with one rank) `x` itself is returned, untouched.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    world_size = dist.get_world_size()
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = _ScaleGrad.apply(x, float(world_size))
    return torch.cat(parts)


def shutdown(env: DistEnv) -> None:
    if env.active and dist.is_initialized():
        dist.destroy_process_group()
