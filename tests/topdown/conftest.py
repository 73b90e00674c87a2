"""A tiny top-down setup on a small synthetic data set (well under a second per step)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from posekit.config import PosekitConfig, load_config
from posekit.data.synthetic.generate import generate_synthetic
from posekit.engine.loop import Trainer
from posekit.topdown.task import TopDownTask

TINY_TOPDOWN = {
    "backbone": "mobilenet_v2",
    "width_mult": 0.25,
    "input_size": [96, 64],  # multiples of the backbone stride, 32
    "deconv_channels": [32, 32, 32],
}


@pytest.fixture(scope="session")
def tiny_people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_topdown")
    generate_synthetic(root, num_train=6, num_val=2, size=(96, 96), seed=5)
    return root


@pytest.fixture
def topdown_config(tiny_people: Path, tmp_path: Path) -> Callable[..., PosekitConfig]:
    def build(*overrides: str, work: str = "run", **params: object) -> PosekitConfig:
        words = [
            "model.name=topdown",
            f"data.train.labels={tiny_people / 'train.json'}",
            f"data.train.images={tiny_people / 'train'}",
            f"data.val.labels={tiny_people / 'val.json'}",
            f"data.val.images={tiny_people / 'val'}",
            "data.num_workers=0",
            "training.batch_size=4",
            "training.max_epochs=2",
            "training.optimizer.lr=1e-3",
            "training.optimizer.original_lr_mults=false",
            "training.checkpoint_after=0",
            "training.val_after=0",
            "training.eval_interval=0",
            f"work_dir={tmp_path / work}",
            *overrides,
        ]
        cfg = load_config(None, words)
        model = cfg.model.model_copy(update={"params": {**TINY_TOPDOWN, **params}})
        return cfg.model_copy(update={"model": model})

    return build


def make_topdown_trainer(cfg: PosekitConfig) -> Trainer:
    torch.manual_seed(cfg.seed)
    device = torch.device("cpu")
    return Trainer(cfg, TopDownTask(cfg, device), cfg.resolved_work_dir(), device, lambda _: None)
