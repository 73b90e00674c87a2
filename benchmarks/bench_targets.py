"""Time the bottom-up training targets and the whole per-sample preparation.

Prints one JSON line per figure (median milliseconds per sample)::

    {"name": "targets_368_openpose18_3people", "value": ms, "unit": "ms", ...}

- ``targets_368_openpose18_3people``: heatmaps (19 channels, sigma 7) + PAFs (19 limbs) of
  three people at 46 x 46 (368 x 368 input, stride 8).
- ``bottomup_augment_640x480``: the random crop of a 640 x 480 image with its ignore mask.
- ``sample_640x480_augment_targets``: a 640 x 480 COCO-17 sample through the layout
  (OpenPose-18), augmentation, heatmaps, PAFs, mask weights and image normalisation.

Usage: ``python benchmarks/bench_targets.py [--repeats 200]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from posekit.bottomup.augment import BottomUpAugmentParams, bottomup_augment
from posekit.bottomup.heatmaps import gaussian_heatmaps, mask_weights
from posekit.bottomup.layouts import OPENPOSE18, openpose18_layout
from posekit.bottomup.pafs import part_affinity_fields
from posekit.data.transforms import normalize_image

INPUT, STRIDE, SIGMA = (368, 368), 8, 7.0
MAP = (INPUT[0] // STRIDE, INPUT[1] // STRIDE)


def random_people(rng: np.random.Generator, n: int, k: int, w: float, h: float) -> np.ndarray:
    """(n, k, 3) people: a centre, spread of ~60 x 120 px, ~80 % of points labelled."""
    centres = rng.uniform((60, 100), (w - 60, h - 100), (n, 1, 2))
    xy = centres + rng.normal(0, (30, 60), (n, k, 2))
    v = np.where(rng.random((n, k, 1)) < 0.8, 2.0, 0.0)
    return np.concatenate([xy, v], axis=-1).astype(np.float32)


def median_ms(function: Callable[[], object], repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    people = random_people(rng, 3, 18, *INPUT)
    limbs = OPENPOSE18.skeleton

    def targets(keypoints: np.ndarray = people) -> tuple[np.ndarray, np.ndarray]:
        heat = gaussian_heatmaps(keypoints, MAP, STRIDE, SIGMA)
        return heat, part_affinity_fields(keypoints, limbs, MAP, STRIDE)

    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    mask = np.zeros((480, 640), dtype=np.uint8)
    mask[50:120, 400:520] = 1
    coco_people = random_people(rng, 3, 17, 640, 480)
    layout, flip, params = openpose18_layout(), OPENPOSE18.flip_index(), BottomUpAugmentParams()

    network_people = layout.to_network(coco_people)

    def augment() -> object:
        return bottomup_augment(image, network_people, mask, INPUT, flip, rng, params)

    def sample() -> object:
        keypoints = layout.to_network(coco_people)
        crop, keypoints, ignore = bottomup_augment(image, keypoints, mask, INPUT, flip, rng, params)
        return normalize_image(crop), *targets(keypoints), mask_weights(ignore, STRIDE, MAP)

    for name, function in [
        ("targets_368_openpose18_3people", targets),
        ("bottomup_augment_640x480", augment),
        ("sample_640x480_augment_targets", sample),
    ]:
        value = median_ms(function, args.repeats)
        record = {"name": name, "value": round(value, 4), "unit": "ms"}
        print(json.dumps({**record, "baseline": None, "ratio": None}), flush=True)


if __name__ == "__main__":
    main()
