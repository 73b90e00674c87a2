"""Grouping peaks + PAFs into people, on hand-made maps of overlapping people."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.bottomup.grouping import decode_bottomup, group_people, normalised_person_scores
from posekit.bottomup.layouts import OPENPOSE18, OPENPOSE18_LIMBS
from posekit.bottomup.peaks import find_peaks, flip_back_heatmaps, flip_back_pafs

STRIDE = 8
MAP_HW = (46, 46)  # a 368 × 368 input
SIGMA = 7.0

# One standing person facing the camera, OpenPose-18 order, offsets from its centre (px).
BASE_POSE = np.array(
    [
        [0, -100], [0, -70], [-30, -70], [-45, -30], [-50, 10], [30, -70], [45, -30],
        [50, 10], [-20, 20], [-22, 80], [-24, 140], [20, 20], [22, 80], [24, 140],
        [-7, -107], [7, -107], [-15, -103], [15, -103],
    ],
    dtype=np.float64,
)  # fmt: skip


def cell_centres(length: int) -> np.ndarray:
    return np.arange(length) * STRIDE + (STRIDE - 1) / 2


def render_heatmaps(people: np.ndarray) -> np.ndarray:
    """(P, K, 2) input px -> (K + 1, H, W): max of Gaussians at cell centres, + background."""
    ys, xs = cell_centres(MAP_HW[0])[:, None], cell_centres(MAP_HW[1])[None, :]
    maps = np.zeros((people.shape[1] + 1, *MAP_HW), dtype=np.float32)
    for person in people:
        for k, (x, y) in enumerate(person):
            gauss = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * SIGMA**2))
            maps[k] = np.maximum(maps[k], gauss)
    maps[-1] = 1 - maps[:-1].max(axis=0)
    return maps


def render_pafs(people: np.ndarray, limbs, width: float = 1.0) -> np.ndarray:
    """(P, K, 2) -> (2L, H, W): unit vectors within ``width`` cells of each limb, averaged."""
    ys = (cell_centres(MAP_HW[0]) / STRIDE)[:, None]
    xs = (cell_centres(MAP_HW[1]) / STRIDE)[None, :]
    fields = np.zeros((2 * len(limbs), *MAP_HW), dtype=np.float32)
    for index, (a, b) in enumerate(limbs):
        total = np.zeros((2, *MAP_HW))
        count = np.zeros(MAP_HW)
        for person in people:
            start, end = person[a] / STRIDE, person[b] / STRIDE
            length = np.linalg.norm(end - start)
            ux, uy = (end - start) / length
            along = (xs - start[0]) * ux + (ys - start[1]) * uy
            across = np.abs((xs - start[0]) * uy - (ys - start[1]) * ux)
            inside = (along >= -width) & (along <= length + width) & (across <= width)
            total[0] += inside * ux
            total[1] += inside * uy
            count += inside
        fields[2 * index : 2 * index + 2] = total / np.maximum(count, 1)
    return fields


def placed(shape: np.ndarray, x: float, y: float, scale: float = 1.0) -> np.ndarray:
    """A (K, 2) shape of offsets scaled and moved to centre (x, y)."""
    return shape * scale + np.array([x, y])


def three_overlapping_people() -> np.ndarray:
    """(3, 18, 2): side by side, left forearms crossing, one arm reaching across a body."""
    people = np.stack(
        [placed(BASE_POSE, 100.3, 180.6), placed(BASE_POSE, 180.8, 175.2),
         placed(BASE_POSE, 270.4, 185.9, scale=0.9)]
    )  # fmt: skip
    people[0, 6] = (160.2, 150.7)  # A's left elbow, forearm down-right ...
    people[0, 7] = (185.6, 200.1)  # ... crossing B's left forearm
    people[1, 6] = (200.5, 170.3)  # B's left arm folded across its body to the left
    people[1, 7] = (150.9, 175.4)
    people[2, 3] = (160.4, 140.6)  # C's right upper arm crosses B's right upper arm
    people[2, 4] = (130.1, 100.8)
    return people


def match_people(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Index of the true person closest (mean keypoint distance) to each found person."""
    distance = np.linalg.norm(found[:, None, :, :2] - truth[None], axis=-1)  # (F, T, K)
    return distance.mean(axis=2).argmin(axis=1)


