"""Targets and decoding are a pair: encoding people then decoding the maps gives them back."""

from __future__ import annotations

import numpy as np

from posekit.bottomup.grouping import decode_bottomup
from posekit.bottomup.heatmaps import gaussian_heatmaps
from posekit.bottomup.layouts import OPENPOSE18, openpose18_layout
from posekit.bottomup.pafs import part_affinity_fields


def _person(rng: np.random.Generator, centre_x: float, height: float) -> np.ndarray:
    """A crude upright COCO-17 person (x, y, v) around ``centre_x``."""
    top = 40 + rng.uniform(0, 10)
    rows = np.array([0, -0.02, -0.02, 0, 0, 0.15, 0.15, 0.32, 0.32, 0.48, 0.48,
                     0.5, 0.5, 0.72, 0.72, 0.95, 0.95])  # fmt: skip
    offsets = np.array([0, 0.03, -0.03, 0.06, -0.06, 0.11, -0.11, 0.14, -0.14, 0.15, -0.15,
                        0.07, -0.07, 0.08, -0.08, 0.08, -0.08])  # fmt: skip
    x = centre_x + offsets * height + rng.normal(0, 1.5, 17)
    y = top + rows * height + rng.normal(0, 1.5, 17)
    return np.stack([x, y, np.full(17, 2.0)], axis=1)


def test_encode_then_decode_returns_keypoints_within_one_pixel() -> None:
    rng = np.random.default_rng(0)
    layout = openpose18_layout()
    people = np.stack([_person(rng, cx, 250) for cx in (70, 190, 310)])  # (3, 17, 3)
    network = layout.to_network(people)
    out_hw = (46, 46)  # 368 x 368 input, stride 8
    heatmaps = gaussian_heatmaps(network, out_hw, stride=8, sigma=7.0)
    pafs = part_affinity_fields(network, np.array(OPENPOSE18.skeleton), out_hw, stride=8)
    found, scores = decode_bottomup(heatmaps, pafs, OPENPOSE18.skeleton, stride=8)
    assert len(found) == 3 and len(scores) == 3
    decoded = layout.to_dataset(found)
    for person in people:
        distances = np.linalg.norm(decoded[:, :, :2] - person[None, :, :2], axis=-1).mean(axis=1)
        match = decoded[int(np.argmin(distances))]
        error = np.linalg.norm(match[:, :2] - person[:, :2], axis=-1)
        assert error.max() < 1.0, error
