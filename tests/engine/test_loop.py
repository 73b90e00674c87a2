"""Training features of the loop, on a tiny model and data set."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from posekit.config import PosekitConfig
from posekit.engine.control import TrainingStopped
from posekit.engine.loop import epoch_input_size
from posekit.engine.state import load_checkpoint
from posekit.errors import CheckpointError

from .conftest import make_trainer

Build = Callable[..., PosekitConfig]


def rows(cfg: PosekitConfig) -> list[dict[str, str]]:
    with (cfg.resolved_work_dir() / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_overfit_loss_falls(make_config: Build) -> None:
    cfg = make_config(
        "training.overfit=true", "training.subset_size=4", "training.max_epochs=12",
        "training.optimizer.lr=5e-3",
    )  # fmt: skip
    trainer = make_trainer(cfg)
    assert list(trainer.indices) == [0, 1, 2, 3]  # the first N samples, not shuffled
    trainer.fit()
    losses = [float(r["loss"]) for r in rows(cfg)]
    assert losses[-1] < 0.6 * losses[0], losses
    assert sum(b < a for a, b in itertools.pairwise(losses)) >= len(losses) - 2


def test_subset_is_fixed_by_its_seed(make_config: Build) -> None:
    first = make_trainer(make_config("training.subset_size=5", "training.subset_seed=1")).indices
    again = make_trainer(make_config("training.subset_size=5", "training.subset_seed=1")).indices
    other = make_trainer(make_config("training.subset_size=5", "training.subset_seed=2")).indices
    assert len(first) == 5 and list(first) == list(again) and list(first) != list(other)


def test_non_finite_steps_are_skipped_then_stop(make_config: Build) -> None:
    cfg = make_config("training.max_nonfinite=3", "training.max_epochs=3")
    trainer = make_trainer(cfg)
    compute = trainer.task.compute_loss
    calls = {"n": 0}

    def poisoned(model, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        terms = compute(model, batch)
        if calls["n"] == 2 or calls["n"] >= 8:  # one stray NaN, then NaN from batch 8 on
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    trainer.task.compute_loss = poisoned  # type: ignore[method-assign]
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingStopped, match="3 non-finite steps in a row"):
        trainer.fit()
    assert trainer.state.nonfinite_steps == 4
    last = load_checkpoint(cfg.resolved_work_dir() / "checkpoints" / "last.pth")
    assert last["train_state"]["epoch"] == 1  # the end-of-epoch-1 checkpoint, intact
    assert any(not torch.equal(before[k], v) for k, v in last["model"].items())


def test_progressive_resizing_and_multiscale(make_config: Build) -> None:
    cfg = make_config("training.resize_schedule=[[1, 64], [2, 96]]")
    assert [epoch_input_size(cfg, e) for e in range(3)] == [64, 96, 96]
    trainer = make_trainer(cfg)
    dataset = trainer.task.train_dataset(1, epoch_input_size(cfg, 1))
    assert next(iter(trainer.loader(0, 0)))["image"].shape[-1] == 64
    trainer.dataset = dataset
    assert next(iter(trainer.loader(1, 0)))["image"].shape[-1] == 96
    multi = make_trainer(make_config("training.multiscale=[64, 80]"))
    sizes = {batch["image"].shape[-1] for batch in multi.loader(0, 0)}
    assert sizes <= {64, 80} and len(sizes) == 2


def test_early_stopping_on_patience(make_config: Build) -> None:
    cfg = make_config("training.patience=2", "training.max_epochs=6", "training.eval_interval=1")
    trainer = make_trainer(cfg)
    trainer.task.evaluate = lambda model, path: {"AP": 0.25}  # type: ignore[method-assign]
    state = trainer.fit()
    assert state.early_stopped and state.epoch == 3  # best at 1, then two without gain


def test_files_every_n_and_keep_last(make_config: Build) -> None:
    cfg = make_config(
        "training.checkpoint_after=2", "training.checkpoint_interval=1", "training.keep_last=2",
        "training.max_epochs=3",
    )  # fmt: skip
    make_trainer(cfg).fit()
    folder = cfg.resolved_work_dir() / "checkpoints"
    names = sorted(p.name for p in folder.glob("checkpoint_*.pth"))
    assert names == sorted(["checkpoint_epoch_2.pth", "checkpoint_epoch_3.pth",
                            "checkpoint_iter_16.pth", "checkpoint_iter_18.pth"])  # fmt: skip
    assert (folder / "last.pth").is_file() and (folder / "best.pth").is_file()


def test_two_stage_writes_both_stage_bests(make_config: Build) -> None:
    cfg = make_config(
        "training.stop_epoch=2", "training.max_epochs=3", "training.ema.enabled=true",
        "training.ema.restart_decay=0.5", "training.eval_interval=1",
    )  # fmt: skip
    said: list[str] = []
    trainer = make_trainer(cfg, said.append)
    trainer.fit()
    folder = cfg.resolved_work_dir() / "checkpoints"
    assert (folder / "best_stg1.pth").is_file() and (folder / "best_stg2.pth").is_file()
    assert any("reloaded" in line and "best_stg1.pth" in line for line in said)
    assert any("EMA restarted with decay 0.5" in line for line in said)
    assert trainer.ema is not None and trainer.ema.decay == 0.5
    assert [r["stage"] for r in rows(cfg)] == ["1", "2", "2"]
    assert any("best AP" in line and "best_stg" in line for line in said)


def test_corrupt_checkpoint_is_refused_and_the_previous_stays(
    make_config: Build, tmp_path: Path
) -> None:
    cfg = make_config("training.max_epochs=1")
    make_trainer(cfg).fit()
    last = cfg.resolved_work_dir() / "checkpoints" / "last.pth"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    assert load_checkpoint(last)["train_state"]["epoch"] == 1


def test_amp_bf16_step_on_cpu(make_config: Build) -> None:
    trainer = make_trainer(make_config("training.amp=true", "training.max_iter=2"))
    state = trainer.fit()
    assert state.iteration == 2 and state.nonfinite_steps == 0


def test_validation_drawings_use_eval_mode_and_leave_batchnorm_alone(
    make_config: Callable[..., PosekitConfig],
) -> None:
    """Drawing the validation images runs the network like validation does: eval mode (no
    batch statistics used or updated; a synchronised BatchNorm would otherwise wait for the
    other processes), no gradients; training mode comes back afterwards."""
    trainer = make_trainer(make_config("training.max_epochs=1", "training.eval_interval=1"))
    seen: list[tuple[bool, bool]] = []
    draw = trainer.task.draw_validation
    buffers: dict[str, torch.Tensor] = {}

    def recording(model, folder, count):  # type: ignore[no-untyped-def]
        seen.append((model.training, torch.is_grad_enabled()))
        buffers.update({k: v.clone() for k, v in model.state_dict().items() if "running" in k})
        draw(model, folder, count)
        after = {k: v for k, v in model.state_dict().items() if "running" in k}
        assert all(torch.equal(buffers[k], after[k]) for k in buffers)

    trainer.task.draw_validation = recording  # type: ignore[method-assign]
    trainer.fit()
    assert seen == [(False, False)]
    assert trainer.model.training


def test_a_stop_is_obeyed_with_one_batch_epochs(make_config: Build) -> None:
    from .conftest import stop_after_batches

    cfg = make_config("training.subset_size=2", "training.max_epochs=20")  # 1 batch an epoch
    trainer = make_trainer(cfg)
    assert trainer.batches_per_epoch == 1
    stop_after_batches(trainer, 3)
    with pytest.raises(TrainingStopped) as stopped:
        trainer.fit()
    assert stopped.value.exit_code == 130 and "--resume" in str(stopped.value)
    assert [r["epoch"] for r in rows(cfg)] == ["1", "2", "3"]  # not one epoch more
    last = load_checkpoint(cfg.resolved_work_dir() / "checkpoints" / "last.pth")
    assert last["train_state"]["epoch"] == 3 and last["train_state"]["iteration"] == 3


def test_log_after_prints_the_mean_loss_terms(make_config: Build) -> None:
    from posekit.engine.loop import loss_line

    said: list[str] = []
    cfg = make_config("training.max_epochs=1", "training.log_after=2")  # 6 iterations
    make_trainer(cfg, say=said.append).fit()
    lines = [line for line in said if line.startswith("iteration ")]
    assert [line.split(":")[0] for line in lines] == ["iteration 2", "iteration 4", "iteration 6"]
    assert "stage1_heatmaps" in lines[0] and "stage1_pafs" in lines[0] and ", lr " in lines[0]
    means = {"loss": 1.5, "stage0_pafs": 0.5, "stage0_heatmaps": 1.0}
    assert loss_line(7, means, 1e-3) == (
        "iteration 7: loss 1.5 (stage0_pafs 0.5 stage0_heatmaps 1), lr 0.001"
    )


def test_start_and_end_summaries(make_config: Build, tmp_path: Path) -> None:
    from posekit.commands.train import train

    said: list[str] = []
    cfg = make_config("training.max_epochs=1", "training.eval_interval=1")
    train(cfg, say=said.append)
    text = "\n".join(said)
    work = cfg.resolved_work_dir()
    assert f"training lw_openpose (bottomup) in {work}, a new run" in text
    model = next(line for line in said if line.startswith("model    LightweightOpenPose: "))
    assert "M parameters" in model and "GFLOPs at 1x3x64x64" in model
    train_line = next(line for line in said if line.startswith("train    "))
    assert "12 images" in train_line and "labelled keypoints (fewest " in train_line
    assert any(line.startswith("val      3 images") for line in said)
    assert any(line.startswith("device   cpu") for line in said)
    done = next(line for line in said if line.startswith("done in "))
    assert ": best AP " in done and "at epoch 1, iteration 6" in done
    assert str(work / "checkpoints") in done
    assert f"  predict:  posekit predict IMAGES --weights {work / 'checkpoints' / 'best.pth'}" in (
        said
    )


def test_end_summary_without_evaluation_and_inside_the_first_epoch(make_config: Build) -> None:
    said: list[str] = []
    cfg = make_config("training.max_iter=2")  # 6 batches an epoch: stops inside epoch 1
    make_trainer(cfg, say=said.append).fit()
    done = next(line for line in said if line.startswith("done in "))
    assert "best training loss " in done and "at epoch 1, iteration 2" in done
    assert "-loss" not in done and "epoch 0" not in done
    assert any("nothing was evaluated" in line for line in said)


def test_an_evaluation_inside_the_first_epoch_names_the_iteration(make_config: Build) -> None:
    said: list[str] = []
    cfg = make_config("training.max_iter=2", "training.eval_interval=1")
    make_trainer(cfg, say=said.append).fit()
    assert any(line.startswith("iteration 2 (inside epoch 1): AP=") for line in said), said
    done = next(line for line in said if line.startswith("done in "))
    assert "best AP " in done and "at epoch 1, iteration 2" in done
    assert not any(line.startswith("epoch 0") for line in said)


def test_rows_count_epochs_as_users_do(make_config: Build) -> None:
    # a --max-iter run that ends inside its second epoch: its row is epoch 2, not 1
    cfg = make_config("training.max_iter=8", "training.max_epochs=3")  # 6 batches an epoch
    make_trainer(cfg).fit()
    assert [(r["epoch"], r["iter"], r["stage"]) for r in rows(cfg)] == [
        ("1", "6", "1"), ("2", "8", "1"),
    ]  # fmt: skip
    assert "loss_stage1_heatmaps" in rows(cfg)[0] and "loss_stage0_heatmaps" not in rows(cfg)[0]


def test_best_follows_the_metric_of_val_after_evaluations(make_config: Build) -> None:
    """The original's flags evaluate every --val-after iterations and never per epoch:
    best.pth follows that AP, not the training loss."""
    said: list[str] = []
    cfg = make_config("training.val_after=2", "training.eval_interval=0",
                      "training.max_epochs=1")  # fmt: skip
    trainer = make_trainer(cfg, say=said.append)
    scores = iter([0.2, 0.5, 0.3])  # iterations 2, 4, 6
    trainer.validate = lambda: {"AP": next(scores)}  # type: ignore[method-assign]
    trainer.fit()
    state = trainer.state
    assert (state.best_metric, state.best_iteration, state.best_epoch) == (0.5, 4, 1)
    best = load_checkpoint(cfg.resolved_work_dir() / "checkpoints" / "best.pth")
    assert best["train_state"]["iteration"] == 4
    done = next(line for line in said if line.startswith("done in "))
    assert "best AP 0.5000 at epoch 1, iteration 4" in done and "-loss" not in done


def test_resuming_a_checkpoint_of_another_model_is_one_line(
    make_config: Build, tmp_path: Path
) -> None:
    cfg = make_config("training.max_epochs=1")
    make_trainer(cfg).fit()
    other = make_config("model.name=lw_openpose", work="other")
    other = other.model_copy(
        update={"model": other.model.model_copy(update={"params": {"num_channels": 16}})}
    )
    trainer = make_trainer(other)
    with pytest.raises(CheckpointError) as error:
        trainer.resume_from(cfg.resolved_work_dir() / "checkpoints" / "last.pth")
    message = str(error.value)
    assert "\n" not in message and "not a run of this model" in message
    assert "Error(s) in loading state_dict" not in message
