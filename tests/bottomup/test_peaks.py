"""Peak finding: sub-pixel accuracy, NMS, thresholds; flip-back of heatmaps."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.bottomup.layouts import OPENPOSE18, OPENPOSE18_LIMBS
from posekit.bottomup.peaks import find_peaks, flip_back_heatmaps, limb_flip_index


def render(points, map_hw=(46, 46), stride=8, sigma=7.0) -> np.ndarray:
    """(H, W) max of Gaussians at input-pixel ``points``, sampled at cell centres."""
    ys = (np.arange(map_hw[0]) * stride + (stride - 1) / 2)[:, None]
    xs = (np.arange(map_hw[1]) * stride + (stride - 1) / 2)[None, :]
    heat = np.zeros(map_hw, dtype=np.float32)
    for x, y in points:
        heat = np.maximum(heat, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)))
    return heat


@pytest.mark.parametrize("stride", [4, 8])
def test_subpixel_gaussians_are_found_within_one_pixel(stride):
    rng = np.random.default_rng(stride)
    size = 368 // stride
    for _ in range(50):
        point = rng.uniform(20, 348, size=2)
        peaks = find_peaks(render([point], (size, size), stride)[None], stride)
        assert len(peaks) == 1 and peaks[0].shape == (1, 3)
        assert np.linalg.norm(peaks[0][0, :2] - point) < 1.0
        assert peaks[0][0, 2] == pytest.approx(1.0, abs=0.01)


def test_refinement_beats_cell_centres():
    point = np.array([100.0 + 3.7, 200.0 - 2.9])
    heat = render([point])[None]
    refined = find_peaks(heat, 8)[0][0]
    coarse = find_peaks(heat, 8, refine=False)[0][0]
    assert np.linalg.norm(refined[:2] - point) < 0.05
    assert np.linalg.norm(coarse[:2] - point) > 2.0
    assert coarse[2] == pytest.approx(heat.max())


def test_close_but_separate_peaks_are_both_kept():
    points = [(150.3, 160.8), (170.9, 161.4)]  # 20.6 px = 2.6 cells apart
    peaks = find_peaks(render(points)[None], 8)[0]
    assert len(peaks) == 2
    for point in points:
        assert np.linalg.norm(peaks[:, :2] - point, axis=1).min() < 1.0


def test_tie_between_two_cells_gives_one_peak_at_the_middle():
    point = (8 * 20 + 3.5 + 4.0, 8 * 10 + 3.5)  # exactly between cells 20 and 21
    peaks = find_peaks(render([point])[None], 8)[0]
    assert len(peaks) == 1
    assert np.linalg.norm(peaks[0, :2] - point) < 1e-3


def test_plateau_gives_one_peak_inside_it():
    heat = np.zeros((1, 20, 20), dtype=np.float32)
    heat[0, 5:9, 6:11] = 0.7
    peaks = find_peaks(heat, 8)[0]
    assert len(peaks) == 1
    x, y, score = peaks[0]
    assert 6 * 8 <= x <= 11 * 8 and 5 * 8 <= y <= 9 * 8
    assert score == pytest.approx(0.7)


def test_step_edge_is_not_extrapolated():
    """A neighbour near zero is no Gaussian: no shift towards it, no inflated score."""
    heat = np.zeros((1, 10, 10), dtype=np.float32)
    heat[0, 4, 4:6] = 0.9  # a 1 × 2 flat top with a drop to 0 on each side
    heat[0, 3:6:2, 4:6] = 0.3
    peaks = find_peaks(heat, 8)[0]
    assert len(peaks) == 1
    assert peaks[0, 2] == pytest.approx(0.9)
    assert peaks[0, 0] == pytest.approx(4 * 8 + 3.5)  # the first cell of the flat top


def test_threshold_border_and_empty_channels():
    heat = np.zeros((3, 10, 12), dtype=np.float32)
    heat[0, 0, 0] = 0.5  # a corner peak: kept, no refinement off the map
    heat[1, 4, 4] = 0.05  # below the threshold
    peaks = find_peaks(heat, 8)
    assert [len(p) for p in peaks] == [1, 0, 0]
    np.testing.assert_allclose(peaks[0], [[3.5, 3.5, 0.5]])
    assert all(p.shape[1] == 3 and p.dtype == np.float32 for p in peaks)
    assert [len(p) for p in find_peaks(heat, 8, threshold=0.01)] == [1, 1, 0]
    assert find_peaks(np.zeros((0, 4, 4)), 8) == []


def test_peaks_do_not_mutate_input():
    heat = render([(100.2, 50.7), (20.0, 300.0)])[None]
    before = heat.copy()
    find_peaks(heat, 8)
    np.testing.assert_array_equal(heat, before)


def test_flip_back_heatmaps_of_mirrored_scene():
    flip_index = OPENPOSE18.flip_index()
    rng = np.random.default_rng(0)
    points = rng.uniform(10, 358, size=(18, 2))
    mirrored = points[flip_index].copy()
    mirrored[:, 0] = 368 - 1 - mirrored[:, 0]
    original = np.stack([render([p]) for p in points] + [np.zeros((46, 46), np.float32)])
    flipped = np.stack([render([p]) for p in mirrored] + [np.zeros((46, 46), np.float32)])
    original[-1] = 1 - original[:-1].max(axis=0)
    flipped[-1] = 1 - flipped[:-1].max(axis=0)

    np.testing.assert_allclose(flip_back_heatmaps(flipped, flip_index), original, atol=1e-6)
    np.testing.assert_allclose(
        flip_back_heatmaps(flipped[:-1], flip_index), original[:-1], atol=1e-6
    )
    with pytest.raises(ValueError, match="channels"):
        flip_back_heatmaps(flipped[:5], flip_index)


def test_limb_flip_index_of_openpose18():
    partner, sign = limb_flip_index(OPENPOSE18_LIMBS, OPENPOSE18.flip_index())
    limbs = list(OPENPOSE18_LIMBS)
    assert limbs[partner[limbs.index((1, 2))]] == (1, 5)
    assert limbs[partner[limbs.index((2, 16))]] == (5, 17)
    assert limbs[partner[limbs.index((1, 0))]] == (1, 0)
    assert np.all(sign == 1)
    assert sorted(partner.tolist()) == list(range(19))
