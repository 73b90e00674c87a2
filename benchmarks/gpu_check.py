"""The GPU check: every family trains on the accelerator with its mixed precision (fp16
autocast + GradScaler on CUDA; bf16 on the CPU), the loss falls, a run stopped mid-epoch and
resumed ends bit-identical to one that was not, and the speed is printed; with two GPUs a
2-process NCCL run of ``posekit train`` goes too, and the CUDA tests of the suite run.

    .venv/bin/python benchmarks/gpu_check.py                 # on the GPU (make gpu-check)
    .venv/bin/python benchmarks/gpu_check.py --device cpu --steps 8   # the same path on a CPU

Prints one JSON object per line (one per family, then NCCL and the suite) and exits 1 when a
check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from posekit.config import PosekitConfig, load_config
from posekit.data.synthetic.generate import generate_synthetic
from posekit.engine.checkpoints import latest_checkpoint
from posekit.engine.control import TrainingStopped
from posekit.engine.loop import Trainer
from posekit.tasks import build_task

ROOT = Path(__file__).resolve().parents[1]
FAMILIES: dict[str, tuple[str, ...]] = {
    "bottomup": (
        "model.name=lw_openpose",
        "model.params={num_refinement_stages: 1, num_channels: 32, width_mult: 0.5}",
        "data.input_size=128", "bottomup.inference.input_height=128",
    ),
    "topdown": (
        "model.name=topdown",
        "model.params={backbone: resnet18, input_size: [128, 96], deconv_channels: [64, 64]}",
    ),
    "detector": (
        "model.name=rtdetr", "model.params={size: tiny}", "data.input_size=128",
        "training.optimizer.name=adamw", "training.optimizer.original_lr_mults=false",
    ),
}  # fmt: skip


def family_config(
    family: str, data: Path, work: Path, device: str, steps: int, batch: int
) -> PosekitConfig:
    words = [
        *FAMILIES[family],
        f"data.train.labels={data / 'train.json'}", f"data.train.images={data / 'train'}",
        "data.num_workers=2", f"device={device}", "training.amp=true",
        f"training.batch_size={batch}", "training.overfit=true",
        f"training.subset_size={batch * 2}",
        "training.optimizer.lr=1e-3", "training.schedule.name=cosine",
        "training.schedule.warmup_iters=2", "training.ema.enabled=true", "training.ema.warmup=1",
        f"training.max_epochs={max(2, steps // 2)}", "training.checkpoint_after=0",
        "training.val_after=0", "training.eval_interval=0", "training.log_after=1000000",
        f"work_dir={work}",
    ]  # fmt: skip
    return load_config(None, words)


def trainer_for(cfg: PosekitConfig, device: torch.device) -> Trainer:
    torch.manual_seed(cfg.seed)
    task = build_task(cfg, device)
    return Trainer(task.cfg, task, cfg.resolved_work_dir(), device, lambda _: None)


def stop_after(trainer: Trainer, batches: int) -> None:
    compute, seen = trainer.task.compute_loss, {"n": 0}

    def counting(model: Any, batch: Any) -> Any:
        seen["n"] += 1
        if seen["n"] == batches:
            trainer.stop.request("the GPU check")
        return compute(model, batch)

    trainer.task.compute_loss = counting


def check_family(family: str, data: Path, root: Path, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    started = time.perf_counter()
    straight = trainer_for(
        family_config(family, data, root / f"{family}_straight", args.device, args.steps,
                      args.batch), device)  # fmt: skip
    straight.fit()
    seconds = time.perf_counter() - started
    rows = (root / f"{family}_straight" / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(row.split(",")[header.index("loss")]) for row in rows[1:]]
    cfg = family_config(family, data, root / f"{family}_resumed", args.device, args.steps,
                        args.batch)  # fmt: skip
    first = trainer_for(cfg, device)
    stop_after(first, first.batches_per_epoch + 1)  # inside the second epoch
    with contextlib.suppress(TrainingStopped):  # the stop asked for above
        first.fit()
    second = trainer_for(cfg, device)
    second.resume_from(latest_checkpoint(cfg.resolved_work_dir()))
    second.fit()
    exact = all(
        torch.equal(value, second.model.state_dict()[key])
        for key, value in straight.model.state_dict().items()
    )
    images = straight.state.iteration * args.batch
    return {
        "check": family, "device": str(device), "amp": straight.autocast().fast_dtype.__repr__(),
        "scaler": straight.scaler.is_enabled(), "iterations": straight.state.iteration,
        "loss_first_epoch": round(losses[0], 6), "loss_last_epoch": round(losses[-1], 6),
        "loss_falls": losses[-1] < losses[0], "resume_exact": exact,
        "img_per_s": round(images / seconds, 1),
    }  # fmt: skip


def nccl_run(data: Path, root: Path) -> dict:
    """Two processes on two GPUs through the real command line."""
    config = root / "nccl.yaml"
    config.write_text(
        "model: {name: lw_openpose, params: {num_refinement_stages: 1}}\n"
        f"data: {{train: {{labels: {data / 'train.json'}, images: {data / 'train'}}}, "
        "input_size: 128, num_workers: 2}\ntraining: {batch_size: 8, max_iter: 20, amp: true, "
        "sync_bn: true, eval_interval: 0, checkpoint_after: 0, val_after: 0}\ndevice: cuda\n"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "posekit", "train", "--config", str(config),
               f"work_dir={root / 'nccl'}"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    return {
        "check": "nccl_2_gpus", "ok": done.returncode == 0,
        "seconds": round(time.perf_counter() - started, 1),
        "error": done.stderr.strip().splitlines()[-1] if done.returncode else "",
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=300, help="iterations per family")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--no-suite", action="store_true", help="skip the suite's CUDA tests")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"check": "cuda", "ok": False, "error": "no CUDA device here"}))
        return 1
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True  # resume is compared bit for bit
    failed = False
    with tempfile.TemporaryDirectory(prefix="posekit_gpu_check_") as scratch:
        root = Path(scratch)
        data = root / "data"
        generate_synthetic(data, num_train=max(64, 4 * args.batch), num_val=0,
                           size=(160, 160), seed=0)  # fmt: skip
        for family in args.families:
            result = check_family(family, data, root, args)
            failed |= not (result["loss_falls"] and result["resume_exact"])
            print(json.dumps(result), flush=True)
        if args.device.startswith("cuda") and torch.cuda.device_count() >= 2:
            result = nccl_run(data, root)
            failed |= not result["ok"]
            print(json.dumps(result), flush=True)
    if args.device.startswith("cuda") and not args.no_suite:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/engine/test_cuda.py"],
            cwd=ROOT, capture_output=True, text=True, env={**os.environ},
        )  # fmt: skip
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        print(json.dumps({"check": "suite_cuda_tests", "ok": done.returncode == 0,
                          "summary": last}))  # fmt: skip
        failed |= done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
