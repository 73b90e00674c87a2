"""Exact resume: N iterations straight == k iterations, stop, resume, continue to N."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from posekit.config import PosekitConfig
from posekit.engine.checkpoints import latest_checkpoint
from posekit.engine.control import TrainingStopped
from posekit.engine.state import load_checkpoint

from .conftest import make_trainer, stop_after_batches


def final_weights(cfg: PosekitConfig) -> dict[str, torch.Tensor]:
    trainer = make_trainer(cfg)
    trainer.fit()
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def stopped_then_resumed(cfg: PosekitConfig, stop_batch: int) -> dict[str, torch.Tensor]:
    first = make_trainer(cfg)
    stop_after_batches(first, stop_batch)
    with pytest.raises(TrainingStopped, match="--resume"):
        first.fit()
    checkpoint = latest_checkpoint(cfg.resolved_work_dir())
    second = make_trainer(cfg)
    second.resume_from(checkpoint)
    second.fit()
    return second.model.state_dict()


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    ("stop_batch", "extra"),
    [
        (3, ()),  # inside the first epoch (6 batches an epoch)
        (5, ("training.batches_per_iter=2",)),  # inside an accumulation window
        (8, ("training.stop_epoch=2", "training.ema.enabled=true", "training.eval_interval=1")),
    ],  # the last one stops two batches after the stage switch, with EMA and validation
)
def test_stop_and_resume_is_bit_identical(
    make_config: Callable[..., PosekitConfig], stop_batch: int, extra: tuple[str, ...]
) -> None:
    straight = final_weights(make_config(*extra, work="straight"))
    resumed = stopped_then_resumed(make_config(*extra, work="resumed"), stop_batch)
    assert_identical(straight, resumed)


def test_checkpoint_holds_the_full_state(make_config: Callable[..., PosekitConfig]) -> None:
    cfg = make_config("training.batches_per_iter=2", "training.ema.enabled=true")
    trainer = make_trainer(cfg)
    stop_after_batches(trainer, 3)
    with pytest.raises(TrainingStopped):
        trainer.fit()
    data = load_checkpoint(cfg.resolved_work_dir() / "checkpoints" / "last.pth")
    assert {"model", "optimizer", "scheduler", "scaler", "ema", "grads", "train_state", "rng",
            "config", "schema"} <= set(data)  # fmt: skip
    state = data["train_state"]
    assert (state["epoch"], state["batch_in_epoch"], state["iteration"]) == (0, 3, 1)
    assert data["grads"], "a stop inside an accumulation window keeps the pending gradients"
    assert data["ema"]["updates"] == 1
    assert set(data["rng"]) >= {"python", "numpy", "torch"}


def test_resume_with_more_epochs_extends_the_run(
    make_config: Callable[..., PosekitConfig],
) -> None:
    cfg = make_config("training.max_epochs=1")
    make_trainer(cfg).fit()
    longer = make_config("training.max_epochs=2")
    trainer = make_trainer(longer)
    trainer.resume_from(cfg.resolved_work_dir() / "checkpoints" / "last.pth")
    state = trainer.fit()
    assert state.epoch == 2 and state.iteration == 12


@pytest.mark.parametrize("workers", [0, 2])
def test_every_part_of_the_state_is_restored(
    make_config: Callable[..., PosekitConfig], workers: int
) -> None:
    """Bottom-up, with loader workers or without: see ``resume_check``."""
    from .resume_check import check_exact_resume

    # 6 batches an epoch: batch 9 is inside epoch 2, inside the cosine after the warm-up
    check_exact_resume(make_config, make_trainer, f"data.num_workers={workers}", stop_batch=9)


def test_the_early_stop_counter_is_restored(make_config: Callable[..., PosekitConfig]) -> None:
    """An evaluated run whose metric stops improving: at the stop (inside epoch 3) the best
    is epoch 1's and one evaluation has gone without gain; a resume that forgot the counter
    would end with one fewer."""
    from .resume_check import check_exact_resume

    def scored(cfg: PosekitConfig):  # type: ignore[no-untyped-def]
        trainer = make_trainer(cfg)
        trainer.validate = lambda: {"AP": 0.5}  # type: ignore[method-assign]
        return trainer

    at_stop = check_exact_resume(make_config, scored, "training.eval_interval=1", stop_batch=14)
    state = at_stop["train_state"]
    assert (state["best_metric"], state["best_epoch"], state["evals_without_gain"]) == (0.5, 1, 1)