def test_three_overlapping_people_are_separated():
    people = three_overlapping_people()
    heatmaps, pafs = render_heatmaps(people), render_pafs(people, OPENPOSE18_LIMBS)
    keypoints, scores = decode_bottomup(heatmaps, pafs, OPENPOSE18_LIMBS, STRIDE)

    assert keypoints.shape == (3, 18, 3) and scores.shape == (3,)
    owner = match_people(keypoints, people)
    assert sorted(owner.tolist()) == [0, 1, 2]
    error = np.linalg.norm(keypoints[..., :2] - people[owner], axis=-1)
    assert error.max() < 1.0
    assert np.allclose(keypoints[..., 2], 1.0, atol=0.01)  # fitted Gaussian heights
    assert np.all(np.diff(scores) <= 0)  # best first


def test_the_overlapping_scene_really_overlaps():
    """The same limb type of two people shares PAF cells (the crossing forearms)."""
    people = three_overlapping_people()
    forearm = OPENPOSE18_LIMBS.index((6, 7))
    alone = [render_pafs(people[i : i + 1], OPENPOSE18_LIMBS)[2 * forearm] != 0 for i in (0, 1)]
    assert np.count_nonzero(alone[0] & alone[1]) >= 2


def test_custom_schema_with_scrambled_limb_order_merges_partial_people():
    # 5 points: top, middle, left, right, bottom. The first limbs build two fragments per
    # person ({3, 4} and {0, 1}); only the last limb joins them.
    limbs = [(3, 4), (0, 1), (2, 1), (1, 3)]
    shape = np.array([[0, -60], [0, 0], [-40, 10], [40, 10], [45, 70]], dtype=np.float64)
    people = np.stack(
        [placed(shape, 90.2, 150.7), placed(shape, 200.6, 180.1, 1.2), placed(shape, 300.4, 170.3)]
    )
    heatmaps, pafs = render_heatmaps(people), render_pafs(people, limbs)

    keypoints, _ = decode_bottomup(heatmaps, pafs, limbs, STRIDE)

    assert keypoints.shape == (3, 5, 3)
    owner = match_people(keypoints, people)
    assert sorted(owner.tolist()) == [0, 1, 2]
    assert np.linalg.norm(keypoints[..., :2] - people[owner], axis=-1).max() < 1.0


def test_grouping_ignores_background_channel_and_handles_empty_maps():
    heatmaps = np.zeros((19, *MAP_HW), dtype=np.float32)
    heatmaps[-1] = 1.0
    pafs = np.zeros((38, *MAP_HW), dtype=np.float32)
    keypoints, scores = decode_bottomup(heatmaps, pafs, OPENPOSE18_LIMBS, STRIDE)
    assert keypoints.shape == (0, 18, 3) and scores.shape == (0,)


def test_people_with_too_few_keypoints_are_dropped():
    people = placed(BASE_POSE, 180.0, 180.0)[None]
    limbs = OPENPOSE18_LIMBS[:1]  # one limb: at most 2 keypoints per person
    heatmaps, pafs = render_heatmaps(people), render_pafs(people, limbs)
    keypoints, _ = decode_bottomup(heatmaps, pafs, limbs, STRIDE)
    assert keypoints.shape == (0, 18, 3)
    keypoints, _ = decode_bottomup(heatmaps, pafs, limbs, STRIDE, min_keypoints=2)
    assert keypoints.shape == (1, 18, 3)
    assert np.count_nonzero(keypoints[0, :, 2]) == 2


def test_missing_paf_support_splits_people():
    """Without the neck-hip PAFs, each leg of a person becomes a separate person."""
    people = placed(BASE_POSE, 180.0, 180.0)[None]
    pafs = render_pafs(people, OPENPOSE18_LIMBS)
    for limb in ((1, 8), (1, 11)):
        index = OPENPOSE18_LIMBS.index(limb)
        pafs[2 * index : 2 * index + 2] = 0
    keypoints, _ = decode_bottomup(render_heatmaps(people), pafs, OPENPOSE18_LIMBS, STRIDE)
    assert sorted(np.count_nonzero(keypoints[..., 2], axis=1).tolist()) == [3, 3, 12]


