"""Run by tests/engine/test_dist.py as a script, under torchrun or alone: trains the tiny
bottom-up config in float64 through the real Trainer (DDP, per-rank slices of the global
batch, CPU SyncBatchNorm, rank-0 checkpoints), so that 1 and 2 processes can be compared
far below float32's rounding (this model's float32 gradients at initialisation carry
errors of several per cent: ill-conditioned, whatever the number of processes)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from posekit.config import load_config
from posekit.engine.dist import init_distributed
from posekit.engine.loop import Trainer
from posekit.tasks import build_task


def main(config: str, work: str, *overrides: str) -> None:
    init_distributed("cpu")
    cfg = load_config(config, [f"work_dir={work}", *overrides])
    torch.manual_seed(cfg.seed)
    task = build_task(cfg, torch.device("cpu"))
    task.model.double()
    collate = task.collate
    task.collate = lambda samples: {k: v.double() for k, v in collate(samples).items()}
    Trainer(cfg, task, Path(work), torch.device("cpu"), lambda _: None).fit()


if __name__ == "__main__":
    main(*sys.argv[1:])
