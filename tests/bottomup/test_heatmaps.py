from __future__ import annotations

import numpy as np
import pytest

from posekit.bottomup.heatmaps import WINDOW_SIGMAS, cell_centres, gaussian_heatmaps, mask_weights

STRIDE, SIGMA, HW = 8, 7.0, (46, 46)


def _keypoints(*points: tuple[float, float, float], num_types: int = 3) -> np.ndarray:
    """One person per point, each labelled only at channel 0."""
    result = np.zeros((len(points), num_types, 3), dtype=np.float32)
    for i, point in enumerate(points):
        result[i, 0] = point
    return result


def _nearest_cell(x: float, y: float) -> tuple[int, int]:
    return (
        int(np.argmin(np.abs(cell_centres(HW[0], STRIDE) - y))),
        int(np.argmin(np.abs(cell_centres(HW[1], STRIDE) - x))),
    )


def _reference(keypoints: np.ndarray, out_hw: tuple[int, int], stride: int, sigma: float):
    """Dense, loop-based reference of the documented formula."""
    ys, xs = cell_centres(out_hw[0], stride), cell_centres(out_hw[1], stride)
    heat = np.zeros((keypoints.shape[1], *out_hw))
    for person in keypoints:
        for k, (x, y, v) in enumerate(person):
            if v <= 0:
                continue
            d2 = (ys[:, None] - y) ** 2 + (xs[None, :] - x) ** 2
            g = np.where(d2 <= (WINDOW_SIGMAS * sigma) ** 2, np.exp(-d2 / (2 * sigma**2)), 0)
            heat[k] = np.maximum(heat[k], g)
    return heat


def test_cell_centres_follow_the_pixel_centre_convention() -> None:
    np.testing.assert_allclose(cell_centres(3, 8), [3.5, 11.5, 19.5])
    np.testing.assert_allclose(cell_centres(3, 1), [0, 1, 2])
    np.testing.assert_allclose(cell_centres(2, 4), [1.5, 5.5])


def test_peak_is_at_the_nearest_cell_and_one_on_a_cell_centre() -> None:
    centre_x, centre_y = cell_centres(46, STRIDE)[10], cell_centres(46, STRIDE)[20]
    heat = gaussian_heatmaps(_keypoints((centre_x, centre_y, 2)), HW, STRIDE, SIGMA)
    assert heat.shape == (4, *HW) and heat.dtype == np.float32
    assert np.unravel_index(np.argmax(heat[0]), HW) == (20, 10)
    assert heat[0, 20, 10] == pytest.approx(1.0)
    for x, y in [(100.2, 37.9), (3.0, 360.0), (181.0, 181.0)]:
        heat = gaussian_heatmaps(_keypoints((x, y, 1)), HW, STRIDE, SIGMA)
        assert np.unravel_index(np.argmax(heat[0]), HW) == _nearest_cell(x, y)


def test_background_is_one_minus_max_and_unlabelled_draw_nothing() -> None:
    keypoints = _keypoints((50.0, 60.0, 2), (200.0, 100.0, 0), num_types=3)
    keypoints[0, 2] = (300.0, 300.0, 1)
    heat = gaussian_heatmaps(keypoints, HW, STRIDE, SIGMA)
    np.testing.assert_allclose(heat[3], 1.0 - heat[:3].max(axis=0))
    assert not heat[1].any()  # no labelled keypoint of type 1
    assert heat[0, 12, 25] == 0.0  # the unlabelled person's point at (200, 100)
    np.testing.assert_allclose(heat[:3], _reference(keypoints, HW, STRIDE, SIGMA), atol=1e-6)


