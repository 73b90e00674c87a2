"""Data pipeline throughput of one process, in samples/s.

``data_bottomup``: the bottom-up training sample (read JPEG, ignore mask, augment, heatmaps,
PAFs, weights, tensors) on the synthetic data set, as the default demo config builds it.
``data_topdown``: the top-down training sample (read JPEG, box -> centre/scale, half-body,
box shift/scale/rotate, flip, affine crop, MSRA heatmaps, tensors) on the same synthetic
data set with ``configs/topdown/synthetic.yaml`` (128x96 crops), and
``data_topdown_coco`` at 256x192 on the real COCO sample (640x480 JPEGs; skipped when the
sample is absent).

    .venv/bin/python benchmarks/bench_data.py [--samples 300] [--runs 3] [--only topdown]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from posekit.commands.train import ensure_synthetic_data
from posekit.commands.train_args import CONFIGS_DIR, DEFAULT_CONFIG
from posekit.config import PosekitConfig, load_config
from posekit.engine.sampling import SampleKey
from posekit.tasks import build_task

SAMPLES = Path(
    os.environ.get(
        "POSEKIT_SAMPLE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    )
)


def samples_per_second(cfg: PosekitConfig, samples: int, runs: int) -> tuple[float, int]:
    """Median samples/s over ``runs`` passes of ``samples`` augmented samples."""
    task = build_task(cfg, torch.device("cpu"))
    dataset: Any = task.train_dataset(1, cfg.data.input_size)
    count = samples
    rates = []
    for run in range(runs):
        started = time.perf_counter()
        for index in range(count):
            dataset[SampleKey(index % len(dataset), (0, run, index), None)]
        rates.append(count / (time.perf_counter() - started))
    rates.sort()
    return rates[len(rates) // 2], len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["bottomup", "topdown"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        runs: list[tuple[str, Path, list[str]]] = []
        if args.only in (None, "bottomup"):
            runs.append(("data_bottomup", DEFAULT_CONFIG, []))
        if args.only in (None, "topdown"):
            runs.append(("data_topdown", CONFIGS_DIR / "topdown" / "synthetic.yaml", []))
            if (SAMPLES / "coco" / "test_coco.json").is_file():
                coco = CONFIGS_DIR / "topdown" / "overfit_coco_sample.yaml"
                runs.append(("data_topdown_coco", coco, ["training.overfit=false",
                             f"data.train.labels={SAMPLES / 'coco' / 'test_coco.json'}",
                             f"data.train.images={SAMPLES / 'coco'}"]))  # fmt: skip
        for name, path, words in runs:
            cfg = load_config(path, [f"work_dir={work}", *words])
            cfg = ensure_synthetic_data(cfg, say=lambda _: None)
            rate, size = samples_per_second(cfg, args.samples, args.runs)
            crop = cfg.model.params.get("input_size", [cfg.data.input_size] * 2)
            line = {"name": name, "value": round(rate, 1), "unit": "samples/s",
                    "baseline": None, "ratio": None, "input_size": list(crop),
                    "distinct_samples": size}  # fmt: skip
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
