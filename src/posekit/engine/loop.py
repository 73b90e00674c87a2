"""The training loop every model family uses.

A family supplies a :class:`TrainingTask` (model, data set, loss, evaluation); the loop owns
the optimizer, schedule, accumulation, checkpoints, logs and plots. One step fits on a screen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from posekit.config import PosekitConfig, save_config
from posekit.engine import logs
from posekit.engine.optim import build_optimizer, build_scheduler
from posekit.engine.sampling import BatchList, epoch_batches, subset_indices
from posekit.engine.state import capture_rng_state, load_checkpoint, restore_rng_state
from posekit.engine.state import save_checkpoint as write_checkpoint

Batch = dict[str, torch.Tensor]


class TrainingTask(Protocol):
    """What a model family gives the loop."""

    model: nn.Module
    metric_name: str

    def train_dataset(self) -> Dataset: ...

    def collate(self, samples: list[dict[str, Any]]) -> Batch: ...

    def compute_loss(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]: ...

    def param_groups(self, base_lr: float, weight_decay: float) -> list[dict]: ...

    def has_validation(self) -> bool: ...

    def evaluate(self, model: nn.Module, results_path: Path | None) -> dict[str, float]: ...

    def checkpoint_extras(self) -> dict[str, Any]: ...


@dataclass
class TrainState:
    epoch: int = 0  # 0-based epoch being trained
    batch_in_epoch: int = 0  # batches of this epoch already consumed
    iteration: int = 0  # optimizer steps taken
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "iteration": self.iteration,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
        }


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def move_batch(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass
class Trainer:
    cfg: PosekitConfig
    task: TrainingTask
    work_dir: Path
    device: torch.device
    say: Callable[[str], None] = print
    state: TrainState = field(default_factory=TrainState)

    def __post_init__(self) -> None:
        training = self.cfg.training
        self.model = self.task.model.to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dataset = self.task.train_dataset()
        self.indices = subset_indices(
            len(self.dataset),  # type: ignore[arg-type]
            10 if training.overfit and training.subset_size is None else training.subset_size,
            training.subset_seed,
        )
        if training.overfit and training.subset_size is None:
            self.indices = self.indices[:10]
        self.steps_per_epoch = max(
            1, (len(self.indices) // training.batch_size) // training.batches_per_iter
        )
        total = self.steps_per_epoch * training.max_epochs
        if training.max_iter:
            total = min(total, training.max_iter)
        groups = self.task.param_groups(training.optimizer.lr, training.optimizer.weight_decay)
        self.optimizer = build_optimizer(groups, training.optimizer)
        self.scheduler = build_scheduler(
            self.optimizer, total, self.steps_per_epoch, training.schedule
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=training.amp and self.device.type == "cuda"
        )
        self.checkpoints = self.work_dir / "checkpoints"
        self.results_path = self.work_dir / "results.csv"

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_state": self.state.to_dict(),
            "rng": capture_rng_state(),
            "config": self.cfg.to_dict(),
            **self.task.checkpoint_extras(),
        }

    def save(self, *names: str) -> None:
        payload = self.checkpoint_payload()
        for name in names:
            target = self.work_dir / name if "/" in name else self.checkpoints / name
            write_checkpoint(target, payload)

    def resume_from(self, path: Path) -> None:
        data = load_checkpoint(path)
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        saved = data["train_state"]
        self.state = TrainState(**{k: saved[k] for k in TrainState().to_dict()})
        restore_rng_state(data["rng"])
        self.say(
            f"resumed {path}: epoch {self.state.epoch + 1}, batch {self.state.batch_in_epoch}, "
            f"iteration {self.state.iteration}"
        )

    # -- the loop ------------------------------------------------------------------------
    def loader(self, epoch: int, skip_batches: int) -> DataLoader:
        training = self.cfg.training
        batches = epoch_batches(
            self.indices, training.batch_size, self.cfg.seed, epoch, shuffle=not training.overfit
        )
        workers = self.cfg.data.num_workers
        return DataLoader(
            self.dataset,
            batch_sampler=BatchList(batches[skip_batches:]),
            num_workers=workers,
            collate_fn=self.task.collate,
            worker_init_fn=_worker_init,
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )

    def fit(self) -> TrainState:
        save_config(self.cfg, self.work_dir / "config.yaml")
        board = logs.TensorBoardLog(self.work_dir / "tensorboard")
        try:
            while self.state.epoch < self.cfg.training.max_epochs and not self.done():
                self.train_one_epoch(board)
                if self.done() and self.state.batch_in_epoch:
                    break
        finally:
            board.close()
        return self.state

    def done(self) -> bool:
        max_iter = self.cfg.training.max_iter
        return max_iter is not None and self.state.iteration >= max_iter

    def train_one_epoch(self, board: logs.TensorBoardLog) -> None:
        from tqdm import tqdm

        training = self.cfg.training
        epoch, started = self.state.epoch, time.perf_counter()
        loader = self.loader(epoch, self.state.batch_in_epoch)
        self.model.train()
        sums: dict[str, float] = {}
        count = 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{training.max_epochs}",
            leave=True,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        for batch in bar:
            terms = self.train_step(move_batch(batch, self.device))
            count += 1
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value
            images_per_s = count * training.batch_size / (time.perf_counter() - started)
            bar.set_postfix(
                loss=f"{terms['loss']:.4g}", lr=f"{self.lr():.2e}", img_s=f"{images_per_s:.1f}"
            )
            if self.after_batch(board, terms) or self.done():
                break
        bar.close()
        finished = self.state.batch_in_epoch >= len(
            epoch_batches(self.indices, training.batch_size, self.cfg.seed, epoch)
        )
        means = {
            f"train_{k}" if k != "loss" else "loss": v / max(1, count) for k, v in sums.items()
        }
        if finished:
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
        if finished or self.done():
            self.end_of_epoch(board, means, time.perf_counter() - started)

    def autocast(self) -> torch.autocast:
        """bf16 on CPU, fp16 on CUDA (with the GradScaler), off unless ``training.amp``."""
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.cfg.training.amp)

    def train_step(self, batch: Batch) -> dict[str, float]:
        training = self.cfg.training
        with self.autocast():
            terms = self.task.compute_loss(self.model, batch)
        self.scaler.scale(terms["loss"] / training.batches_per_iter).backward()
        self.state.batch_in_epoch += 1
        if self.state.batch_in_epoch % training.batches_per_iter == 0:
            if training.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), training.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.state.iteration += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    def lr(self) -> float:
        return float(
            self.optimizer.param_groups[0]["lr"]
            / self.optimizer.param_groups[0].get("lr_mult", 1.0)
        )

    def after_batch(self, board: logs.TensorBoardLog, terms: dict[str, float]) -> bool:
        """Per-iteration duties; returns True when training must stop."""
        training, iteration = self.cfg.training, self.state.iteration
        if self.state.batch_in_epoch % training.batches_per_iter:
            return False
        if not math.isfinite(terms["loss"]):
            raise FloatingPointError(f"loss is {terms['loss']} at iteration {iteration}")
        if iteration % training.log_after == 0:
            board.scalars({**terms, "lr": self.lr()}, iteration, "train")
        if training.checkpoint_after and iteration % training.checkpoint_after == 0:
            self.save(f"checkpoint_iter_{iteration}.pth")
        if (
            training.val_after
            and iteration % training.val_after == 0
            and self.task.has_validation()
        ):
            metrics = self.validate()
            board.scalars(metrics, iteration, "val")
            self.say(f"iteration {iteration}: " + _metrics_line(metrics))
        return False

    def validate(self) -> dict[str, float]:
        results_path = self.work_dir / self.cfg.training.val_output_name
        self.model.eval()
        try:
            with torch.no_grad():
                return self.task.evaluate(self.model, results_path)
        finally:
            self.model.train()

    def end_of_epoch(
        self, board: logs.TensorBoardLog, means: dict[str, float], seconds: float
    ) -> None:
        training, epoch = self.cfg.training, self.state.epoch
        metrics: dict[str, float] = {}
        interval = training.eval_interval
        if self.task.has_validation() and interval and (epoch % interval == 0 or self.done()):
            metrics = self.validate()
            self.say(f"epoch {epoch}: " + _metrics_line(metrics))
        row = {
            "epoch": epoch,
            "iter": self.state.iteration,
            **means,
            "lr": self.lr(),
            **metrics,
            "epoch_time": round(seconds, 2),
            "peak_memory_mb": round(_peak_memory_mb(self.device), 1),
        }
        logs.append_result(self.results_path, row)
        board.scalars(metrics, epoch, "val")
        score = metrics.get(self.task.metric_name, -means.get("loss", math.inf))
        improved = self.state.best_metric is None or score > self.state.best_metric
        if improved:
            self.state.best_metric, self.state.best_epoch = score, epoch
        self.save("last.pth", *(["best.pth"] if improved else []))
        logs.write_plots(self.results_path, self.work_dir / "plots")


def _metrics_line(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(0)
