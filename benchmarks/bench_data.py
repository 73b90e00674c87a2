"""Data pipeline throughput of one process: samples/s of the bottom-up training sample
(read JPEG, ignore mask, augment, heatmaps, PAFs, weights, tensors) on the synthetic data
set, as the default demo config builds it.

    .venv/bin/python benchmarks/bench_data.py [--samples 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from posekit.bottomup.task import BottomUpTask
from posekit.config import load_config
from posekit.engine.sampling import SampleKey
from posekit.train_args import DEFAULT_CONFIG
from posekit.training import ensure_synthetic_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        cfg = load_config(DEFAULT_CONFIG, [f"work_dir={work}"])
        cfg = ensure_synthetic_data(cfg, say=lambda _: None)
        task = BottomUpTask(cfg, torch.device("cpu"))
        dataset = task.train_dataset(1, cfg.data.input_size)
        count = min(args.samples, len(dataset))
        rates = []
        for run in range(args.runs):
            started = time.perf_counter()
            for index in range(count):
                dataset[SampleKey(index, (0, run, index))]
            rates.append(count / (time.perf_counter() - started))
    rates.sort()
    line = {"name": "data_bottomup", "value": round(rates[len(rates) // 2], 1),
            "unit": "samples/s", "baseline": None, "ratio": None,
            "input_size": cfg.data.input_size}  # fmt: skip
    print(json.dumps(line))


if __name__ == "__main__":
    main()