def test_scores_and_normalised_scores():
    people = three_overlapping_people()
    heatmaps, pafs = render_heatmaps(people), render_pafs(people, OPENPOSE18_LIMBS)
    keypoints, totals = decode_bottomup(heatmaps, pafs, OPENPOSE18_LIMBS, STRIDE)
    _, normalised = decode_bottomup(heatmaps, pafs, OPENPOSE18_LIMBS, STRIDE, score="normalised")
    # 18 keypoint scores of ~1 plus 19 connection scores of ~1 (ideal maps).
    assert np.all((totals > 30) & (totals < 37))
    assert np.allclose(normalised, normalised_person_scores(keypoints))
    assert np.all((normalised > 0.9) & (normalised <= 1.0))
    half = keypoints.copy()
    half[:, 9:, 2] = 0
    assert np.allclose(normalised_person_scores(half), normalised / 2, atol=0.02)


def test_inputs_are_not_mutated_and_peaks_path_matches():
    people = three_overlapping_people()
    heatmaps, pafs = render_heatmaps(people), render_pafs(people, OPENPOSE18_LIMBS)
    heatmaps_before, pafs_before = heatmaps.copy(), pafs.copy()
    peaks = find_peaks(heatmaps[:-1], STRIDE)
    peaks_before = [p.copy() for p in peaks]
    direct = group_people(peaks, pafs, OPENPOSE18_LIMBS, STRIDE)
    combined = decode_bottomup(heatmaps, pafs, OPENPOSE18_LIMBS, STRIDE)
    np.testing.assert_array_equal(direct[0], combined[0])
    np.testing.assert_array_equal(heatmaps, heatmaps_before)
    np.testing.assert_array_equal(pafs, pafs_before)
    for after, before in zip(peaks, peaks_before, strict=True):
        np.testing.assert_array_equal(after, before)


def test_wrong_paf_channel_count_is_rejected():
    with pytest.raises(ValueError, match="2L"):
        group_people([np.zeros((0, 3))] * 18, np.zeros((4, *MAP_HW)), OPENPOSE18_LIMBS, STRIDE)


def mirror_scene(people: np.ndarray, flip_index: np.ndarray) -> np.ndarray:
    """The people of the horizontally mirrored image: x -> W - 1 - x, left <-> right."""
    mirrored = people[:, flip_index].copy()
    mirrored[..., 0] = MAP_HW[1] * STRIDE - 1 - mirrored[..., 0]
    return mirrored


def test_flip_back_maps_of_mirrored_scene_equal_original_maps():
    people = three_overlapping_people()
    mirrored = mirror_scene(people, OPENPOSE18.flip_index())
    heatmaps = flip_back_heatmaps(render_heatmaps(mirrored), OPENPOSE18.flip_index())
    pafs = flip_back_pafs(
        render_pafs(mirrored, OPENPOSE18_LIMBS), OPENPOSE18_LIMBS, OPENPOSE18.flip_index()
    )
    np.testing.assert_allclose(heatmaps, render_heatmaps(people), atol=1e-5)
    np.testing.assert_allclose(pafs, render_pafs(people, OPENPOSE18_LIMBS), atol=1e-5)


def test_flip_back_pafs_of_limbs_listed_in_reversed_direction():
    # 0 head, 1 middle, 2 left hand, 3 right hand, 4 left foot, 5 right foot.
    # The mirror of (2, 1) is (3, 1), listed as (1, 3): reversed direction.
    limbs = [(0, 1), (2, 1), (1, 3), (1, 4), (5, 1)]
    flip_index = np.array([0, 1, 3, 2, 5, 4])
    shape = np.array([[0, -60], [0, 0], [-40, 10], [40, 25], [-20, 70], [15, 60]], dtype=float)
    people = np.stack([placed(shape, 120.3, 170.2), placed(shape, 250.8, 190.6)])
    mirrored = mirror_scene(people, flip_index)

    pafs = flip_back_pafs(render_pafs(mirrored, limbs), limbs, flip_index)

    np.testing.assert_allclose(pafs, render_pafs(people, limbs), atol=1e-5)
    with pytest.raises(ValueError, match="no mirror limb"):
        flip_back_pafs(pafs[:8], limbs[:4], flip_index)  # (1, 4) without (1, 5)
