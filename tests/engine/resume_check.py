"""The exact-resume check every family's test runs: a run stopped mid-epoch and resumed ends
bit-identical to the straight run, and right after ``resume_from`` every part of the state
equals the stopped run's — weights, EMA, optimizer, schedule (warm-up + cosine, so the
learning rate differs at every step), the best metric and early-stop counters, and where in
the epoch the sampler stands. Each assertion below is what a missing restore breaks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest
import torch

from posekit.config import PosekitConfig
from posekit.engine.checkpoints import latest_checkpoint
from posekit.engine.control import TrainingStopped
from posekit.engine.loop import Trainer

from .conftest import stop_after_batches

# a learning rate that changes every step, EMA on, the best kept by the training loss (a
# real number, not an AP of 0.0 on both sides) with the early-stop counter running
STRICT = (
    "training.schedule.name=cosine", "training.schedule.warmup_iters=4",
    "training.schedule.warmup_start=0.1", "training.ema.enabled=true", "training.ema.warmup=2",
    "training.patience=100", "training.eval_interval=0", "training.max_epochs=3",
)  # fmt: skip


def snapshot(trainer: Trainer) -> dict[str, Any]:
    """Everything a resume must bring back, copied."""
    ema = trainer.ema.module.state_dict() if trainer.ema is not None else {}
    return {
        "model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "ema": {k: v.detach().clone() for k, v in ema.items()},
        "ema_updates": trainer.ema.updates if trainer.ema is not None else None,
        "lr": [group["lr"] for group in trainer.optimizer.param_groups],
        "schedule_step": trainer.scheduler.last_epoch,
        "moments": {
            index: {k: v.clone() for k, v in entry.items() if isinstance(v, torch.Tensor)}
            for index, entry in enumerate(trainer.optimizer.state_dict()["state"].values())
        },
        "train_state": asdict(trainer.state),
    }


def assert_same(expected: dict[str, Any], found: dict[str, Any], when: str) -> None:
    for part in ("model", "ema"):
        assert expected[part].keys() == found[part].keys(), (when, part)
        for key, value in expected[part].items():
            assert torch.equal(value, found[part][key]), (when, part, key)
    assert expected["ema_updates"] == found["ema_updates"], (when, "EMA updates")
    assert expected["lr"] == found["lr"], (when, "learning rates")
    assert expected["schedule_step"] == found["schedule_step"], (when, "schedule step")
    assert expected["moments"].keys() == found["moments"].keys(), (when, "optimizer state")
    for index, entry in expected["moments"].items():
        for key, value in entry.items():
            assert torch.equal(value, found["moments"][index][key]), (when, "optimizer", key)
    assert expected["train_state"] == found["train_state"], (when, "train state")


def check_exact_resume(
    build: Callable[..., PosekitConfig],
    make_trainer: Callable[[PosekitConfig], Trainer],
    *extra: str,
    stop_batch: int | None = None,
) -> dict[str, Any]:
    """Straight vs stopped at ``stop_batch`` (default: half-way through the second epoch, so
    a best metric exists) and resumed: the same at the resume and at the end."""
    straight = make_trainer(build(*STRICT, *extra, work="straight"))
    straight.fit()
    cfg = build(*STRICT, *extra, work="resumed")
    first = make_trainer(cfg)
    per_epoch = first.batches_per_epoch
    assert per_epoch >= 2, "the check needs epochs of two batches or more"
    stop_after_batches(first, stop_batch or per_epoch + max(1, per_epoch // 2))
    with pytest.raises(TrainingStopped):
        first.fit()
    at_stop = snapshot(first)
    assert at_stop["train_state"]["best_metric"] not in (None, 0.0)  # a real best to restore
    assert at_stop["train_state"]["batch_in_epoch"] > 0  # stopped inside an epoch
    assert at_stop["schedule_step"] > 0  # the schedule has moved: warm-up + cosine
    second = make_trainer(cfg)
    second.resume_from(latest_checkpoint(cfg.resolved_work_dir()))
    assert_same(at_stop, snapshot(second), "right after resume_from")
    second.fit()
    assert_same(snapshot(straight), snapshot(second), "at the end")
    return at_stop
