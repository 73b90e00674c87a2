"""Top-down rescoring and OKS-NMS."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.schema import COCO17
from posekit.topdown.decode import oks_matrix, oks_nms, rescore


def test_rescore_uses_the_mean_of_the_confident_keypoints() -> None:
    scores = rescore(
        np.array([0.5, 1.0, 0.8]),
        np.array([[0.9, 0.7, 0.1], [0.1, 0.1, 0.2], [0.3, 0.3, 0.6]]),
        threshold=0.2,
    )
    np.testing.assert_allclose(scores, [0.5 * 0.8, 0.0, 0.8 * 0.4])


def test_oks_of_a_person_with_itself_is_one_and_falls_with_distance() -> None:
    rng = np.random.default_rng(0)
    person = rng.uniform(0, 100, (17, 2))
    shifted = person + 10.0
    similarity = oks_matrix(np.stack([person, shifted]), np.array([1e4, 1e4]), COCO17.sigmas)
    np.testing.assert_allclose(np.diag(similarity), 1.0)
    assert similarity[0, 1] == pytest.approx(similarity[1, 0])
    # every keypoint 10 * sqrt(2) px away: exp(-d^2 / (2 * area * (2 sigma)^2)) averaged
    expected = np.exp(-200.0 / (2 * 1e4 * (2 * np.asarray(COCO17.sigmas)) ** 2)).mean()
    assert similarity[0, 1] == pytest.approx(expected, rel=1e-6)


def test_oks_nms_drops_duplicates_and_keeps_distinct_people() -> None:
    rng = np.random.default_rng(1)
    first = rng.uniform(0, 100, (17, 2))
    duplicate = first + rng.normal(0, 0.5, first.shape)
    other = first + 300.0
    keypoints = np.stack([duplicate, first, other])
    scores = np.array([0.7, 0.9, 0.8])
    keep = oks_nms(keypoints, scores, np.full(3, 1e4), np.asarray(COCO17.sigmas), 0.9)
    assert keep.tolist() == [1, 2]  # best first; the near copy of person 1 is dropped


def test_oks_nms_of_nothing_is_empty() -> None:
    keep = oks_nms(np.zeros((0, 17, 2)), np.zeros(0), np.zeros(0), np.asarray(COCO17.sigmas))
    assert keep.shape == (0,)
