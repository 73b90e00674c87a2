"""Kill -9 at random moments, 20 times in one training run (some of them while a checkpoint
is being written): the run always resumes and ends with the same weights as a run that was
never interrupted. ``make soak`` runs the same with more kills (POSEKIT_SOAK_KILLS)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from posekit.data.synthetic.generate import generate_synthetic

KILLS = int(os.environ.get("POSEKIT_SOAK_KILLS", "20"))
EPOCHS = max(12, 12 * KILLS // 20)  # 6 steps an epoch: room for every kill to land mid-run
POSEKIT = [sys.executable, "-m", "posekit"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def write_config(data: Path, folder: Path) -> Path:
    config = {
        "model": {"name": "lw_openpose", "params": {
            "num_refinement_stages": 1, "num_channels": 8, "width_mult": 0.25, "head_width": 8}},
        "data": {"train": {"labels": str(data / "train.json"), "images": str(data / "train")},
                 "input_size": 64, "num_workers": 0},
        "training": {"batch_size": 2, "max_epochs": EPOCHS, "checkpoint_after": 1, "keep_last": 2,
                     "eval_interval": 0, "val_after": 0, "log_after": 5,
                     "optimizer": {"lr": 1e-3}, "ema": {"enabled": True, "warmup": 5}},
    }  # fmt: skip
    path = folder / "kill.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def latest_iteration(folder: Path) -> int:
    """The newest iteration with a checkpoint in ``folder`` (0 when none)."""
    numbers = [int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("checkpoint_iter_*.pth")]
    return max(numbers, default=0)


def final_weights(work: Path) -> dict[str, torch.Tensor]:
    return torch.load(work / "checkpoints" / "last.pth", weights_only=True)["model"]


def start(config: Path, work: Path, resume: bool) -> subprocess.Popen:
    words = [*POSEKIT, "train", "--config", str(config), f"work_dir={work}"]
    return subprocess.Popen(
        [*words, *(["--resume"] if resume else [])],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.001)
    return False


def kill_at_a_random_moment(process: subprocess.Popen, folder: Path, during_write: bool,
                            rng: random.Random) -> str:  # fmt: skip
    """SIGKILL while a new checkpoint's temporary file exists, or a random moment after this
    process wrote its first checkpoint. Returns what was hit."""
    old_temporaries = set(folder.glob(".*.tmp"))
    first = latest_iteration(folder)

    def writing() -> bool:
        ended = process.poll() is not None
        return ended or any(p not in old_temporaries for p in folder.glob(".*.tmp"))

    def progressed() -> bool:
        return process.poll() is not None or latest_iteration(folder) > first

    if during_write and wait_for(writing, 120):
        hit = "during a checkpoint write"
    else:
        wait_for(progressed, 120)
        time.sleep(rng.uniform(0.0, 0.3))
        hit = "between checkpoints"
    if process.poll() is not None:
        return "after the end"
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    return hit


@pytest.mark.slow
def test_twenty_kills_then_the_same_weights(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_synthetic(data, num_train=12, num_val=0, size=(96, 96), seed=7)
    config = write_config(data, tmp_path)
    reference = tmp_path / "reference"
    done = subprocess.run(
        [*POSEKIT, "train", "--config", str(config), f"work_dir={reference}"],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]

    work, rng, outcomes, progress = tmp_path / "killed", random.Random(0), [], []
    folder = work / "checkpoints"
    for kill in range(KILLS):
        resume = folder.is_dir() and any(folder.glob("*.pth"))
        process = start(config, work, resume)
        outcomes.append(kill_at_a_random_moment(process, folder, kill % 2 == 0, rng))
        progress.append(latest_iteration(folder))
        leftovers = [p for p in folder.glob(".*.tmp")]
        for path in leftovers:  # a killed write leaves its temporary file; nothing else
            assert not path.name.startswith("last.pth")
    # every restart resumed from the newest checkpoint and went further before the next kill
    assert progress == sorted(progress) and progress[-1] >= KILLS, progress
    assert outcomes.count("during a checkpoint write") >= KILLS // 4, outcomes
    finished = subprocess.run(
        [*POSEKIT, "train", "--config", str(config), f"work_dir={work}", "--resume"],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    expected, resumed = final_weights(reference), final_weights(work)
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key


@pytest.mark.slow
def test_sigterm_and_sigint_stop_cleanly_with_a_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_synthetic(data, num_train=12, num_val=0, size=(96, 96), seed=7)
    config = write_config(data, tmp_path)
    folder = tmp_path / "run" / "checkpoints"
    for signum in (signal.SIGTERM, signal.SIGINT):
        process = start(config, tmp_path / "run", resume=folder.is_dir())
        first = latest_iteration(folder)
        assert wait_for(lambda: latest_iteration(folder) > first, 120)  # noqa: B023
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stderr[-1000:]
        assert "continue with --resume" in stderr.splitlines()[-1]
        state = torch.load(folder / "last.pth", weights_only=True)["train_state"]
        assert state["iteration"] >= first + 1
