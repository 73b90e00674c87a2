from __future__ import annotations

import numpy as np
import pytest

from posekit.bottomup import pafs
from posekit.bottomup.heatmaps import cell_centres
from posekit.bottomup.layouts import OPENPOSE18
from posekit.bottomup.pafs import part_affinity_fields

STRIDE, HW = 8, (46, 46)


def _person(start: tuple[float, float], end: tuple[float, float], v: float = 2) -> np.ndarray:
    return np.array([[[*start, v], [*end, v]]], dtype=np.float32)  # (1, 2, 3)


def _map_grid(out_hw: tuple[int, int], stride: int) -> tuple[np.ndarray, np.ndarray]:
    ys = cell_centres(out_hw[0], stride) / stride
    xs = cell_centres(out_hw[1], stride) / stride
    return np.meshgrid(xs, ys)  # (H, W) each, map coordinates


def _reference(keypoints, limbs, out_hw, stride, width=1.0) -> np.ndarray:
    """Loop-based reference of the documented rule (rectangle around each segment, mean)."""
    gx, gy = _map_grid(out_hw, stride)
    total = np.zeros((len(limbs), 2, *out_hw))
    count = np.zeros((len(limbs), *out_hw))
    for person in keypoints:
        for limb, (i, j) in enumerate(limbs):
            if person[i, 2] <= 0 or person[j, 2] <= 0:
                continue
            a, b = person[i, :2] / stride, person[j, :2] / stride
            length = np.linalg.norm(b - a)
            if length < 1e-6:
                continue
            u = (b - a) / length
            along = (gx - a[0]) * u[0] + (gy - a[1]) * u[1]
            across = (gx - a[0]) * u[1] - (gy - a[1]) * u[0]
            inside = (along >= -width) & (along <= length + width) & (np.abs(across) <= width)
            total[limb] += inside * u[:, None, None]
            count[limb] += inside
    return (total / np.maximum(count, 1)[:, None]).reshape(-1, *out_hw)


def _segment_distance(gx: np.ndarray, gy: np.ndarray, a: np.ndarray, b: np.ndarray):
    ab = b - a
    t = np.clip(((gx - a[0]) * ab[0] + (gy - a[1]) * ab[1]) / (ab @ ab), 0, 1)
    return np.hypot(gx - (a[0] + t * ab[0]), gy - (a[1] + t * ab[1]))


@pytest.mark.parametrize(
    ("start", "end"),
    [((100.0, 100.0), (300.0, 100.0)), ((80.0, 60.0), (280.0, 260.0)), ((300, 40), (90, 330))],
)
def test_single_limb_direction_and_support(start, end) -> None:
    keypoints = _person(start, end)
    fields = part_affinity_fields(keypoints, [(0, 1)], HW, STRIDE)
    assert fields.shape == (2, *HW) and fields.dtype == np.float32
    a, b = np.array(start) / STRIDE, np.array(end) / STRIDE
    unit = (b - a) / np.linalg.norm(b - a)
    support = np.hypot(fields[0], fields[1]) > 0
    np.testing.assert_allclose(fields[0][support], unit[0], atol=1e-6)
    np.testing.assert_allclose(fields[1][support], unit[1], atol=1e-6)
    distance = _segment_distance(*_map_grid(HW, STRIDE), a, b)
    assert (distance[support] <= np.sqrt(2) + 1e-6).all()  # the rectangle's corners
    assert support[distance <= 1.0 - 1e-6].all()
    np.testing.assert_allclose(fields, _reference(keypoints, [(0, 1)], HW, STRIDE), atol=1e-6)


def test_horizontal_limb_cells_by_hand() -> None:
    # map coords (12.5, 12.5) -> (37.5, 12.5); cell centres are at i + 7/16
    fields = part_affinity_fields(_person((100.0, 100.0), (300.0, 100.0)), [(0, 1)], HW, 8)
    expected = np.zeros(HW, dtype=bool)
    expected[12:14, 12:39] = True  # rows within 1 of y=12.5, cols in [11.5, 38.5]
    np.testing.assert_array_equal(fields[0] != 0, expected)
    assert (fields[0][expected] == 1).all() and not fields[1].any()
    reversed_fields = part_affinity_fields(_person((100.0, 100.0), (300.0, 100.0)), [(1, 0)], HW, 8)
    np.testing.assert_array_equal(reversed_fields[0], -fields[0])
    wide = part_affinity_fields(_person((100.0, 100.0), (300.0, 100.0)), [(0, 1)], HW, 8, 2.0)
    assert (wide[0] != 0).sum() > expected.sum()


def test_overlapping_limbs_of_two_people_are_averaged() -> None:
    keypoints = np.concatenate(
        [_person((100.0, 100.0), (300.0, 100.0)), _person((100.0, 100.0), (300.0, 180.0))]
    )
    fields = part_affinity_fields(keypoints, [(0, 1)], HW, STRIDE)
    np.testing.assert_allclose(fields, _reference(keypoints, [(0, 1)], HW, STRIDE), atol=1e-6)
    u1 = np.array([1.0, 0.0])
    u2 = np.array([200.0, 80.0]) / np.hypot(200.0, 80.0)
    single = [part_affinity_fields(p[None], [(0, 1)], HW, STRIDE) for p in keypoints]
    both = (np.abs(single[0][0]) > 0) & (np.abs(single[1][0]) > 0)
    assert both.sum() >= 4
    mean = (u1 + u2) / 2
    np.testing.assert_allclose(fields[0][both], mean[0], atol=1e-6)
    np.testing.assert_allclose(fields[1][both], mean[1], atol=1e-6)
    norm = np.hypot(fields[0], fields[1])
    assert norm.max() <= 1 + 1e-6 and (norm[both] < 1).all()
    direction = np.stack([fields[0][both], fields[1][both]], -1) / norm[both][:, None]
    np.testing.assert_allclose(direction, np.tile(mean / np.linalg.norm(mean), (both.sum(), 1)))


def test_limbs_need_both_ends_labelled_and_a_length() -> None:
    for keypoints in (
        _person((100.0, 100.0), (300.0, 100.0), v=0),
        _person((100.0, 100.0), (100.0, 100.0)),
        np.zeros((0, 2, 3)),
    ):
        assert not part_affinity_fields(keypoints, [(0, 1)], HW, STRIDE).any()
    keypoints = _person((100.0, 100.0), (300.0, 100.0))
    keypoints[0, 1, 2] = 0
    assert not part_affinity_fields(keypoints, [(0, 1)], HW, STRIDE).any()


def test_openpose18_random_people_match_reference_across_chunks(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    keypoints = np.concatenate(
        [rng.uniform(-20, 380, (5, 18, 2)), rng.integers(0, 3, (5, 18, 1))], axis=-1
    ).astype(np.float32)
    keypoints.flags.writeable = False
    before = keypoints.copy()
    limbs = OPENPOSE18.skeleton
    expected = _reference(keypoints, limbs, HW, STRIDE)
    fields = part_affinity_fields(keypoints, limbs, HW, STRIDE)
    assert fields.shape == (38, *HW)
    np.testing.assert_allclose(fields, expected, atol=1e-5)
    monkeypatch.setattr(pafs, "_CHUNK_ELEMENTS", 1)  # one person per step
    np.testing.assert_allclose(part_affinity_fields(keypoints, limbs, HW, STRIDE), fields)
    np.testing.assert_array_equal(keypoints, before)
