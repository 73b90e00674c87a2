"""Synthetic data set generation speed, end to end (render, JPEG, files, JSON), one process.

Prints one JSON line: the median images/s of ``--runs`` runs of ``--images`` images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from posekit.data.synthetic.generate import generate_synthetic, parse_size


def images_per_second(images: int, size: tuple[int, int], seed: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        generate_synthetic(Path(folder), images, size=size, seed=seed, workers=1)
        return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    size = parse_size(args.size)
    rates = [images_per_second(args.images, size, args.seed) for _ in range(args.runs)]
    result = {
        "name": "synth",
        "value": round(statistics.median(rates), 1),
        "unit": "img/s",
        "baseline": None,
        "ratio": None,
        "size": f"{size[0]}x{size[1]}",
        "images": args.images,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
