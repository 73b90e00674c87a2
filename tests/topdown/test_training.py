"""The top-down family through the shared engine: exact resume with AMP, EMA and
accumulation; finetuning with load_from onto another keypoint set and a frozen backbone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from posekit.commands.train import train
from posekit.config import PosekitConfig
from posekit.engine.checkpoints import latest_checkpoint
from posekit.engine.control import TrainingStopped

from ..engine.conftest import stop_after_batches
from .conftest import make_topdown_trainer


def test_stop_and_resume_is_bit_identical(
    topdown_config: Callable[..., PosekitConfig],
) -> None:
    words = ("training.amp=true", "training.ema.enabled=true", "training.batches_per_iter=2",
             "training.eval_interval=1")  # fmt: skip
    straight = make_topdown_trainer(topdown_config(*words, work="straight"))
    straight.fit()
    cfg = topdown_config(*words, work="resumed")
    first = make_topdown_trainer(cfg)
    stop_after_batches(first, 3)  # inside an accumulation window
    with pytest.raises(TrainingStopped):
        first.fit()
    second = make_topdown_trainer(cfg)
    second.resume_from(latest_checkpoint(cfg.resolved_work_dir()))
    second.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    assert straight.state.best_metric == second.state.best_metric


def test_every_part_of_the_state_is_restored(
    topdown_config: Callable[..., PosekitConfig],
) -> None:
    from ..engine.resume_check import check_exact_resume

    check_exact_resume(topdown_config, make_topdown_trainer, "training.amp=true")


def test_finetune_onto_14_keypoints_with_a_frozen_backbone(
    topdown_config: Callable[..., PosekitConfig], tiny_people: Path
) -> None:
    pretrained = topdown_config("training.max_epochs=1", work="pretrain")
    train(pretrained, say=lambda _: None)
    weights = pretrained.resolved_work_dir() / "checkpoints" / "last.pth"
    lines: list[str] = []
    finetune = topdown_config(
        "data.schema=body14",
        f"data.train_sets=[{{labels: {tiny_people / 'train.json'}, "
        f"images: {tiny_people / 'train'}, schema: coco17}}]",
        "data.train.labels=null", "data.val.labels=null",
        f"training.load_from={weights}", "training.max_epochs=4", "training.optimizer.lr=3e-3",
        "training.optimizer.custom_keys={'backbone.': {lr_mult: 0}}",
        work="finetune",
    )  # fmt: skip
    start = torch.load(weights, weights_only=True)["model"]
    train(finetune, say=lines.append)
    tuned = torch.load(
        finetune.resolved_work_dir() / "checkpoints" / "last.pth", weights_only=True
    )["model"]
    backbone = [k for k in start if k.startswith("backbone.")]
    assert backbone and all(torch.equal(start[k], tuned[k]) for k in backbone)
    assert any("re-initialised head.final_layer.weight" in line for line in lines), lines
    assert tuned["head.final_layer.weight"].shape[0] == 14
    losses = _epoch_losses(finetune.resolved_work_dir() / "results.csv")
    assert losses[-1] < losses[0]


def _epoch_losses(path: Path) -> list[float]:
    import csv

    with path.open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]
