"""Multi-process training with torchrun: 2 CPU processes train like 1 with the same global
batch; the CPU SyncBatchNorm equals BatchNorm over the whole batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from posekit.data.synthetic.generate import generate_synthetic
from posekit.engine.dist import CpuSyncBatchNorm, convert_sync_batchnorm

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_cpu_sync_batchnorm_is_batchnorm_in_one_process() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    reference = nn.Sequential(*[m for m in model])  # same modules: compare outputs before
    x = torch.randn(2, 3, 8, 8)
    expected = reference(x).detach().clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    converted = convert_sync_batchnorm(model, "cpu")
    assert isinstance(converted[1], CpuSyncBatchNorm)
    assert isinstance(converted[2][0], CpuSyncBatchNorm)
    assert converted.state_dict().keys() == state.keys()
    converted.load_state_dict(state)
    torch.testing.assert_close(converted(x), expected)


def _config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    generate_synthetic(data, num_train=12, num_val=0, size=(96, 96), seed=9)
    config = {
        "model": {"name": "lw_openpose", "params": {
            "num_refinement_stages": 1, "num_channels": 8, "width_mult": 0.25, "head_width": 8}},
        "data": {"train": {"labels": str(data / "train.json"), "images": str(data / "train")},
                 "input_size": 64, "num_workers": 0},
        "training": {"max_epochs": 2, "checkpoint_after": 0, "eval_interval": 0,
                     "val_after": 0, "optimizer": {"lr": 1e-3}},
    }  # fmt: skip
    path = tmp_path / "dist.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


WORKER = Path(__file__).with_name("dist_worker.py")


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path: Path) -> None:
    """In float64 through the real Trainer: the same weights to 1e-9. SGD, because Adam turns
    rounding noise in gradients that are nearly zero into steps of its full size."""
    config = _config(tmp_path)
    sgd = ["training.optimizer.name=sgd", "training.optimizer.lr=1e-3"]
    one = subprocess.run(
        [sys.executable, str(WORKER), str(config), str(tmp_path / "one"), "training.batch_size=4",
         *sgd],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(WORKER), str(config), str(tmp_path / "two"), "training.batch_size=2",
         "training.sync_bn=true", *sgd],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    single = torch.load(tmp_path / "one" / "checkpoints" / "last.pth", weights_only=True)
    double = torch.load(tmp_path / "two" / "checkpoints" / "last.pth", weights_only=True)
    assert single["train_state"]["iteration"] == double["train_state"]["iteration"] == 6
    moved = 0
    for key, value in single["model"].items():
        if value.is_floating_point():
            assert value.dtype == torch.float64
            torch.testing.assert_close(double["model"][key], value, atol=1e-9, rtol=1e-7)
            moved += int(not torch.equal(value, double["model"][key]))
    assert moved > 0  # really two computations (summed in another order), not one file twice


@pytest.mark.slow
def test_torchrun_posekit_train_writes_once_and_resumes(tmp_path: Path) -> None:
    """The real command line in float32: 2 ranks, one writer; a run stopped inside its first
    epoch (--max-iter 2 of 3 an epoch) continues with --resume to the same weights, EMA and
    learning rate as a run that was not stopped (warm-up + cosine: the rate moves each step)."""
    config = _config(tmp_path)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "posekit", "train", "--config", str(config), "training.batch_size=2",
        "training.sync_bn=true", "training.ema.enabled=true", "training.ema.warmup=1",
        "training.schedule.name=cosine", "training.schedule.warmup_iters=2",
    ]  # fmt: skip
    two = [*command, f"work_dir={tmp_path / 'two'}"]
    first = subprocess.run([*two, "--max-iter", "2"], env=ENV, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    stopped = torch.load(tmp_path / "two" / "checkpoints" / "last.pth", weights_only=True)
    assert stopped["train_state"]["batch_in_epoch"] == 2  # inside the first epoch
    again = subprocess.run([*two, "--resume", "--max-iter", "6"], env=ENV, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    state = torch.load(tmp_path / "two" / "checkpoints" / "last.pth", weights_only=True)
    assert state["train_state"]["epoch"] == 2 and state["train_state"]["iteration"] == 6
    straight = subprocess.run([*command, f"work_dir={tmp_path / 'straight'}"], env=ENV,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-3000:]
    uninterrupted = torch.load(tmp_path / "straight" / "checkpoints" / "last.pth",
                               weights_only=True)  # fmt: skip
    for part in ("model",):  # exact resume holds with two ranks
        for key, value in uninterrupted[part].items():
            assert torch.equal(value, state[part][key]), (part, key)
    for key, value in uninterrupted["ema"]["model"].items():
        assert torch.equal(value, state["ema"]["model"][key]), ("ema", key)
    lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
    assert lrs == [g["lr"] for g in uninterrupted["optimizer"]["param_groups"]]
    assert state["train_state"]["best_metric"] == uninterrupted["train_state"]["best_metric"]
    rows = (tmp_path / "two" / "results.csv").read_text().splitlines()
    # one writer: the header, the row of the stop inside epoch 1 (iteration 2), then epochs 1
    # and 2; not twice as many
    assert [row.split(",")[:2] for row in rows[1:]] == [["1", "2"], ["1", "3"], ["2", "6"]]
