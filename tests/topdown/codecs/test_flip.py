from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posekit.topdown.codecs.flip import flip_heatmaps_back, flip_simcc_back, merge_flipped
from posekit.topdown.codecs.heatmap import decode_heatmaps, encode_heatmaps
from posekit.topdown.codecs.simcc import decode_simcc, encode_simcc

INPUT_HW, HEATMAP_HW, RATIO = (256, 192), (64, 48), 2.0
FLIP_INDEX = np.array([1, 0, 2])  # left, right, centre


def _mirrored(keypoints: np.ndarray) -> np.ndarray:
    """The keypoints of the mirrored crop: x -> W - 1 - x, left and right swapped."""
    mirrored = keypoints.copy()
    mirrored[:, 0] = INPUT_HW[1] - 1 - keypoints[:, 0]
    return mirrored[FLIP_INDEX]


def _keypoints(rng: np.random.Generator, margin: float = 8.0) -> np.ndarray:
    height, width = INPUT_HW
    xy = rng.uniform([margin, margin], [width - 1 - margin, height - 1 - margin], (3, 2))
    return np.concatenate([xy, np.full((3, 1), 2.0)], axis=1)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_heatmaps_of_the_mirrored_crop_flip_back_to_the_plain_ones(seed: int) -> None:
    keypoints = _keypoints(np.random.default_rng(seed), margin=-20.0)  # some reach outside
    plain, weights = encode_heatmaps(keypoints, INPUT_HW, HEATMAP_HW)
    mirrored, mirrored_weights = encode_heatmaps(_mirrored(keypoints), INPUT_HW, HEATMAP_HW)
    original = mirrored.copy()
    back = flip_heatmaps_back(mirrored[None], FLIP_INDEX)
    np.testing.assert_array_equal(mirrored, original)
    assert back.shape == (1, 3, *HEATMAP_HW) and back.dtype == np.float32
    np.testing.assert_allclose(back[0], plain, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mirrored_weights[FLIP_INDEX], weights)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_decoding_the_merged_heatmaps_recovers_the_keypoints(seed: int) -> None:
    keypoints = _keypoints(np.random.default_rng(seed), margin=16.0)
    plain, _ = encode_heatmaps(keypoints, INPUT_HW, HEATMAP_HW)
    mirrored, _ = encode_heatmaps(_mirrored(keypoints), INPUT_HW, HEATMAP_HW)
    merged = merge_flipped(plain[None], flip_heatmaps_back(mirrored[None], FLIP_INDEX))
    decoded, _ = decode_heatmaps(merged, INPUT_HW)
    assert np.abs(decoded[0] - keypoints[:, :2]).max() < 0.05


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_simcc_of_the_mirrored_crop_flips_back_to_the_plain_one(seed: int) -> None:
    keypoints = _keypoints(np.random.default_rng(seed), margin=0.0)
    plain_x, plain_y, _ = encode_simcc(keypoints, INPUT_HW, RATIO)
    mirrored_x, mirrored_y, _ = encode_simcc(_mirrored(keypoints), INPUT_HW, RATIO)
    width = INPUT_HW[1]
    back_x, back_y = flip_simcc_back(mirrored_x[None], mirrored_y[None], FLIP_INDEX, width, RATIO)
    last = int((width - 1) * RATIO)  # the last bin whose mirror is a bin
    assert back_x.shape == (1, 3, 384) and back_y.shape == (1, 3, 512)
    np.testing.assert_allclose(back_x[0, :, : last + 1], plain_x[:, : last + 1], atol=1e-6)
    np.testing.assert_array_equal(back_x[0, :, last + 1 :], mirrored_x[FLIP_INDEX, :1])  # edge
    np.testing.assert_array_equal(back_y[0], plain_y)
    merged = merge_flipped(plain_x[None], back_x), merge_flipped(plain_y[None], back_y)
    decoded, scores = decode_simcc(*merged, RATIO)
    assert np.abs(decoded[0] - keypoints[:, :2]).max() < 0.25 and scores.min() > 0.9


def test_simcc_shift_by_a_fraction_of_a_bin_interpolates() -> None:
    ramp = np.arange(6, dtype=np.float32)[None, None].repeat(3, axis=1)  # bin i holds i
    back_x, back_y = flip_simcc_back(ramp, ramp, FLIP_INDEX, input_width=4, split_ratio=1.5)
    # (4 - 1) * 1.5 = 4.5: bin i takes position 4.5 - i, clamped to [0, 5]
    np.testing.assert_allclose(back_x[0, 0], [4.5, 3.5, 2.5, 1.5, 0.5, 0.0])
    np.testing.assert_array_equal(back_y, ramp)


def test_flipping_back_twice_is_the_identity() -> None:
    rng = np.random.default_rng(0)
    heatmaps = rng.random((2, 3, 8, 6)).astype(np.float32)
    twice = flip_heatmaps_back(flip_heatmaps_back(heatmaps, FLIP_INDEX), FLIP_INDEX)
    np.testing.assert_array_equal(twice, heatmaps)
    x, y = rng.random((2, 3, 10)), rng.random((2, 3, 7))
    x2, y2 = flip_simcc_back(*flip_simcc_back(x, y, FLIP_INDEX, 5, 2.0), FLIP_INDEX, 5, 2.0)
    np.testing.assert_array_equal(x2[..., :9], x[..., :9])  # bin 9 mirrors to -1: edge
    np.testing.assert_array_equal(y2, y)


def test_tensors_and_arrays_give_the_same_result() -> None:
    rng = np.random.default_rng(1)
    heatmaps = rng.random((2, 3, 8, 6)).astype(np.float32)
    x, y = rng.random((2, 3, 12)).astype(np.float32), rng.random((2, 3, 9)).astype(np.float32)
    tensors = [torch.from_numpy(a.copy()) for a in (heatmaps, x, y)]
    back = flip_heatmaps_back(tensors[0], FLIP_INDEX)
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float32
    np.testing.assert_array_equal(back.numpy(), flip_heatmaps_back(heatmaps, FLIP_INDEX))
    for width, ratio in [(6, 2.0), (8, 1.5)]:  # whole-bin and half-bin shifts
        from_tensors = flip_simcc_back(tensors[1], tensors[2], FLIP_INDEX, width, ratio)
        from_arrays = flip_simcc_back(x, y, FLIP_INDEX, width, ratio)
        for t, a in zip(from_tensors, from_arrays, strict=True):
            assert isinstance(t, torch.Tensor) and isinstance(a, np.ndarray)
            np.testing.assert_allclose(t.numpy(), a, atol=1e-6)
    merged = merge_flipped(tensors[0], back)
    assert isinstance(merged, torch.Tensor)
    np.testing.assert_allclose(merged.numpy(), 0.5 * (heatmaps + back.numpy()))
    np.testing.assert_array_equal(tensors[0].numpy(), heatmaps)  # inputs unchanged
    half = flip_heatmaps_back(tensors[0].half(), FLIP_INDEX)
    assert half.dtype == torch.float16


def test_merge_keeps_the_dtype_and_bad_flip_index_raises() -> None:
    a, b = np.ones((1, 3, 4), np.float32), np.zeros((1, 3, 4), np.float32)
    merged = merge_flipped(a, b)
    assert merged.dtype == np.float32 and (merged == 0.5).all()
    with pytest.raises(ValueError):
        flip_heatmaps_back(np.zeros((1, 3, 4, 4)), np.array([1, 0]))
    with pytest.raises(ValueError):
        flip_simcc_back(np.zeros((1, 3, 4)), np.zeros((1, 3, 4)), np.array([1, 0, 3]), 2, 2.0)
