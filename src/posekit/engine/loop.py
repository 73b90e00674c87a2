"""The training loop every model family uses.

A family supplies a :class:`TrainingTask` (model, data set, loss, evaluation); the loop owns
the optimizer, schedule, AMP, EMA, accumulation, the two-stage schedule, checkpoints, logs
and plots. The position inside an epoch and inside an accumulation window is part of the
state, so a run resumes exactly where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from posekit.config import PosekitConfig, save_config
from posekit.engine import checkpoints as files
from posekit.engine import logs, summary
from posekit.engine.control import StopRequest, TrainingStopped, stop_on_signals
from posekit.engine.dist import (
    all_reduce_flags,
    barrier,
    broadcast_from_main,
    convert_sync_batchnorm,
    dist_info,
    mean_across_ranks,
)
from posekit.engine.ema import ModelEMA
from posekit.engine.faults import (
    GuardedSamples,
    is_worker_death,
    worker_death_message,
    worker_error_line,
)
from posekit.engine.optim import (
    apply_custom_keys,
    build_optimizer,
    build_scheduler,
    frozen_batchnorms,
    frozen_state_names,
)
from posekit.engine.sampling import BatchList, epoch_batches, training_indices
from posekit.engine.state import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    weights_mismatch,
)
from posekit.engine.state import save_checkpoint as write_checkpoint
from posekit.errors import CheckpointError, ConfigError, UserError

Batch = dict[str, torch.Tensor]


class TrainingTask(Protocol):
    """What a model family gives the loop."""

    model: nn.Module
    metric_name: str

    def train_dataset(self, stage: int, input_size: int) -> Dataset: ...

    def collate(self, samples: list[dict[str, Any]]) -> Batch: ...

    def compute_loss(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]: ...

    def param_groups(self, base_lr: float, weight_decay: float) -> list[dict]: ...

    def has_validation(self) -> bool: ...

    def evaluate(self, model: nn.Module, results_path: Path | None) -> dict[str, float]: ...

    def draw_validation(self, model: nn.Module, folder: Path, count: int) -> None: ...

    def checkpoint_extras(self) -> dict[str, Any]: ...


@dataclass
class TrainState:
    epoch: int = 0  # 0-based epoch being trained (epochs finished so far)
    batch_in_epoch: int = 0  # batches of this epoch already consumed
    iteration: int = 0  # optimizer steps taken (skipped non-finite steps included)
    stage: int = 1
    best_metric: float | None = None
    best_epoch: int | None = None
    best_stage: int | None = None
    best_iteration: int | None = None
    stage_best_metric: float | None = None
    stage_best_epoch: int | None = None
    evals_without_gain: int = 0
    nonfinite_steps: int = 0
    nonfinite_streak: int = 0
    skipped_samples: int = 0  # unreadable samples replaced (data.bad_images=skip)
    early_stopped: bool = False
    # the epoch's loss terms so far (a run resumed mid-epoch reports the whole epoch's mean)
    epoch_loss_sums: dict[str, float] = field(default_factory=dict)
    epoch_batches: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_device(name: str) -> torch.device:
    """``device``: ``auto`` (CUDA, else MPS, else the CPU) or a device this PyTorch can use;
    anything else is one line naming what is available."""
    if name != "auto":
        return usable_device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def usable_device(name: str) -> torch.device:
    available = ["auto", "cpu"]
    if torch.cuda.is_available():
        available += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        available.append("mps")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device name; use one of {available}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "no CUDA device is visible"
        raise ConfigError(
            f"device {name!r}: this PyTorch ({torch.__version__}) has {build}; use "
            f"device=cpu (or auto), or install a CUDA build of PyTorch"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s); use one of "
            f"{available}"
        )
    if device.type == "mps" and "mps" not in available:
        raise ConfigError(f"device {name!r} is not available here; use one of {available}")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r} is not supported; use one of {available}")
    return device


def move_batch(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def epoch_input_size(cfg: PosekitConfig, epoch: int) -> int:
    """Progressive resizing: the size of the last ``[first_epoch, size]`` entry reached
    (epochs 1-based), else ``data.input_size``."""
    size = cfg.data.input_size
    for first_epoch, entry_size in sorted(cfg.training.resize_schedule or []):
        if epoch + 1 >= first_epoch:
            size = entry_size
    return size


@dataclass
class Trainer:
    cfg: PosekitConfig
    task: TrainingTask
    work_dir: Path
    device: torch.device
    say: Callable[[str], None] = print
    # called after every epoch's checkpoint with (epoch, row of results.csv); trials report
    # to Optuna here and may raise to end the run (e.g. optuna.TrialPruned)
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None
    state: TrainState = field(default_factory=TrainState)
    stop: StopRequest = field(default_factory=StopRequest)

    def __post_init__(self) -> None:
        training = self.cfg.training
        self.dist = dist_info()
        if not self.dist.is_main:
            self.say = _silent  # one rank speaks and writes files
        self.log_sums: dict[str, float] = {}  # loss terms since the last log line
        self.log_count = 0
        self.model = self.task.model.to(self.device)
        if self.dist.active and training.sync_bn:
            self.model = convert_sync_batchnorm(self.model, self.device.type)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dataset = self.guarded(self.task.train_dataset(1, self.cfg.data.input_size))
        self.indices = training_indices(
            len(self.dataset),  # type: ignore[arg-type]
            training.subset_size,
            training.subset_seed,
            training.overfit,
            training.repeat,
        )
        # training.batch_size is per process: the global batch spans the ranks
        self.global_batch = training.batch_size * self.dist.world_size
        self.batches_per_epoch = max(1, len(self.indices) // self.global_batch)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / training.batches_per_iter)
        total = self.steps_per_epoch * training.max_epochs
        if training.max_iter:
            total = min(total, training.max_iter)
        custom_keys = training.optimizer.custom_keys
        groups = apply_custom_keys(
            self.model,
            self.task.param_groups(training.optimizer.lr, training.optimizer.weight_decay),
            custom_keys,
        )
        self.frozen_norms = frozen_batchnorms(self.model, custom_keys)
        self.optimizer = build_optimizer(groups, training.optimizer)
        self.scheduler = build_scheduler(
            self.optimizer, total, self.steps_per_epoch, training.schedule
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=training.amp and self.device.type == "cuda"
        )
        # the compiled module shares its parameters with self.model (checkpoints stay plain)
        self.forward_model = torch.compile(self.model) if training.compile else self.model
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.forward_model, device_ids=ids)
        ema = training.ema
        frozen = frozen_state_names(self.model, custom_keys)
        self.ema = ModelEMA(self.model, ema.decay, ema.warmup, frozen) if ema.enabled else None
        self.checkpoints = self.work_dir / files.CHECKPOINTS_DIR
        self.results_path = self.work_dir / "results.csv"
        self.progress_path = self.work_dir / logs.PROGRESS

    # -- checkpoints ---------------------------------------------------------------------
    def pending_batches(self) -> int:
        """Batches whose gradients are accumulated but not yet stepped."""
        return self.state.batch_in_epoch % self.cfg.training.batches_per_iter

    def checkpoint_payload(self) -> dict[str, Any]:
        grads = {}
        if self.pending_batches():
            grads = {
                name: p.grad.detach().clone()
                for name, p in self.model.named_parameters()
                if p.grad is not None
            }
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "grads": grads,
            "train_state": self.state.to_dict(),
            "rng": capture_rng_state(),
            "config": self.cfg.to_dict(),
            **self.task.checkpoint_extras(),
        }

    def save(self, *names: str) -> None:
        """Rank 0 writes; every rank waits until the files are there."""
        if self.dist.is_main:
            payload = self.checkpoint_payload()
            for name in names:
                write_checkpoint(self.checkpoints / name, payload)
        barrier()

    def resume_from(self, path: Path) -> None:
        data = load_checkpoint(path)
        needed = ("model", "optimizer", "scheduler", "train_state", "rng")
        missing = [key for key in needed if key not in data]
        if missing:
            raise CheckpointError(
                f"{path}: not a full training checkpoint (no {missing[0]!r}); to start a new "
                f"run from its weights use --weights-only (or training.load_from={path})"
            )
        mismatch = weights_mismatch(self.model.state_dict(), data["model"])
        if mismatch is not None:
            raise CheckpointError(
                f"{path}: not a run of this model ({mismatch}); resume with the run's own "
                "config (--resume without --config), or start a new run from its weights "
                "with --weights-only"
            )
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        base_lrs = list(self.scheduler.base_lrs)  # from this run's config
        self.scheduler.load_state_dict(data["scheduler"])
        self.apply_base_lrs(base_lrs)
        if data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        if self.ema is not None and data.get("ema"):
            self.ema.load_state_dict(data["ema"])
        parameters = dict(self.model.named_parameters())
        for name, grad in (data.get("grads") or {}).items():
            parameters[name].grad = grad.to(self.device)
        known = TrainState().to_dict()
        self.state = TrainState(**{k: v for k, v in data["train_state"].items() if k in known})
        restore_rng_state(data["rng"])
        if self.dist.is_main:  # what was logged after this checkpoint is logged again
            for path in (self.results_path, self.progress_path):
                logs.drop_rows_after(path, self.state.iteration)
        self.say(
            f"resumed {path}: epoch {self.state.epoch + 1}, batch {self.state.batch_in_epoch}, "
            f"iteration {self.state.iteration}, stage {self.state.stage}"
        )

    def apply_base_lrs(self, base_lrs: list[float]) -> None:
        """The learning rates of this run's config (``training.optimizer.lr`` given when
        resuming) on the restored schedule: each group at base × the schedule's factor now.
        With the same config this sets the values the checkpoint had."""
        scheduler = self.scheduler
        scheduler.base_lrs = list(base_lrs)
        step = scheduler.last_epoch
        for group, base, factor in zip(
            self.optimizer.param_groups, base_lrs, scheduler.lr_lambdas, strict=True
        ):
            group["initial_lr"] = base
            group["lr"] = base * factor(step)
        scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    # -- the loop ------------------------------------------------------------------------
    def guarded(self, dataset: Dataset) -> GuardedSamples:
        return GuardedSamples(dataset, self.cfg.data.bad_images)

    def loader(self, epoch: int, skip_batches: int) -> DataLoader:
        training = self.cfg.training
        batches = epoch_batches(
            self.indices,
            self.global_batch,
            self.cfg.seed,
            epoch,
            shuffle=not training.overfit,
            sizes=training.multiscale,
        )
        if self.dist.active:  # each rank its slice of every global batch
            size, rank = training.batch_size, self.dist.rank
            batches = [batch[rank * size : (rank + 1) * size] for batch in batches]
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
        started = time.perf_counter()
        if self.dist.is_main:
            save_config(self.cfg, self.work_dir / "config.yaml")
        board = logs.TensorBoardLog(self.work_dir / "tensorboard", enabled=self.dist.is_main)
        try:
            with stop_on_signals(self.stop):
                while not self.finished():
                    self.enter_stage_for_epoch()
                    self.dataset = self.guarded(
                        self.task.train_dataset(
                            self.state.stage, epoch_input_size(self.cfg, self.state.epoch)
                        )
                    )
                    self.train_one_epoch(board)
        finally:
            try:
                board.close()
            except RuntimeError as exc:  # PyTorch's SIGCHLD handler, after a worker died
                if not is_worker_death(exc):
                    raise
        for line in self.end_lines(time.perf_counter() - started):
            self.say(line)
        return self.state

    def finished(self) -> bool:
        return (
            self.state.epoch >= self.cfg.training.max_epochs
            or self.iterations_done()
            or self.state.early_stopped
        )

    def iterations_done(self) -> bool:
        max_iter = self.cfg.training.max_iter
        return max_iter is not None and self.state.iteration >= max_iter

    def train_one_epoch(self, board: logs.TensorBoardLog) -> None:
        from tqdm import tqdm

        training, started = self.cfg.training, time.perf_counter()
        loader = self.loader(self.state.epoch, self.state.batch_in_epoch)
        self.set_train_mode()
        sums = self.state.epoch_loss_sums  # kept in the state: checkpoints carry them
        count = 0  # batches this process trained (the speed shown)
        bar = tqdm(
            loader,
            desc=f"epoch {self.state.epoch + 1}/{training.max_epochs}",
            dynamic_ncols=True,
            mininterval=1.0,
            disable=not self.dist.is_main,
        )
        try:
            for batch in self.batches(bar):
                self.state.skipped_samples += int(batch.pop("skipped").sum())
                terms = mean_across_ranks(self.train_step(move_batch(batch, self.device)))
                count += 1
                self.state.epoch_batches += 1
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + value
                images_per_s = count * training.batch_size / (time.perf_counter() - started)
                bar.set_postfix(
                    loss=f"{terms['loss']:.4g}", lr=f"{self.lr():.2e}", img_s=f"{images_per_s:.1f}"
                )
                self.after_step(board, terms)
                if self.stop.requested or self.iterations_done():
                    break
        except RuntimeError as exc:
            if not is_worker_death(exc):
                raise
            # PyTorch's SIGCHLD handler can notice the death in the middle of a step: that
            # step is not saved, the checkpoints written before it are intact
            where = f"the latest checkpoint in {self.checkpoints}"
            raise TrainingStopped(worker_death_message(exc, where)) from None
        bar.close()
        batches = max(1, self.state.epoch_batches)
        means = {("loss" if k == "loss" else f"loss_{k}"): v / batches for k, v in sums.items()}
        if self.state.batch_in_epoch >= self.batches_per_epoch:
            self.state.epoch_loss_sums, self.state.epoch_batches = {}, 0
            if self.pending_batches():
                self.optimizer_step()  # the epoch's last, partial accumulation window
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self.end_of_epoch(board, means, time.perf_counter() - started)
            if self.stop.requested and not self.finished():  # last.pth is written
                raise self.stopped()
        elif self.stop.requested:
            self.save(files.LAST)
            raise self.stopped()
        elif self.iterations_done():
            self.end_of_epoch(board, means, time.perf_counter() - started)

    def stopped(self) -> TrainingStopped:
        """The clean stop a signal asked for (the checkpoint is written first)."""
        return TrainingStopped(
            f"stopped by {self.stop.reason} at iteration {self.state.iteration}; "
            f"continue with --resume {self.checkpoints / files.LAST}",
            exit_code=130,
        )

    def batches(self, loader: Any) -> Iterator[Batch]:
        """The loader's batches; a dead worker stops the run with the progress saved, a user
        error from a worker keeps its one-line message."""
        try:
            yield from loader
        except UserError as exc:
            raise type(exc)(worker_error_line(exc)) from None
        except RuntimeError as exc:
            if not is_worker_death(exc):
                raise
            raise self.worker_died(exc) from None
        except (EOFError, ConnectionError) as exc:
            # a worker killed while it handed over a batch: the pipe closes under the reader
            source = getattr(loader, "iterable", loader)  # the DataLoader behind the bar
            if not getattr(source, "num_workers", 0):
                raise
            death = RuntimeError(f"DataLoader worker exited unexpectedly ({type(exc).__name__})")
            raise self.worker_died(death) from None

    def worker_died(self, exc: RuntimeError) -> TrainingStopped:
        """The stop for a dead loader worker, the progress saved first."""
        self.save(files.LAST)
        return TrainingStopped(worker_death_message(exc, str(self.checkpoints / files.LAST)))

    def autocast(self) -> torch.autocast:
        """bf16 on CPU, fp16 on CUDA (with the GradScaler), off unless ``training.amp``."""
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.cfg.training.amp)

    def train_step(self, batch: Batch) -> dict[str, float]:
        training = self.cfg.training
        with self.autocast():
            terms = self.task.compute_loss(self.forward_model, batch)
        loss = terms["loss"]
        self.state.batch_in_epoch += 1
        finite = bool(torch.isfinite(loss))
        if self.dist.active:  # every rank takes the same decisions, or DDP would wait forever
            nonfinite, stop = all_reduce_flags(not finite, self.stop.requested)
            finite = not nonfinite
            if stop and not self.stop.requested:
                self.stop.request("a signal to another rank")
        if finite:
            self.scaler.scale(loss / training.batches_per_iter).backward()
        else:
            self.skip_nonfinite(f"loss {float(loss.detach())}")
        if self.pending_batches() == 0:
            self.optimizer_step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def optimizer_step(self) -> None:
        """Clip, step (unless the gradients are not finite), update EMA and schedule."""
        self.scaler.unscale_(self.optimizer)
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        limit = self.cfg.training.grad_clip or math.inf
        norm = nn.utils.clip_grad_norm_(parameters, limit) if parameters else torch.tensor(0.0)
        if not torch.isfinite(norm):
            self.skip_nonfinite("gradients")
        elif parameters:
            self.scaler.step(self.optimizer)
            self.state.nonfinite_streak = 0
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.iteration += 1
        if self.ema is not None:
            self.ema.update(self.model)

    def skip_nonfinite(self, what: str) -> None:
        state = self.state
        state.nonfinite_steps += 1
        state.nonfinite_streak += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.say(f"iteration {state.iteration}: non-finite {what}; step skipped")
        if state.nonfinite_streak >= self.cfg.training.max_nonfinite:
            raise TrainingStopped(
                f"{state.nonfinite_streak} non-finite steps in a row (iteration "
                f"{state.iteration}); lower training.optimizer.lr or turn off --amp; the last "
                f"good checkpoint is in {self.checkpoints}"
            )

    def lr(self) -> float:
        group = self.optimizer.param_groups[0]
        return float(group["lr"] / group.get("lr_mult", 1.0))

    def after_step(self, board: logs.TensorBoardLog, terms: dict[str, float]) -> None:
        """Per-iteration duties, once an optimizer step has been taken."""
        training, iteration = self.cfg.training, self.state.iteration
        for key, value in terms.items():  # the loss terms since the last log line
            self.log_sums[key] = self.log_sums.get(key, 0.0) + value
        self.log_count += 1
        if self.pending_batches() or not iteration:
            return
        if iteration % training.log_after == 0:
            board.scalars({**terms, "lr": self.lr()}, iteration, "train")
            means = {k: v / max(1, self.log_count) for k, v in self.log_sums.items()}
            self.say_above_bar(loss_line(iteration, means, self.lr()))
            if self.dist.is_main:
                logs.append_result(self.progress_path, {**self.position(), **means})
            self.log_sums, self.log_count = {}, 0
        if training.checkpoint_after and iteration % training.checkpoint_after == 0:
            self.save(files.iter_file(iteration))
            if self.dist.is_main:
                files.prune(self.checkpoints, training.keep_last)
        validate_now = training.val_after and iteration % training.val_after == 0
        if validate_now and self.task.has_validation():
            metrics = self.validate()
            board.scalars(metrics, iteration, "val")
            self.say_above_bar(f"iteration {iteration}: " + _metrics_line(metrics))
            if self.dist.is_main:
                logs.append_result(self.progress_path, {**self.position(), **metrics})
                logs.write_plots(self.results_path, self.work_dir / "plots", self.progress_path)
            best = self.record_best(metrics, {}, self.state.epoch + 1)  # best.pth by the metric
            if best:
                self.save(*best)

    def say_above_bar(self, line: str) -> None:
        """A line in the middle of an epoch, printed above the progress bar (not after it)."""
        from tqdm import tqdm

        with tqdm.external_write_mode():
            self.say(line)

    def position(self) -> dict[str, float]:
        """Where training is: the iteration and the epoch with its fraction done."""
        fraction = self.state.batch_in_epoch / max(1, self.batches_per_epoch)
        return {"iter": self.state.iteration, "epoch": round(self.state.epoch + fraction, 4)}

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def evaluates(self) -> bool:
        """Whether the run is evaluated at all, every ``eval_interval`` epochs or every
        ``val_after`` iterations (else ``best`` follows the training loss)."""
        training = self.cfg.training
        return self.task.has_validation() and (training.eval_interval > 0 or training.val_after > 0)

    def validate(self) -> dict[str, float]:
        """Rank 0 evaluates; every rank gets its metrics (best and early-stop agree)."""
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            results_path = self.work_dir / self.cfg.training.val_output_name
            with self.evaluating() as model:
                metrics = self.task.evaluate(model, results_path)
        return broadcast_from_main(metrics)

    @contextmanager
    def evaluating(self) -> Iterator[nn.Module]:
        """The weights validation uses, in eval mode without gradients; training mode is
        restored afterwards. (In training mode BatchNorm would use and update batch
        statistics, and a synchronised BatchNorm would wait for the other processes.)"""
        model = self.eval_model()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                yield model
        finally:
            if was_training:
                self.set_train_mode()

    def set_train_mode(self) -> None:
        """Training mode, except the BatchNorm layers of frozen parameters."""
        self.model.train()
        for module in self.frozen_norms:
            module.eval()

    # -- epochs and stages -----------------------------------------------------------------
    def enter_stage_for_epoch(self) -> None:
        """Two-stage schedule (DEIMv2): at ``stop_epoch`` reload the best stage-1 weights,
        restart the EMA with ``ema.restart_decay`` and switch to the weak augmentation."""
        stop_epoch = self.cfg.training.stop_epoch
        if self.state.stage != 1 or stop_epoch is None or self.state.epoch + 1 < stop_epoch:
            return
        self.state.stage = 2
        self.state.stage_best_metric = self.state.stage_best_epoch = None
        best = self.checkpoints / files.STAGE_BEST[1]
        barrier()  # rank 0 wrote it: every rank reads the finished file
        if best.is_file():
            data = load_checkpoint(best)
            weights = data["ema"]["model"] if data.get("ema") else data["model"]
            self.model.load_state_dict(weights)
            self.say(f"stage 2 from epoch {self.state.epoch + 1}: reloaded {best}")
        else:
            self.say(f"stage 2 from epoch {self.state.epoch + 1}: no {best.name}, weights kept")
        if self.ema is not None:
            decay = self.cfg.training.ema.restart_decay or self.cfg.training.ema.decay
            self.ema.restart(self.model, decay)
            self.say(f"EMA restarted with decay {decay}")

    def end_of_epoch(
        self, board: logs.TensorBoardLog, means: dict[str, float], seconds: float
    ) -> None:
        training, epoch = self.cfg.training, self.state.epoch
        # the epoch as users count it: the one this row closes, or (a --max-iter run that
        # ends inside an epoch) the one being trained
        counted = epoch if not self.state.batch_in_epoch else epoch + 1
        metrics: dict[str, float] = {}
        interval = training.eval_interval
        if self.task.has_validation() and interval and (epoch % interval == 0 or self.finished()):
            metrics = self.validate()
            where = (
                f"epoch {epoch}"
                if counted == epoch
                else f"iteration {self.state.iteration} (inside epoch {counted})"
            )
            self.say(f"{where}: " + _metrics_line(metrics))
        row = {
            "epoch": counted,
            "iter": self.state.iteration,
            "stage": self.state.stage,
            **means,
            "lr": self.lr(),
            **metrics,
            "epoch_time": round(seconds, 2),
            **({"skipped": self.state.skipped_samples} if self.state.skipped_samples else {}),
            "peak_memory_mb": round(_peak_memory_mb(self.device), 1),
        }
        if self.dist.is_main:
            logs.append_result(self.results_path, row)
        board.scalars({**means, **metrics}, epoch, "epoch")
        names = [files.LAST, *self.record_best(metrics, means, counted)]
        if training.checkpoint_interval and epoch % training.checkpoint_interval == 0:
            names.append(files.epoch_file(epoch))
        self.save(*names)
        if self.dist.is_main:
            files.prune(self.checkpoints, training.keep_last)
            logs.write_plots(self.results_path, self.work_dir / "plots", self.progress_path)
            if metrics and self.task.has_validation():
                with self.evaluating() as model:
                    self.task.draw_validation(model, self.work_dir / "plots", count=4)
        if self.on_epoch is not None:
            self.on_epoch(epoch, row)

    def record_best(
        self, metrics: dict[str, float], means: dict[str, float], epoch: int
    ) -> list[str]:
        """Update the best scores (``epoch``: as users count it); returns the best files to
        write now."""
        state = self.state
        if self.task.metric_name in metrics:
            score = metrics[self.task.metric_name]
        elif self.evaluates():
            return []  # no evaluation this epoch: nothing to compare
        else:
            score = -means.get("loss", math.inf)  # best by training loss without validation
        names = []
        if state.best_metric is None or score > state.best_metric:
            state.best_metric, state.best_epoch, state.best_stage = score, epoch, state.stage
            state.best_iteration = state.iteration
            state.evals_without_gain = 0
            names.append(files.BEST)
        else:
            state.evals_without_gain += 1
            patience = self.cfg.training.patience
            if patience and state.evals_without_gain >= patience:
                state.early_stopped = True
                self.say(f"early stop: no gain in {patience} evaluations")
        if self.cfg.training.stop_epoch is not None and (
            state.stage_best_metric is None or score > state.stage_best_metric
        ):
            state.stage_best_metric, state.stage_best_epoch = score, epoch
            names.append(files.STAGE_BEST[state.stage])
        return names

    def best_description(self) -> str | None:
        """``best AP 0.5770 at epoch 8`` (or the training loss when nothing is evaluated, and
        the iteration when a run stopped inside its first epoch); None before any."""
        state = self.state
        if state.best_metric is None:
            return None
        if self.evaluates():
            what = f"best {self.task.metric_name} {state.best_metric:.4f}"
        else:
            what = f"best training loss {-state.best_metric:.5g}"
        when = f"at epoch {state.best_epoch}"
        if state.best_iteration is not None:
            when += f", iteration {state.best_iteration}"
        same = ""
        if self.cfg.training.stop_epoch is not None and state.best_stage is not None:
            twin = files.STAGE_BEST[state.best_stage]
            same = f" (stage {state.best_stage}: the same weights as {twin})"
        return f"{what} {when}{same}"

    def end_lines(self, seconds: float) -> list[str]:
        return summary.end_lines(
            self.best_description(), self.checkpoints / files.LAST,
            self.checkpoints / files.BEST, seconds, self.evaluates(),
        )  # fmt: skip


def loss_line(iteration: int, means: dict[str, float], lr: float) -> str:
    """``training.log_after``'s line: each loss term's mean over the batches since the last
    line (as the original train.py prints every ``log_after`` iterations). Pure."""
    means = dict(means)
    total = means.pop("loss", math.nan)
    terms = " ".join(f"{key} {value:.5g}" for key, value in means.items())
    return (
        f"iteration {iteration}: loss {total:.5g}"
        + (f" ({terms})" if terms else "")
        + (f", lr {lr:.3g}")
    )


def _silent(_: str) -> None:
    return None


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
