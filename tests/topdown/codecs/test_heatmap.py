from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posekit.topdown.codecs.heatmap import (
    WINDOW_SIGMAS,
    decode_heatmaps,
    encode_heatmaps,
    input_to_heatmap_scale,
)

INPUT_HW, HEATMAP_HW, SIGMA = (256, 192), (64, 48), 2.0
MARGIN = 16.0  # input pixels kept from the borders in the round trips (4 heatmap cells)


def _random_keypoints(rng: np.random.Generator, count: int, margin: float = MARGIN) -> np.ndarray:
    height, width = INPUT_HW
    xy = rng.uniform([margin, margin], [width - 1 - margin, height - 1 - margin], (count, 2))
    return np.concatenate([xy, np.full((count, 1), 2.0)], axis=1)


def _argmax_only(heatmaps: np.ndarray) -> np.ndarray:  # (K, h, w) -> (K, 2) input px
    width = heatmaps.shape[2]
    best = heatmaps.reshape(len(heatmaps), -1).argmax(axis=1)
    cells = np.stack([best % width, best // width], axis=1).astype(np.float64)
    return cells / input_to_heatmap_scale(INPUT_HW, HEATMAP_HW)


def test_udp_scale_maps_first_and_last_pixels_to_first_and_last_cells() -> None:
    scale = input_to_heatmap_scale(INPUT_HW, HEATMAP_HW)
    np.testing.assert_allclose(scale, [47 / 191, 63 / 255])
    np.testing.assert_allclose(np.array([191.0, 255.0]) * scale, [47.0, 63.0])
    with pytest.raises(ValueError):
        input_to_heatmap_scale((1, 192), HEATMAP_HW)


def test_peak_is_one_at_the_keypoint_with_the_given_sigma() -> None:
    scale = input_to_heatmap_scale(INPUT_HW, HEATMAP_HW)
    cell = np.array([20.0, 30.0])  # a cell centre, in heatmap cells
    x, y = cell / scale
    heatmaps, weights = encode_heatmaps(np.array([[x, y, 1.0]]), INPUT_HW, HEATMAP_HW, SIGMA)
    assert heatmaps.shape == (1, *HEATMAP_HW) and heatmaps.dtype == np.float32
    assert weights.dtype == np.float32 and weights.tolist() == [1.0]
    assert heatmaps[0, 30, 20] == pytest.approx(1.0)
    assert heatmaps[0, 30, 22] == pytest.approx(np.exp(-0.5), rel=1e-5)  # one sigma away
    assert heatmaps[0, 30, 20 + 7] == 0.0  # beyond WINDOW_SIGMAS sigma
    assert heatmaps[0].sum() == pytest.approx(2 * np.pi * SIGMA**2, rel=0.02)


def test_unlabelled_and_outside_keypoints_get_zero_weight_and_an_empty_map() -> None:
    reach = WINDOW_SIGMAS * SIGMA / input_to_heatmap_scale(INPUT_HW, HEATMAP_HW)[0]
    keypoints = np.array(
        [
            [100.0, 100.0, 0.0],  # not labelled
            [-reach - 5.0, 100.0, 2.0],  # left of the map, beyond the Gaussian's reach
            [100.0, 1000.0, 1.0],  # far below
            [np.nan, 100.0, 2.0],  # labelled but not finite
            [-reach + 5.0, 100.0, 2.0],  # outside the input but its Gaussian reaches in
            [191.0, 255.0, 1.0],  # the last pixel
        ]
    )
    original = keypoints.copy()
    heatmaps, weights = encode_heatmaps(keypoints, INPUT_HW, HEATMAP_HW, SIGMA)
    assert weights.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert not heatmaps[:4].any()
    assert heatmaps[4, 25, 0] > 0 and heatmaps[5, 63, 47] == pytest.approx(1.0)
    np.testing.assert_array_equal(keypoints, original)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 17))
