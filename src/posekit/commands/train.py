"""``posekit train``: resolve the data, build the family's task, run the loop, report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posekit.bottomup.lw_openpose import mobilenet_key
from posekit.bottomup.original_checkpoints import (
    continue_original_run,
    original_start_weights,
    original_state,
)
from posekit.config import (
    PosekitConfig,
    check_family_sections,
    config_from_mapping,
    resume_changes,
    with_absolute_paths,
    without_other_families,
)
from posekit.engine import summary
from posekit.engine.checkpoints import latest_checkpoint
from posekit.engine.dist import barrier, init_distributed
from posekit.engine.loop import Trainer, TrainState, pick_device
from posekit.engine.run_folder import refuse_or_move_aside, run_lock
from posekit.engine.state import load_checkpoint, model_state_from
from posekit.errors import CheckpointError, ConfigError
from posekit.layers.backbone_weights import backbone_weights_summary
from posekit.tasks import build_task, family_of, task_class


def ensure_synthetic_data(cfg: PosekitConfig, say: Any = print) -> PosekitConfig:
    """With no training labels, point the config at the built-in synthetic data set,
    generating it first when it is missing or was made with other settings."""
    if cfg.data.train.labels is not None or cfg.data.train_sets:
        return cfg
    from posekit.data.synthetic.generate import generate_synthetic, parse_size, synthetic_is_current

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


def load_initial_weights(model: nn.Module, path: str, from_mobilenet: bool, say: Any) -> None:
    """Start from weights (``--weights-only``, ``load_from``, ``--from-mobilenet``): tensors
    whose names and shapes match are loaded; the others keep their initialisation and are
    listed (e.g. a head for another keypoint count)."""
    data = load_checkpoint(path)
    source = original_start_weights(data, path, model, say)
    if source is None:  # not an original checkpoint: posekit's
        source = model_state_from(data, prefer_ema=True)
    target = model.state_dict()
    rename = mobilenet_key if from_mobilenet else (lambda key: key)
    loaded, skipped = {}, []
    for key, value in target.items():
        candidate = source.get(rename(key))
        if candidate is not None and tuple(candidate.shape) == tuple(value.shape):
            loaded[key] = candidate
        else:
            skipped.append(key)
    if not loaded:
        raise CheckpointError(f"{path}: no tensor matches the model by name and shape")
    model.load_state_dict({**target, **loaded})
    say(f"loaded {len(loaded)} tensors from {path}; {len(skipped)} re-initialised")
    for key in skipped[:50]:
        shape = tuple(source[rename(key)].shape) if rename(key) in source else "missing"
        say(f"  re-initialised {key} {tuple(target[key].shape)} (file: {shape})")
    if len(skipped) > 50:
        say(f"  ... and {len(skipped) - 50} more")


def resume_path(cfg: PosekitConfig) -> Path | None:
    """The checkpoint a run continues from: ``training.resume`` (a path or ``auto``), or
    ``--checkpoint-path`` without ``--weights-only`` / ``--from-mobilenet`` (the original's
    meaning)."""
    training = cfg.training
    continues = training.checkpoint_path and not (training.weights_only or training.from_mobilenet)
    if training.resume and continues:
        raise ConfigError(
            "training.resume and training.checkpoint_path both name a run to continue; give one"
        )
    if training.resume == "auto":
        return latest_checkpoint(cfg.resolved_work_dir())
    if training.resume:
        return Path(training.resume)
    return Path(training.checkpoint_path) if continues else None


def initial_weights(cfg: PosekitConfig) -> str | None:
    training = cfg.training
    if training.load_from and training.checkpoint_path and resume_path(cfg) is None:
        raise ConfigError("give training.load_from or --checkpoint-path --weights-only, not both")
    if training.load_from:
        return training.load_from
    if training.checkpoint_path and (training.weights_only or training.from_mobilenet):
        return training.checkpoint_path
    return None


def train(
    cfg: PosekitConfig,
    say: Any = print,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainState:
    """Run ``posekit train``; ``on_epoch(epoch, results row)`` is called after each epoch."""
    check_family_sections(cfg, family_of(cfg.model.name))  # before any data is made
    task_class(cfg.model.name).check_model_params(cfg)
    cfg = with_absolute_paths(cfg)  # the saved config works from any folder
    device = pick_device(cfg.device)
    info = init_distributed(device.type)
    if info.active and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    if info.is_main:
        cfg = ensure_synthetic_data(cfg, say)
    barrier()  # the synthetic data set is made once, by rank 0
    if not info.is_main:
        cfg = ensure_synthetic_data(cfg, say=lambda _: None)
    torch.manual_seed(cfg.seed)
    continue_from = resume_path(cfg)
    start_weights = initial_weights(cfg)
    if continue_from is not None and start_weights is not None:
        raise ConfigError(
            "--resume continues a run, --weights-only / load_from start a new one; give one"
        )
    resumed = load_checkpoint(continue_from) if continue_from is not None else None
    if continue_from is not None and resumed is not None:
        check_resume_changes(continue_from, resumed, cfg, say if info.is_main else _quiet)
    task = build_task(cfg, device)
    if continue_from is None and info.is_main:  # where the backbone's weights came from
        for line in backbone_weights_summary(task.model, other_weights=start_weights is not None):
            say(line)
    if start_weights is not None:
        load_initial_weights(task.model, start_weights, cfg.training.from_mobilenet, say)
    work_dir = cfg.resolved_work_dir()
    with run_folder(work_dir, continue_from is None, cfg.training.exist_ok, info.is_main, say):
        # the task may resolve settings from the data (a detector's classes): save those
        trainer = Trainer(task.cfg, task, work_dir, device, say, on_epoch=on_epoch)
        if continue_from is not None and resumed is not None:
            original = original_state(resumed)
            if original is None:
                trainer.resume_from(continue_from)
            else:
                continue_original_run(trainer, continue_from, resumed, original)
        for line in start_lines(trainer, task, device, work_dir):
            say(line)
        return trainer.fit()


def start_lines(trainer: Trainer, task: Any, device: torch.device, work_dir: Path) -> list[str]:
    """The start summary: what trains where, the model, the data, the device and precision,
    the schedule."""
    from posekit import __version__

    cfg, training = trainer.cfg, trainer.cfg.training
    state = trainer.state
    where = (
        f"resuming at epoch {state.epoch + 1}, iteration {state.iteration}"
        if state.iteration
        else "a new run"
    )
    example = task.onnx_graph(task.model).example
    optimizer = training.optimizer
    return [
        f"posekit {__version__}: training {cfg.model.name} ({task.family}) in {work_dir}, {where}",
        summary.model_line(type(task.model).__name__, task.model, example),
        *task.data_lines(),
        summary.precision_line(
            device,
            training.amp,
            training.ema.enabled,
            training.batch_size,
            training.batches_per_iter,
        ),
        f"schedule {training.max_epochs} epoch(s) of {trainer.batches_per_epoch} batches"
        + (f", at most {training.max_iter} iterations" if training.max_iter else "")
        + f"; {optimizer.name} lr {optimizer.lr:g}, {training.schedule.name} schedule",
    ]


def _quiet(_: str) -> None:
    return None


def check_resume_changes(path: Path, data: dict[str, Any], cfg: PosekitConfig, say: Any) -> None:
    """Settings given when resuming a posekit run (``data``: its loaded checkpoint): those
    that can change mid-run are applied (and said), any other difference from the run's
    stored config is refused in one line."""
    stored = data.get("config")
    if not isinstance(stored, dict):
        return  # another tool's file, or weights without a config
    family = family_of(cfg.model.name)
    mapping = without_other_families(stored, family)
    before = config_from_mapping(mapping, None, None, f"{path} (stored config)", announce=False)
    applied, fixed = resume_changes(before, cfg, family)
    if fixed:
        more = f" and {len(fixed) - 3} more" if len(fixed) > 3 else ""
        raise ConfigError(
            f"{path}: {', '.join(fixed[:3])}{more} cannot change when resuming this run; "
            "drop them, or start a new run (another --work-dir, or --exist-ok)"
        )
    if applied:
        say(f"resuming with {', '.join(applied)}")


@contextlib.contextmanager
def run_folder(
    work_dir: Path, new_run: bool, exist_ok: bool, is_main: bool, say: Any
) -> Iterator[None]:
    """The run folder for the duration of a run: locked by rank 0 (another process there is
    one line); for a new run, an earlier run in it refused or, with ``exist_ok``, moved
    aside. Other ranks wait for rank 0's check."""
    if not is_main:
        barrier()
        yield
        return
    with run_lock(work_dir):
        moved = refuse_or_move_aside(work_dir, exist_ok) if new_run else None
    if moved is not None:  # the lock moved with the old folder: lock the new one
        say(f"moved what an earlier run left in {work_dir} to {moved}")
    with run_lock(work_dir):
        barrier()
        yield
