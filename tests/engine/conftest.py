"""A tiny bottom-up setup that trains in well under a second per iteration on CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from posekit.bottomup.task import BottomUpTask
from posekit.config import PosekitConfig, load_config
from posekit.data.synthetic.generate import generate_synthetic
from posekit.engine.loop import Trainer

TINY_MODEL = {"num_refinement_stages": 1, "num_channels": 8, "width_mult": 0.25, "head_width": 8}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_synth")
    generate_synthetic(root, num_train=12, num_val=3, size=(96, 96), seed=3)
    return root


@pytest.fixture
def make_config(tiny_data: Path, tmp_path: Path) -> Callable[..., PosekitConfig]:
    def build(*overrides: str, work: str = "run") -> PosekitConfig:
        words = [
            f"data.train.labels={tiny_data / 'train.json'}",
            f"data.train.images={tiny_data / 'train'}",
            f"data.val.labels={tiny_data / 'val.json'}",
            f"data.val.images={tiny_data / 'val'}",
            "data.input_size=64",
            "data.num_workers=0",
            "bottomup.inference.input_height=64",
            "training.batch_size=2",
            "training.max_epochs=2",
            "training.optimizer.lr=1e-3",
            "training.checkpoint_after=0",
            "training.val_after=0",
            "training.eval_interval=0",
            f"work_dir={tmp_path / work}",
            *overrides,
        ]
        cfg = load_config(None, words)
        return cfg.model_copy(
            update={"model": cfg.model.model_copy(update={"params": dict(TINY_MODEL)})}
        )

    return build


def make_trainer(cfg: PosekitConfig, say: Callable[[str], None] = lambda _: None) -> Trainer:
    torch.manual_seed(cfg.seed)
    device = torch.device("cpu")
    return Trainer(cfg, BottomUpTask(cfg, device), cfg.resolved_work_dir(), device, say)


def stop_after_batches(trainer: Trainer, count: int) -> None:
    """Simulate a Ctrl-C once ``count`` batches have been trained (in total, this process)."""
    compute = trainer.task.compute_loss
    seen = {"batches": 0}

    def counting(model, batch):  # type: ignore[no-untyped-def]
        seen["batches"] += 1
        if seen["batches"] == count:
            trainer.stop.request("SIGINT (test)")
        return compute(model, batch)

    trainer.task.compute_loss = counting  # type: ignore[method-assign]
