"""``posekit train``: resolve the data, build the family's task, run the loop, report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from posekit.bottomup.task import BottomUpTask
from posekit.config import PosekitConfig
from posekit.engine.loop import Trainer, TrainState, pick_device
from posekit.engine.state import load_checkpoint, model_state_from
from posekit.errors import CheckpointError, ConfigError


def ensure_synthetic_data(cfg: PosekitConfig, say: Any = print) -> PosekitConfig:
    """With no training labels, point the config at the built-in synthetic data set,
    generating it first when it is missing or was made with other settings."""
    if cfg.data.train.labels is not None:
        return cfg
    from posekit.data.synthetic import generate_synthetic, parse_size, synthetic_is_current

    synth = cfg.data.synthetic
    root = Path(synth.dir)
    size = parse_size(synth.size)
    if not synthetic_is_current(root, synth.train_images, synth.val_images, size, synth.seed):
        say(
            f"generating the synthetic data set in {root} "
            f"({synth.train_images} + {synth.val_images} images)"
        )
        started = time.perf_counter()
        generate_synthetic(root, synth.train_images, synth.val_images, size, synth.seed)
        say(f"  done in {time.perf_counter() - started:.1f} s")
    data = cfg.data.model_copy(deep=True)
    data.train.labels, data.train.images = str(root / "train.json"), str(root / "train")
    if synth.val_images and data.val.labels is None:
        data.val.labels, data.val.images = str(root / "val.json"), str(root / "val")
    return cfg.model_copy(update={"data": data})


def load_initial_weights(task: BottomUpTask, cfg: PosekitConfig, say: Any = print) -> None:
    """``--checkpoint-path`` with ``--from-mobilenet`` or ``--weights-only``: weights whose
    names and shapes match are loaded, the rest are reported and keep their initialisation."""
    path = cfg.training.checkpoint_path
    assert path is not None
    data = load_checkpoint(path)
    source = model_state_from(data)
    if cfg.training.from_mobilenet:
        from posekit.models.lw_openpose import mobilenet_key

        source = {k: v for k, v in source.items()}
        target_to_source = {k: mobilenet_key(k) for k in task.model.state_dict()}
    else:
        target_to_source = {k: k for k in task.model.state_dict()}
    target = task.model.state_dict()
    loaded, skipped = {}, []
    for key, value in target.items():
        candidate = source.get(target_to_source[key])
        if candidate is not None and tuple(candidate.shape) == tuple(value.shape):
            loaded[key] = candidate
        else:
            skipped.append(key)
    if not loaded:
        raise CheckpointError(f"{path}: no tensor matches the model by name and shape")
    task.model.load_state_dict({**target, **loaded})
    say(f"loaded {len(loaded)} tensors from {path}; kept {len(skipped)} initialised")
    for key in skipped[:50]:
        say(f"  not loaded: {key}")
    if len(skipped) > 50:
        say(f"  ... and {len(skipped) - 50} more")


def train(cfg: PosekitConfig, say: Any = print) -> TrainState:
    cfg = ensure_synthetic_data(cfg, say)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = BottomUpTask(cfg, device)
    training = cfg.training
    resume_path = None
    if training.checkpoint_path:
        if training.weights_only or training.from_mobilenet:
            load_initial_weights(task, cfg, say)
        else:
            resume_path = Path(training.checkpoint_path)
    if training.resume:
        if resume_path is not None:
            raise ConfigError(
                "training.resume and training.checkpoint_path both name a run to continue; give one"
            )
        resume_path = Path(training.resume)
    work_dir = cfg.resolved_work_dir()
    trainer = Trainer(cfg, task, work_dir, device, say)
    if resume_path is not None:
        trainer.resume_from(resume_path)
    say(f"training {cfg.model.name} on {device}; run folder {work_dir}")
    state = trainer.fit()
    if state.best_metric is not None:
        say(
            f"best {task.metric_name if task.has_validation() else '-loss'} "
            f"{state.best_metric:.4f} at epoch {state.best_epoch}: "
            f"{work_dir / 'checkpoints' / 'best.pth'}"
        )
    return state
