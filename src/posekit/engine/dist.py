"""Multi-process training with torchrun: the process group, ranks, barriers and reductions.

``torchrun --nproc_per_node N -m posekit train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` joins the process group (gloo on CPU, NCCL on
CUDA). Without them everything here is a no-op for one process. ``training.batch_size`` is
per process: N processes with batch B train exactly like one process with batch N x B.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return DistInfo()


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group when the environment names one (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist_info()
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return dist_info()


def barrier() -> None:
    """Wait for every rank (e.g. before reading a file rank 0 wrote)."""
    if dist_info().active:
        dist.barrier()


def all_reduce_flags(*flags: bool) -> tuple[bool, ...]:
    """Each flag true on any rank (one collective for all of them)."""
    if not dist_info().active:
        return flags
    values = torch.tensor([float(flag) for flag in flags])
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in values.tolist())


def mean_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over the ranks (training-loss terms for logging)."""
    if not dist_info().active or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist(), strict=True))


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (validation metrics, decided on rank 0)."""
    if not dist_info().active:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the whole global batch on CPU (gloo), where
    ``nn.SyncBatchNorm`` refuses to run. Sums and squared sums are all-reduced with a
    differentiable all-reduce; with DDP's gradient averaging this trains exactly like one
    process with the whole batch. Outside a multi-process run it is a plain BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist_info().active):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        channels = x.shape[1]
        values = x if x.dtype == torch.float64 else x.float()
        wide = values.double()  # E[x^2] - E[x]^2 cancels badly in float32 for small variances
        count = torch.tensor([values.numel() / channels], dtype=torch.float64)
        local = torch.cat([wide.sum((0, 2, 3)), (wide * wide).sum((0, 2, 3)), count])
        with warnings.catch_warnings():  # its successor is not differentiable on gloo yet
            warnings.simplefilter("ignore", FutureWarning)
            total = all_reduce(local)
        n = total[-1]
        mean64 = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean64 * mean64).to(values.dtype)
        mean = mean64.to(values.dtype)
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 0.1
            stats_dtype = self.running_mean.dtype
            unbiased = var.detach() * float(n) / max(float(n) - 1, 1.0)
            self.running_mean.mul_(1 - momentum).add_(mean.detach().to(stats_dtype), alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(unbiased.to(stats_dtype), alpha=momentum)
            self.num_batches_tracked.add_(1)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        out = values * scale[None, :, None, None] + shift[None, :, None, None]
        return out.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device_type: str) -> nn.Module:
    """``training.sync_bn``: torch's SyncBatchNorm on CUDA, :class:`CpuSyncBatchNorm` on CPU;
    parameters, buffers and state-dict keys are kept."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            synced = CpuSyncBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            )  # fmt: skip
            reference = child.running_mean if child.running_mean is not None else child.weight
            if reference is not None:  # keep the layer's dtype and device (e.g. float64)
                synced = synced.to(device=reference.device, dtype=reference.dtype)
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            setattr(model, name, synced)
        else:
            convert_sync_batchnorm(child, device_type)
    return model