def test_dark_round_trip_is_sub_pixel(seed: int, count: int) -> None:
    keypoints = _random_keypoints(np.random.default_rng(seed), count)
    heatmaps, _ = encode_heatmaps(keypoints, INPUT_HW, HEATMAP_HW, SIGMA)
    decoded, scores = decode_heatmaps(heatmaps[None], INPUT_HW)
    assert decoded.shape == (1, count, 2) and decoded.dtype == np.float32
    assert np.abs(decoded[0] - keypoints[:, :2]).max() < 0.05
    np.testing.assert_allclose(scores[0], heatmaps.max(axis=(1, 2)))


def test_dark_beats_the_argmax_and_its_refinement_is_what_helps() -> None:
    keypoints = _random_keypoints(np.random.default_rng(0), 200)
    heatmaps, _ = encode_heatmaps(keypoints, INPUT_HW, HEATMAP_HW, SIGMA)
    dark_error = np.abs(decode_heatmaps(heatmaps[None], INPUT_HW)[0][0] - keypoints[:, :2])
    argmax_error = np.abs(_argmax_only(heatmaps) - keypoints[:, :2])
    unrefined = decode_heatmaps(heatmaps[None], INPUT_HW, refine=False)[0][0]
    np.testing.assert_allclose(unrefined, _argmax_only(heatmaps), atol=1e-4)
    assert dark_error.max() < 0.05
    assert argmax_error.mean() > 0.5 and argmax_error.max() > 1.5  # up to half a cell ≈ 2 px
    no_blur = decode_heatmaps(heatmaps[None], INPUT_HW, blur_kernel=1)[0][0]
    assert np.abs(no_blur - keypoints[:, :2]).max() < 1e-3  # the log of a Gaussian is exact


def test_peaks_on_the_border_or_flat_maps_are_not_refined() -> None:
    keypoints = np.array([[0.0, 100.0, 2.0], [191.0, 255.0, 2.0], [50.0, 50.0, 0.0]])
    heatmaps, _ = encode_heatmaps(keypoints, INPUT_HW, HEATMAP_HW, SIGMA)
    decoded, scores = decode_heatmaps(heatmaps[None], INPUT_HW)
    assert decoded[0, 0, 0] == 0.0 and decoded[0, 1].tolist() == [191.0, 255.0]
    assert np.isfinite(decoded).all() and scores[0, 2] == 0.0


def test_batches_tensors_and_inputs_are_left_unchanged() -> None:
    rng = np.random.default_rng(1)
    batch = np.stack(
        [encode_heatmaps(_random_keypoints(rng, 5), INPUT_HW, HEATMAP_HW)[0] for _ in range(3)]
    )
    batch += rng.uniform(0, 0.05, batch.shape).astype(np.float32)  # noise, as a model's
    original = batch.copy()
    decoded, scores = decode_heatmaps(batch, INPUT_HW)
    np.testing.assert_array_equal(batch, original)
    assert decoded.shape == (3, 5, 2) and scores.shape == (3, 5)
    for i in range(3):  # a batch decodes as its items one by one
        single = decode_heatmaps(batch[i : i + 1], INPUT_HW)
        np.testing.assert_array_equal(single[0][0], decoded[i])
    from_tensor = decode_heatmaps(torch.from_numpy(batch).half(), INPUT_HW)
    np.testing.assert_allclose(from_tensor[0], decoded, atol=0.05)
    np.testing.assert_allclose(from_tensor[1], scores, atol=1e-3)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        encode_heatmaps(np.zeros((3, 2)), INPUT_HW, HEATMAP_HW)
    with pytest.raises(ValueError):
        encode_heatmaps(np.zeros((3, 3)), INPUT_HW, HEATMAP_HW, sigma=0.0)
    with pytest.raises(ValueError):
        decode_heatmaps(np.zeros((3, *HEATMAP_HW)), INPUT_HW)
    with pytest.raises(ValueError):
        decode_heatmaps(np.zeros((1, 3, *HEATMAP_HW)), INPUT_HW, blur_kernel=4)
