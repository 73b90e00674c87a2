from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posekit.topdown.codecs.simcc import decode_simcc, encode_simcc

INPUT_HW, RATIO, SIGMA = (256, 192), 2.0, (4.9, 5.66)


def _random_keypoints(rng: np.random.Generator, count: int, margin: float) -> np.ndarray:
    height, width = INPUT_HW
    xy = rng.uniform([margin, margin], [width - 1 - margin, height - 1 - margin], (count, 2))
    return np.concatenate([xy, np.ones((count, 1))], axis=1)


def test_labels_are_gaussians_with_peak_one_at_the_scaled_position() -> None:
    x_labels, y_labels, weights = encode_simcc(np.array([[10.0, 20.5, 2.0]]), INPUT_HW)
    assert x_labels.shape == (1, 384) and y_labels.shape == (1, 512)
    assert x_labels.dtype == y_labels.dtype == weights.dtype == np.float32
    assert x_labels[0].argmax() == 20 and x_labels[0, 20] == pytest.approx(1.0)
    assert y_labels[0].argmax() == 41 and y_labels[0, 41] == pytest.approx(1.0)
    assert x_labels[0, 25] == pytest.approx(np.exp(-(5**2) / (2 * SIGMA[0] ** 2)), rel=1e-6)
    assert y_labels[0, 35] == pytest.approx(np.exp(-(6**2) / (2 * SIGMA[1] ** 2)), rel=1e-6)
    x_labels, y_labels, _ = encode_simcc(np.array([[4.0, 2.0, 1.0]]), (7, 9), split_ratio=1.5)
    assert x_labels.shape == (1, 14) and y_labels.shape == (1, 10)  # round(13.5), round(10.5)
    assert x_labels[0, 6] == pytest.approx(1.0) and y_labels[0, 3] == pytest.approx(1.0)


def test_unlabelled_and_outside_keypoints_get_zero_weight_and_empty_labels() -> None:
    keypoints = np.array(
        [
            [50.0, 50.0, 0.0],  # not labelled
            [-0.6, 50.0, 2.0],  # left of the input
            [191.5, 50.0, 2.0],  # x = W - 0.5 is outside
            [50.0, 255.5, 2.0],  # y = H - 0.5 is outside
            [np.nan, 50.0, 1.0],
            [-0.5, 255.4, 1.0],  # inside, just
        ]
    )
    original = keypoints.copy()
    x_labels, y_labels, weights = encode_simcc(keypoints, INPUT_HW)
    assert weights.tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert not x_labels[:5].any() and not y_labels[:5].any()
    assert x_labels[5, 0] > 0.9 and y_labels[5].argmax() == 511
    np.testing.assert_array_equal(keypoints, original)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 17))
def test_round_trip_of_perfect_logits(seed: int, count: int) -> None:
    rng = np.random.default_rng(seed)
    keypoints = _random_keypoints(rng, count, margin=0.0)
    x_labels, y_labels, _ = encode_simcc(keypoints, INPUT_HW, RATIO, SIGMA)
    decoded, scores = decode_simcc(x_labels[None], y_labels[None], RATIO, 10.0, SIGMA)
    assert decoded.shape == (1, count, 2) and decoded.dtype == np.float32
    assert np.abs(decoded[0] - keypoints[:, :2]).max() < 0.25
    assert scores.dtype == np.float32 and (scores > 0.94).all() and (scores <= 1.0).all()


def test_sub_bin_refinement_is_what_makes_it_precise() -> None:
    keypoints = _random_keypoints(np.random.default_rng(0), 200, margin=1.0)
    x_labels, y_labels, _ = encode_simcc(keypoints, INPUT_HW)
    decoded = decode_simcc(x_labels[None], y_labels[None])[0][0]
    argmax = np.stack([x_labels.argmax(axis=1), y_labels.argmax(axis=1)], axis=1) / RATIO
    assert np.abs(decoded - keypoints[:, :2]).max() < 0.01
    assert np.abs(argmax - keypoints[:, :2]).max() > 0.2


def test_scores_are_anchored_between_flat_and_perfect_logits() -> None:
    keypoints = _random_keypoints(np.random.default_rng(2), 17, margin=20.0)
    x_labels, y_labels, _ = encode_simcc(keypoints, INPUT_HW)
    _, perfect = decode_simcc(x_labels[None], y_labels[None])
    _, flat = decode_simcc(np.zeros((1, 17, 384)), np.full((1, 17, 512), 3.0))
    _, half = decode_simcc(0.5 * x_labels[None], 0.5 * y_labels[None])
    assert perfect.min() > 0.94 and flat.max() < 0.02
    assert (flat < half).all() and (half < perfect).all()
    x_only = decode_simcc(x_labels[None], np.zeros((1, 17, 512)))[1]
    np.testing.assert_allclose(x_only, flat)  # the weaker axis decides


def test_logits_shifted_by_a_constant_decode_the_same() -> None:
    keypoints = _random_keypoints(np.random.default_rng(3), 6, margin=2.0)
    x_labels, y_labels, _ = encode_simcc(keypoints, INPUT_HW)
    plain = decode_simcc(x_labels[None], y_labels[None])
    shifted = decode_simcc(x_labels[None] - 7.0, y_labels[None] + 3.0)
    np.testing.assert_allclose(shifted[0], plain[0], atol=1e-4)
    np.testing.assert_allclose(shifted[1], plain[1], atol=1e-5)


def test_batches_tensors_and_inputs_are_left_unchanged() -> None:
    rng = np.random.default_rng(4)
    labels = [encode_simcc(_random_keypoints(rng, 4, 0.0), INPUT_HW) for _ in range(3)]
    x_logits = np.stack([x for x, _, _ in labels]) + rng.normal(0, 0.02, (3, 4, 384))
    y_logits = np.stack([y for _, y, _ in labels]) + rng.normal(0, 0.02, (3, 4, 512))
    originals = x_logits.copy(), y_logits.copy()
    decoded, scores = decode_simcc(x_logits, y_logits)
    np.testing.assert_array_equal(x_logits, originals[0])
    np.testing.assert_array_equal(y_logits, originals[1])
    assert decoded.shape == (3, 4, 2) and scores.shape == (3, 4)
    for i in range(3):
        single = decode_simcc(x_logits[i : i + 1], y_logits[i : i + 1])
        np.testing.assert_array_equal(single[0][0], decoded[i])
    tensors = decode_simcc(torch.from_numpy(x_logits), torch.from_numpy(y_logits))
    np.testing.assert_allclose(tensors[0], decoded, atol=1e-4)
    np.testing.assert_allclose(tensors[1], scores, atol=1e-4)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        encode_simcc(np.zeros((3, 2)), INPUT_HW)
    with pytest.raises(ValueError):
        encode_simcc(np.zeros((3, 3)), INPUT_HW, split_ratio=0.0)
    with pytest.raises(ValueError):
        decode_simcc(np.zeros((1, 3, 384)), np.zeros((1, 2, 512)))
