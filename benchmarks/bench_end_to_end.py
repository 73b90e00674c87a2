"""End to end: images/s of posekit's training loop on the synthetic data set (data loading,
augmentation, targets, the step) against the training step alone on one prepared batch, in
the same process; ratio = end to end / step alone (1.0 = the data pipeline costs nothing).

Uses the default demo config (configs/lw_openpose/synthetic.yaml) and its data folder,
generating it when missing, with the config's number of loader workers.

    .venv/bin/python benchmarks/bench_end_to_end.py [--batches 40] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

import torch

from posekit.bottomup.task import BottomUpTask
from posekit.commands.train import ensure_synthetic_data
from posekit.commands.train_args import DEFAULT_CONFIG
from posekit.config import load_config
from posekit.engine.loop import Trainer, move_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        words = [f"work_dir={work}"]
        if args.workers is not None:
            words.append(f"data.num_workers={args.workers}")
        cfg = ensure_synthetic_data(load_config(DEFAULT_CONFIG, words), say=lambda _: None)
        device = torch.device("cpu")
        torch.manual_seed(0)
        trainer = Trainer(cfg, BottomUpTask(cfg, device), cfg.resolved_work_dir(), device)
        batch_size = cfg.training.batch_size
        loader = iter(trainer.loader(0, 0))
        first = move_batch(next(loader), device)
        for _ in range(3):  # warm-up
            trainer.train_step(first)
        started = time.perf_counter()
        for _ in range(args.batches):
            trainer.train_step(first)
        step_alone = args.batches * batch_size / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(args.batches):
            trainer.train_step(move_batch(next(loader), device))
        end_to_end = args.batches * batch_size / (time.perf_counter() - started)
    line = {"name": "end_to_end", "value": round(end_to_end, 2), "unit": "img/s",
            "baseline": round(step_alone, 2), "ratio": round(end_to_end / step_alone, 3),
            "workers": cfg.data.num_workers, "batch": batch_size,
            "input_size": cfg.data.input_size}  # fmt: skip
    print(json.dumps(line))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss = {"name": "peak_rss_train", "value": round(own, 1), "unit": "MB", "baseline": None,
           "ratio": None, "process": "trainer (loader workers not counted)"}  # fmt: skip
    print(json.dumps(rss))


if __name__ == "__main__":
    main()