def test_two_people_give_two_peaks_and_the_max_of_both() -> None:
    keypoints = _keypoints((60.0, 60.0, 2), (250.0, 200.0, 2))
    heat = gaussian_heatmaps(keypoints, HW, STRIDE, SIGMA)
    channel = heat[0]
    padded = np.pad(channel, 1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    peaks = np.argwhere((channel == windows.max(axis=(2, 3))) & (channel > 0.5))
    assert sorted(map(tuple, peaks)) == sorted([_nearest_cell(60, 60), _nearest_cell(250, 200)])
    np.testing.assert_allclose(heat[:3], _reference(keypoints, HW, STRIDE, SIGMA), atol=1e-6)


def test_random_people_match_the_dense_reference_and_inputs_are_untouched() -> None:
    rng = np.random.default_rng(0)
    keypoints = np.concatenate(
        [rng.uniform(-30, 400, (4, 5, 2)), rng.integers(0, 3, (4, 5, 1))], axis=-1
    ).astype(np.float32)
    keypoints.flags.writeable = False
    before = keypoints.copy()
    heat = gaussian_heatmaps(keypoints, (40, 44), 4, 5.0)
    np.testing.assert_allclose(heat[:5], _reference(keypoints, (40, 44), 4, 5.0), atol=1e-6)
    np.testing.assert_array_equal(keypoints, before)


def test_no_people_and_far_away_points() -> None:
    heat = gaussian_heatmaps(np.zeros((0, 17, 3)), HW, STRIDE, SIGMA)
    assert heat.shape == (18, *HW) and not heat[:17].any() and (heat[17] == 1).all()
    far = _keypoints((1e9, -1e9, 2), (np.nan, 5.0, 2))
    assert not gaussian_heatmaps(far, HW, STRIDE, SIGMA)[:3].any()


def _decode(channel: np.ndarray, stride: int) -> tuple[float, float]:
    """Argmax plus a log-quadratic (Gaussian) fit over the 3x3 neighbourhood, per axis."""
    row, col = np.unravel_index(np.argmax(channel), channel.shape)
    logs = np.log(np.maximum(channel[row - 1 : row + 2, col - 1 : col + 2], 1e-12))

    def offset(left: float, mid: float, right: float) -> float:
        curvature = left - 2 * mid + right
        return 0.0 if curvature >= 0 else 0.5 * (left - right) / curvature

    dx, dy = offset(*logs[1]), offset(*logs[:, 1])
    xs, ys = cell_centres(channel.shape[1], stride), cell_centres(channel.shape[0], stride)
    return xs[col] + dx * stride, ys[row] + dy * stride


def test_encode_then_decode_recovers_keypoints_within_a_pixel() -> None:
    rng = np.random.default_rng(1)
    points = rng.uniform(STRIDE, HW[0] * STRIDE - STRIDE, (50, 2))
    keypoints = np.concatenate([points, np.full((50, 1), 2.0)], axis=1)[None]  # 50 types
    heat = gaussian_heatmaps(keypoints, HW, STRIDE, SIGMA)
    decoded = np.array([_decode(heat[k], STRIDE) for k in range(50)])
    assert np.abs(decoded - points).max() < 1.0


def test_mask_weights_zero_exactly_at_ignored_cells() -> None:
    mask = np.zeros((368, 368), dtype=np.uint8)
    mask[16:40, 80:120] = 1  # cells rows 2..4, cols 10..14 entirely
    mask[100:104, 200:208] = 1  # half of cell (12, 25): ignored at threshold 0.5
    mask[200:202, 200:208] = 1  # a quarter of cell (25, 25): used
    before = mask.copy()
    weights = mask_weights(mask, 8)
    assert weights.shape == (46, 46) and weights.dtype == np.float32
    expected = np.ones((46, 46), dtype=np.float32)
    expected[2:5, 10:15] = 0
    expected[12, 25] = 0
    np.testing.assert_array_equal(weights, expected)
    np.testing.assert_array_equal(mask, before)
    soft = mask_weights(mask, 8, threshold=None)
    assert soft[25, 25] == pytest.approx(0.75) and soft[12, 25] == pytest.approx(0.5)


def test_mask_weights_sizes_that_do_not_divide() -> None:
    mask = np.ones((20, 13), dtype=bool)
    weights = mask_weights(mask, 8)
    assert weights.shape == (3, 2)
    # the last row of cells sees 4 of 8 mask rows, the last column 5 of 8 mask columns;
    # the rest of those blocks lies beyond the mask and counts as used
    np.testing.assert_array_equal(weights, [[0, 0], [0, 0], [0, 1]])  # 32/64 and 20/64
    assert mask_weights(mask, 8, out_hw=(4, 4))[3].tolist() == [1, 1, 1, 1]
