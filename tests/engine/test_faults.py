"""Faults in the middle of a run: unreadable images (stop or skip), a data-loader worker that
dies, a disk that fills up while a checkpoint is written."""

from __future__ import annotations

import os
import resource
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils.data import get_worker_info

from posekit.config import PosekitConfig
from posekit.engine.control import TrainingStopped
from posekit.engine.faults import is_worker_death
from posekit.engine.state import load_checkpoint, save_checkpoint
from posekit.errors import CheckpointError, DataError

from .conftest import make_trainer

Build = Callable[..., PosekitConfig]


@pytest.fixture
def broken_images(tiny_data: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the tiny training images with one JPEG cut short."""
    folder = tmp_path / "images"
    shutil.copytree(tiny_data / "train", folder)
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:200])
    return folder, victim.name


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_image_stops_the_run_naming_it(
    make_config: Build, broken_images: tuple[Path, str], workers: int
) -> None:
    folder, name = broken_images
    cfg = make_config(f"data.train.images={folder}", f"data.num_workers={workers}")
    with pytest.raises(DataError) as caught:
        make_trainer(cfg).fit()
    message = str(caught.value)
    assert name in message and "data.bad_images=skip" in message
    assert "\n" not in message and "Traceback" not in message


def test_skip_replaces_unreadable_images_and_counts_them(
    make_config: Build, broken_images: tuple[Path, str]
) -> None:
    folder, _ = broken_images
    cfg = make_config(f"data.train.images={folder}", "data.bad_images=skip")
    trainer = make_trainer(cfg)
    trainer.fit()
    epochs, samples = cfg.training.max_epochs, len(trainer.indices)
    assert trainer.state.epoch == epochs
    # the broken image is in every epoch (12 images, batches of 2: all used)
    assert samples == 12 and trainer.state.skipped_samples == epochs
    rows = (cfg.resolved_work_dir() / "results.csv").read_text().splitlines()
    assert "skipped" in rows[0]


class _DiesInWorker(torch.utils.data.Dataset):
    """Kills its own worker process when asked for one sample."""

    def __init__(self, dataset: object, fatal_index: int) -> None:
        self.dataset = dataset
        self.fatal_index = fatal_index

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if key.index == self.fatal_index and get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.dataset[key]  # type: ignore[index]


@pytest.mark.parametrize(
    "message",
    ["DataLoader worker (pid(s) 17) exited unexpectedly",
     "DataLoader worker (pid 17) is killed by signal: Killed."],
)  # fmt: skip
def test_both_worker_death_messages_are_recognised(message: str) -> None:
    assert is_worker_death(RuntimeError(message))
    assert not is_worker_death(RuntimeError("CUDA out of memory"))


def test_a_dead_worker_stops_with_the_progress_saved(make_config: Build) -> None:
    cfg = make_config("data.num_workers=1", "training.max_epochs=1", "training.overfit=true",
                      "training.subset_size=8")  # fmt: skip
    trainer = make_trainer(cfg)
    build = trainer.task.train_dataset
    trainer.task.train_dataset = lambda *a: _DiesInWorker(build(*a), 6)  # type: ignore[method-assign]
    trainer.dataset = trainer.guarded(trainer.task.train_dataset(1, 64))
    with pytest.raises(TrainingStopped, match="data loader worker died") as caught:
        trainer.fit()
    assert "--resume" in str(caught.value)
    last = cfg.resolved_work_dir() / "checkpoints" / "last.pth"
    again = make_trainer(cfg)  # the worker is fine this time: the run continues and ends
    if last.is_file():  # the death was seen while fetching a batch: the progress is saved
        saved = load_checkpoint(last)["train_state"]
        # what was trained before the death (the worker prefetches: it can be nothing yet)
        assert saved["batch_in_epoch"] == trainer.state.batch_in_epoch < 4
        again.resume_from(last)
    else:  # seen by PyTorch's SIGCHLD handler inside a step: that step is not saved
        assert "the latest checkpoint in" in str(caught.value)
    again.fit()
    assert again.state.epoch == 1


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pth"
    save_checkpoint(path, {"model": {"w": torch.zeros(10)}})
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # "the disk holds 64 KiB"
    try:
        with pytest.raises(CheckpointError) as caught:
            save_checkpoint(path, {"model": {"w": torch.zeros(1_000_000)}})  # 4 MB
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    message = str(caught.value)
    assert "could not write the checkpoint" in message and "previous one is intact" in message
    assert "\n" not in message
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(10))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(make_config: Build) -> None:
    cfg = make_config("training.max_epochs=1")
    trainer = make_trainer(cfg)
    compute = trainer.task.compute_loss
    calls = {"n": 0}

    def interrupted_twice(model, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # the user presses Ctrl-C twice during a (long) step
            os.kill(os.getpid(), signal.SIGINT)
            assert trainer.stop.requested  # the first asks for a clean stop...
            os.kill(os.getpid(), signal.SIGINT)  # ...the second stops at once
        return compute(model, batch)

    trainer.task.compute_loss = interrupted_twice  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert not (cfg.resolved_work_dir() / "checkpoints" / "last.pth").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


class _PipeClosesLoader:
    """A loader whose worker pipe closes under the reader (a worker killed mid-hand-over)."""

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise EOFError
        yield


def test_a_worker_pipe_closing_mid_batch_is_a_worker_death(make_config: Build) -> None:
    trainer = make_trainer(make_config("training.max_epochs=1"))
    with pytest.raises(TrainingStopped, match="data loader worker died") as caught:
        list(trainer.batches(_PipeClosesLoader(num_workers=1)))
    assert "--resume" in str(caught.value)
    assert (trainer.checkpoints / "last.pth").is_file()  # the progress is saved first
    with pytest.raises(EOFError):  # without workers it is not a worker's death
        list(trainer.batches(_PipeClosesLoader(num_workers=0)))
