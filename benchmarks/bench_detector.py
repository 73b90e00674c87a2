"""The detector must-show: train ``configs/detector/synthetic.yaml`` (the tiny RT-DETR-style
person detector, two-stage schedule) on the synthetic data set within a wall-clock budget,
and report the learning curve (bbox AP of the EMA weights on the 200 validation images after
each evaluated epoch, with the cumulative training time) and the best AP reached.

The run is the real ``posekit train`` in a subprocess; the time counts everything (data
loading, augmentation, evaluation, checkpoints), but not generating the synthetic data.

    .venv/bin/python benchmarks/bench_detector.py [--budget-min 30] [--work-dir DIR] [OVERRIDES]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posekit.commands.train import ensure_synthetic_data
from posekit.config import load_config

CONFIG = "configs/detector/synthetic.yaml"


def learning_curve(results_csv: Path) -> list[dict[str, float]]:
    """(epoch, cumulative training seconds, AP, AP50, AP75, loss) of every evaluated epoch."""
    curve, elapsed = [], 0.0
    with results_csv.open() as handle:
        for row in csv.DictReader(handle):
            elapsed += float(row["epoch_time"])
            if row.get("AP"):
                curve.append(
                    {
                        "epoch": int(row["epoch"]),  # epochs finished
                        "stage": int(row["stage"]),
                        "train_s": round(elapsed, 1),
                        "AP": round(float(row["AP"]), 4),
                        "AP50": round(float(row["AP50"]), 4),
                        "AP75": round(float(row["AP75"]), 4),
                        "loss": round(float(row["loss"]), 3),
                    }
                )
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=30.0)
    parser.add_argument("--work-dir", default=None, help="keep the run here (default: temporary)")
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args()
    ensure_synthetic_data(load_config(CONFIG, args.overrides), say=lambda _: None)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work_dir or scratch)
        command = [
            sys.executable, "-m", "posekit", "train", "--config", CONFIG,
            f"work_dir={work}", *args.overrides,
        ]  # fmt: skip
        started = time.perf_counter()
        try:
            subprocess.run(
                command, check=True, timeout=args.budget_min * 60, stdout=subprocess.DEVNULL
            )
            within_budget = True
        except subprocess.TimeoutExpired:
            within_budget = False
        wall = time.perf_counter() - started
        curve = learning_curve(work / "results.csv")
    best = max(curve, key=lambda point: point["AP"]) if curve else None
    print(
        json.dumps(
            {
                "benchmark": "detector_synthetic",
                "config": CONFIG,
                "overrides": args.overrides,
                "budget_s": args.budget_min * 60,
                "wall_s": round(wall, 1),
                "finished_within_budget": within_budget,
                "best_AP": best["AP"] if best else None,
                "best_epoch": best["epoch"] if best else None,
                "curve": curve,
            }
        )
    )


if __name__ == "__main__":
    main()
